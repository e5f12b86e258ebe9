"""AlpacaEval model outputs as a deterministic stream of :class:`~saewatch.models.LLMEvent`.

The shared data (``<data dir>/alpaca_eval/<model>.json.gz``) holds, per model, a JSON list of
``{"dataset", "instruction", "output", "generator"}`` objects: the same 805 instructions for every
model. Each becomes an event with ``prompt`` = instruction, ``response`` = output,
``model_version`` = the file's model name (or the version you give), a stable ``event_id`` and a
timestamp that grows by ``interval_s`` along the stream, so a replay is the same every time.

The data directory is ``$SAEWATCH_DATA_DIR`` or ``../shared/data`` relative to the project root.

>>> events = load_alpaca("gpt4_1106_preview", limit=2)
>>> [e.event_id for e in events], events[0].model_version
(['gpt4_1106_preview:0', 'gpt4_1106_preview:1'], 'gpt4_1106_preview')
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from saewatch.models import LLMEvent
from saewatch.source.exceptions import DatasetError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SAEWATCH_DATA_DIR"
ALPACA_SUBDIR = "alpaca_eval"
DEFAULT_MODEL_ID = "alpaca-eval"
# A fixed start keeps replays identical; 2026-01-01 is simply "recent" for the demo's windows.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
# This file sits at <root>/daemon/saewatch/source/alpaca.py.
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


def data_dir() -> Path:
    """The shared data directory: ``$SAEWATCH_DATA_DIR``, else ``<project root>/../shared/data``.

    Raises
    ------
    DatasetError
        If the directory does not exist.
    """
    env = os.environ.get(DATA_DIR_ENV)
    candidates = [Path(env)] if env else [_PROJECT_ROOT.parent / "shared" / "data"]
    if not env:
        candidates.append(Path.cwd().parent / "shared" / "data")  # installed, run from the root
    for path in candidates:
        if path.is_dir():
            return path
    raise DatasetError(
        f"shared data directory not found (tried {', '.join(map(str, candidates))}); "
        f"set {DATA_DIR_ENV} to the folder that holds alpaca_eval/"
    )


def alpaca_models(root: Path | None = None) -> list[str]:
    """Names of the AlpacaEval models available, sorted (``gpt4_1106_preview``, ...)."""
    folder = (root or data_dir()) / ALPACA_SUBDIR
    return sorted(p.name.removesuffix(".json.gz") for p in folder.glob("*.json.gz"))


def read_alpaca(model: str, root: Path | None = None) -> list[dict[str, Any]]:
    """The raw records of one model's file, checked for the expected fields."""
    path = (root or data_dir()) / ALPACA_SUBDIR / f"{model}.json.gz"
    if not path.is_file():
        known = ", ".join(alpaca_models(root)) or "none"
        raise DatasetError(f"no AlpacaEval outputs for model {model!r} at {path}; known: {known}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            items = json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a gzip-compressed JSON list: {exc}") from exc
    if not isinstance(items, list):
        raise DatasetError(f"{path}: expected a JSON list of records")
    for i, item in enumerate(items):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("instruction"), str)
            and isinstance(item.get("output"), str)
        ):
            raise DatasetError(f"{path}: record {i} lacks string 'instruction' and 'output'")
    return items


def load_alpaca(
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
        Only these instruction indices (positions in the file), in this order.
    seed
        Shuffle the selected records with this seed (``None``: file order).
    limit
        Keep at most this many, after selection and shuffling.
    start, interval_s
        Timestamp of the first event, and the spacing of the following ones.
    root
        Data directory (default :func:`data_dir`).

    Returns
    -------
    list[LLMEvent]
        ``event_id`` is ``"<model>:<index>"``, or ``"<version>:<model>:<index>"`` when a
        version is given, so the same file replayed under two versions gives distinct ids.
    """
    items = read_alpaca(model, root)
    chosen = list(range(len(items))) if indices is None else list(indices)
    for i in chosen:
        if not 0 <= i < len(items):
            raise DatasetError(f"index {i} out of range: {model} has {len(items)} records")
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
                prompt=items[i]["instruction"],
                response=items[i]["output"],
                metadata=_metadata(items[i]),
            )
            for n, i in enumerate(chosen)
        ]
    except ValidationError as exc:
        raise DatasetError(f"cannot build events from {model}: {exc}") from exc


def _metadata(item: dict[str, Any]) -> dict[str, str]:
    dataset = item.get("dataset")
    meta = {"source": "alpaca_eval"}
    if isinstance(dataset, str) and dataset:
        meta["dataset"] = dataset[:64]
    return meta
