"""Crash-safe snapshots of the whole state together with the source offsets it reflects.

Format (``FORMAT_VERSION``): one ``snapshot-<sequence>.npz`` file per checkpoint. Arrays of the
state's nested dict are stored as npz members named by their path; everything else (strings,
numbers, lists) goes into a JSON manifest stored as the member ``__manifest__``. Nothing is
pickled, so loading a snapshot never executes code (``allow_pickle=False``).

Checkpoint order (at-least-once into Kafka, exactly-once into state):

1. the caller takes ``state.snapshot()`` (a copy, under the state's lock) and the *next* offset
   to read per ``(topic, partition)``, both after the same processed batch;
2. :meth:`SnapshotStore.save` writes both to a temporary file in the same directory, flushes and
   ``fsync``s it;
3. renames it to its final name (atomic on POSIX) and ``fsync``s the directory, so the new name
   survives a power cut;
4. deletes all but the ``keep`` newest snapshots;
5. only then may the caller commit the offsets to Kafka. On start, the offsets in the newest
   snapshot are the source of truth: seek each partition there (Kafka's committed offsets may lag
   or lead).

>>> import tempfile
>>> store = SnapshotStore(tempfile.mkdtemp(), keep=2)
>>> _ = store.save({"n": 3, "a": np.arange(3)}, {("events", 0): 42})
>>> loaded = store.load_latest()
>>> loaded.state["a"].tolist(), loaded.offsets
([0, 1, 2], {('events', 0): 42})
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saewatch.state.exceptions import SnapshotFormatError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_NAME = re.compile(r"^snapshot-(\d{12})\.npz$")
_ARRAY = "__ndarray__"
_MANIFEST = "__manifest__"

Offsets = dict[tuple[str, int], int]


@dataclass(frozen=True)
class LoadedSnapshot:
    """A snapshot read back: the state dict, the next offsets to read, and where it came from."""

    state: dict[str, Any]
    offsets: Offsets
    sequence: int
    path: Path


class SnapshotStore:
    """Keeps the ``keep`` newest snapshots in ``directory``; see the module docstring for order.

    Parameters
    ----------
    directory
        Folder of the snapshot files (created if missing).
    keep
        How many of the newest snapshots to keep.

    Examples
    --------
    >>> import tempfile
    >>> store = SnapshotStore(tempfile.mkdtemp(), keep=1)
    >>> for offset in (10, 20):
    ...     _ = store.save({"docs": np.array([offset])}, {("events", 0): offset})
    >>> [p.name for p in store.paths()], store.load_latest().offsets
    (['snapshot-000000000002.npz'], {('events', 0): 20})
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)

    def paths(self) -> list[Path]:
        """Snapshot files, oldest first."""
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name)

    def save(self, state: Mapping[str, Any], offsets: Mapping[tuple[str, int], int]) -> Path:
        existing = self.paths()
        sequence = int(_NAME.match(existing[-1].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        arrays: dict[str, np.ndarray] = {}
        manifest = {
            "format": FORMAT_VERSION,
            "sequence": sequence,
            "offsets": sorted([t, int(p), int(o)] for (t, p), o in offsets.items()),
            "state": _split(dict(state), "", arrays),
        }
        arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        final = self.directory / f"snapshot-{sequence:012d}.npz"
        tmp = self.directory / f".{final.name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        for old in self.paths()[: -self.keep]:
            old.unlink()
        logger.info("snapshot %s written (%d offsets)", final.name, len(offsets))
        return final

    def load_latest(self) -> LoadedSnapshot | None:
        """The newest readable snapshot, or ``None`` when there is none.

        A damaged file (e.g. a disk error) is skipped with a warning in favour of the previous one,
        whose offsets are consistent with its own state; an unknown format version raises.
        """
        for path in reversed(self.paths()):
            try:
                return self.load(path)
            except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
                logger.warning("snapshot %s is unreadable (%s); trying an older one", path, exc)
        return None

    def load(self, path: Path) -> LoadedSnapshot:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode())
        if manifest.get("format") != FORMAT_VERSION:
            raise SnapshotFormatError(
                f"{path} has snapshot format {manifest.get('format')!r}, this saewatch reads "
                f"format {FORMAT_VERSION}: run the matching saewatch version or move the file aside"
            )
        return LoadedSnapshot(
            state=_join(manifest["state"], arrays),
            offsets={(t, int(p)): int(o) for t, p, o in manifest["offsets"]},
            sequence=int(manifest["sequence"]),
            path=path,
        )


def _split(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """Move numpy arrays out of a nested structure into ``arrays``; return the JSON-able rest."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise SnapshotFormatError(f"state entry {path!r} is an object array; not storable")
        arrays[path] = value
        return {_ARRAY: path}
    if isinstance(value, dict):
        return {str(k): _split(v, f"{path}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_split(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return arrays[value[_ARRAY]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FORMAT_VERSION", "LoadedSnapshot", "Offsets", "SnapshotStore"]
