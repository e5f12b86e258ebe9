"""AlpacaEval model outputs: where they are, reading one model's file, and its events.

A data folder holds ``alpaca_eval/<model>.json.gz``: per model, a gzip-compressed JSON list of
``{"dataset", "instruction", "output", "generator"}`` objects for the same instructions. A full
file lists all 805 in instruction order; a subset file gives each record its instruction
``index``. Files are looked up in the folders ``$SAEWATCH_DATA_DIR`` names (one, or several
separated by ``os.pathsep`` like ``PATH``), then in the demo sample that ships in this package
(``sample/``: claude-2.1, claude-2.1_concise and NullModel, CC BY-NC 4.0, see its README), so
the demo's models are always there.

Each output becomes an event with ``prompt`` = instruction, ``response`` = output,
``model_version`` = the model's name (or the version you give), a stable ``event_id`` and a
timestamp that grows by ``interval_s`` along the stream, so a replay is the same every time.

>>> events = alpaca_events("claude-2.1", limit=2)
>>> [e.event_id for e in events], events[0].model_version
(['claude-2.1:0', 'claude-2.1:1'], 'claude-2.1')
>>> sorted(alpaca_models(SAMPLE_DIR))
['NullModel', 'claude-2.1', 'claude-2.1_concise']
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from saewatch.datasets.exceptions import DatasetError
from saewatch.models import LLMEvent

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SAEWATCH_DATA_DIR"
ALPACA_SUBDIR = "alpaca_eval"
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
DEFAULT_MODEL_ID = "alpaca-eval"
# A fixed start keeps replays identical; 2026-01-01 is simply "recent" for the demo's windows.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AlpacaRow:
    """One instruction (by its index in the AlpacaEval set) answered by one model."""

    index: int
    instruction: str
    output: str
    generator: str
    dataset: str = ""


def data_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders searched, in order: those of ``$SAEWATCH_DATA_DIR``, then the sample.

    Raises
    ------
    DatasetError
        If ``$SAEWATCH_DATA_DIR`` names something that is not a folder.
    """
    env = os.environ if environ is None else environ
    folders = [Path(v) for v in env.get(DATA_DIR_ENV, "").split(os.pathsep) if v]
    for path in folders:
        if not path.is_dir():
            raise DatasetError(f"{DATA_DIR_ENV}: {path} is not a folder; point {DATA_DIR_ENV} at "
                               f"the folder that holds {ALPACA_SUBDIR}/ (or unset it to use the "
                               "shipped demo sample only)")
    return [*folders, SAMPLE_DIR]


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The first folder searched: ``$SAEWATCH_DATA_DIR``'s first, else the shipped sample."""
    return data_dirs(environ)[0]


def alpaca_models(root: Path | None = None) -> list[str]:
    """Names of the models with outputs in ``root`` (default: every folder searched), sorted."""
    folders = [root] if root else data_dirs()
    return sorted({p.name.removesuffix(".json.gz")
                   for folder in folders for p in (folder / ALPACA_SUBDIR).glob("*.json.gz")})


def _find(model: str, root: Path | None) -> Path:
    folders = [root] if root else data_dirs()
    for folder in folders:
        path = folder / ALPACA_SUBDIR / f"{model}.json.gz"
        if path.is_file():
            return path
    known = ", ".join(alpaca_models(root)) or "none"
    hint = "" if root or os.environ.get(DATA_DIR_ENV) else (
        f"; only the shipped demo sample is here: set {DATA_DIR_ENV} to the full corpus")
    raise DatasetError(f"no AlpacaEval outputs for model {model!r} in "
                       f"{', '.join(str(f / ALPACA_SUBDIR) for f in folders)}; "
                       f"known: {known}{hint}")


def read_alpaca(model: str, root: Path | None = None) -> list[AlpacaRow]:
    """One model's rows in instruction order, checked for the expected fields.

    In a full file (805 rows) ``rows[i].index == i``; a subset file holds only some indices.
    """
    path = _find(model, root)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            items = json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a gzip-compressed JSON list: {exc}") from exc
    if not isinstance(items, list):
        raise DatasetError(f"{path}: expected a JSON list of records")
    return sorted((_row(item, i, path, model) for i, item in enumerate(items)),
                  key=lambda r: r.index)


def _row(item: object, position: int, path: Path, model: str) -> AlpacaRow:
    if not (isinstance(item, dict) and isinstance(item.get("instruction"), str)
            and isinstance(item.get("output"), str | None)):
        raise DatasetError(f"{path}: record {position} lacks string 'instruction' and 'output'")
    index = item.get("index", position)
    if not isinstance(index, int) or index < 0:
        raise DatasetError(f"{path}: record {position} has a bad 'index' {index!r}")
    dataset = item.get("dataset")
    return AlpacaRow(index, item["instruction"], item["output"] or "",
                     str(item.get("generator") or model),
                     dataset if isinstance(dataset, str) else "")


def alpaca_events(
    model: str,
    *,
    version: str | None = None,
    model_id: str = DEFAULT_MODEL_ID,
    indices: Sequence[int] | None = None,
    seed: int | None = None,
    limit: int | None = None,
    start: datetime = DEFAULT_START,
    interval_s: float = 1.0,
    root: Path | None = None,
) -> list[LLMEvent]:
    """Events for one AlpacaEval model's outputs.

    Parameters
    ----------
    model
        File name without ``.json.gz`` (see :func:`alpaca_models`).
    version
        ``model_version`` of the events; default the model's name.
    model_id
        ``model_id`` of the events (the deployed application).
    indices
        Only these instruction indices, in this order.
    seed
        Shuffle the selected records with this seed (``None``: instruction order).
    limit
        Keep at most this many, after selection and shuffling.
    start, interval_s
        Timestamp of the first event, and the spacing of the following ones.
    root
        Data folder (default :func:`data_dir`).

    Returns
    -------
    list[LLMEvent]
        ``event_id`` is ``"<model>:<index>"``, or ``"<version>:<model>:<index>"`` when a
        version is given, so the same file replayed under two versions gives distinct ids.
    """
    rows = {r.index: r for r in read_alpaca(model, root)}
    chosen = list(rows) if indices is None else list(indices)
    for i in chosen:
        if i not in rows:
            raise DatasetError(f"index {i} out of range: {model} has no record {i} "
                               f"({len(rows)} records)")
    if seed is not None:
        random.Random(seed).shuffle(chosen)
    if limit is not None:
        chosen = chosen[: max(0, limit)]
    model_version = version or model
    prefix = model if version is None else f"{version}:{model}"
    try:
        return [
            LLMEvent(
                event_id=f"{prefix}:{i}",
                timestamp=start + timedelta(seconds=n * interval_s),
                model_id=model_id,
                model_version=model_version,
                prompt=rows[i].instruction,
                response=rows[i].output,
                metadata=_metadata(rows[i]),
            )
            for n, i in enumerate(chosen)
        ]
    except ValidationError as exc:
        raise DatasetError(f"cannot build events from {model}: {exc}") from exc


def _metadata(row: AlpacaRow) -> dict[str, str]:
    meta = {"source": "alpaca_eval"}
    if row.dataset:
        meta["dataset"] = row.dataset[:64]
    return meta


__all__ = [
    "ALPACA_SUBDIR",
    "DATA_DIR_ENV",
    "SAMPLE_DIR",
    "AlpacaRow",
    "alpaca_events",
    "alpaca_models",
    "data_dir",
    "data_dirs",
    "read_alpaca",
]
