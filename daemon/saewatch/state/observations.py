"""What the betting test keeps of events: CSR rows of present features and descriptor values, the
bounded FIFO queues that hold them, and the pairing of a batch's events across two queues.

The test (:mod:`saewatch.state.betting`) pairs the events of its two sides one of each, in
arrival order, through a queue per side of at most ``capacity`` unpaired events (the oldest is
dropped when one more arrives). Done one event at a time that is a few numpy calls per event;
here a whole batch is paired at once (:func:`pair_up`) with the same result: both queues are
FIFOs, so the k-th pair is the k-th baseline event with the k-th candidate event that were not
dropped, and drops (only when one side runs ahead by ``capacity``) are found by a loop over
integers only. Rows are stored in blocks, so queueing a batch costs what it adds, not what is
queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Observation:
    """What the test keeps of one event: its present features and its descriptor values."""

    features: np.ndarray  # int32 feature ids
    descriptors: np.ndarray  # float64 log1p descriptor values


@dataclass(frozen=True, slots=True)
class Rows:
    """Observations as CSR rows: ``features[indptr[i]:indptr[i + 1]]`` and ``descriptors[i]``.

    Never written after construction (slices may share memory with their source).

    >>> rows = Rows.of([Observation(np.array([1, 3], np.int32), np.array([0.5])),
    ...                 Observation(np.array([2], np.int32), np.array([2.0]))], 1)
    >>> [o.features.tolist() for o in rows.select(np.array([1, 0])).observations()]
    [[2], [1, 3]]
    >>> len(Rows.concat([rows, rows.slice(1, 2)], 1)), rows.row_ids().tolist()
    (3, [0, 0, 1])
    """

    indptr: np.ndarray  # int64 [n + 1]; starts at 0 unless a view of a larger array
    features: np.ndarray  # int32
    descriptors: np.ndarray  # float64 [n, n_descriptors]

    @classmethod
    def empty(cls, n_descriptors: int) -> Rows:
        return cls(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros((0, n_descriptors)))

    @classmethod
    def of(cls, observations: Iterable[Observation], n_descriptors: int) -> Rows:
        rows = list(observations)
        if not rows:
            return cls.empty(n_descriptors)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(o.features) for o in rows], out=indptr[1:])
        return cls(indptr, np.concatenate([o.features for o in rows]).astype(np.int32),
                   np.stack([o.descriptors for o in rows]).astype(np.float64))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def slice(self, start: int, stop: int) -> Rows:
        """Rows ``start:stop`` (views, re-based to start at 0)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return Rows(self.indptr[start:stop + 1] - lo, self.features[lo:hi],
                    self.descriptors[start:stop])

    def select(self, rows: np.ndarray) -> Rows:
        """The given rows, in the given order (copies, or this object when that is all of
        them in order)."""
        if len(rows) == len(self) and (not len(rows) or (rows[0] == 0 and bool(
                np.all(np.diff(rows) == 1)))):
            return self
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.arange(int(indptr[-1])) + np.repeat(starts - indptr[:-1], lengths)
        return Rows(indptr, self.features[positions], self.descriptors[rows])

    def row_sums(self, values: np.ndarray) -> np.ndarray:
        """Per row, the sum of ``values`` (one per stored feature id; 0 for an empty row)."""
        starts = self.indptr[:-1] - self.indptr[0]
        full = self.indptr[1:] > self.indptr[:-1]
        sums = np.zeros(len(self))
        # Non-empty rows only (reduceat would give an empty one the element at its start):
        # each segment is then exactly its row, so a row's sum is the same whatever rows are
        # summed with it.
        if full.any():
            sums[full] = np.add.reduceat(values, starts[full])
        return sums

    def row_ids(self) -> np.ndarray:
        """The row of every stored feature id."""
        return np.repeat(np.arange(len(self)), np.diff(self.indptr))

    @staticmethod
    def concat(parts: Sequence[Rows], n_descriptors: int) -> Rows:
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:
            return parts[0] if parts else Rows.empty(n_descriptors)
        lengths = np.concatenate([np.diff(p.indptr) for p in parts])
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return Rows(indptr, np.concatenate([p.features[p.indptr[0]:p.indptr[-1]] for p in parts]),
                    np.concatenate([p.descriptors for p in parts]))

    def observations(self) -> list[Observation]:
        return [Observation(self.features[self.indptr[i]:self.indptr[i + 1]].copy(),
                            self.descriptors[i].copy()) for i in range(len(self))]


def pack(observations: Iterable[Observation] | Rows, n_descriptors: int) -> dict[str, np.ndarray]:
    """Observations as three arrays (CSR feature ids, descriptor rows): a snapshot stores a
    queue of a thousand events as three npz members, not three thousand.

    >>> obs = [Observation(np.array([1, 3], np.int32), np.array([0.5])),
    ...        Observation(np.array([], np.int32), np.array([2.0]))]
    >>> [o.features.tolist() for o in unpack(pack(obs, 1))]
    [[1, 3], []]
    """
    rows = observations if isinstance(observations, Rows) else Rows.of(observations, n_descriptors)
    rows = rows.slice(0, len(rows))  # based at 0
    return {"indptr": rows.indptr.astype(np.int64), "features": rows.features.astype(np.int32),
            "descriptors": rows.descriptors.astype(np.float64).reshape(len(rows), n_descriptors)}


def unpack_rows(data: dict[str, Any]) -> Rows:
    return Rows(np.asarray(data["indptr"], dtype=np.int64),
                np.asarray(data["features"], dtype=np.int32),
                np.asarray(data["descriptors"], dtype=np.float64))


def unpack(data: dict[str, Any]) -> list[Observation]:
    return unpack_rows(data).observations()


class ObservationQueue:
    """A FIFO of at most ``capacity`` observations; the oldest go first.

    >>> q = ObservationQueue(capacity=3, n_descriptors=1)
    >>> q.extend(Rows.of([Observation(np.array([i], np.int32), np.array([0.0]))
    ...                   for i in range(4)], 1))
    >>> len(q), q.popleft(2).features.tolist(), q.rows().features.tolist()
    (3, [1, 2], [3])
    """

    def __init__(self, capacity: int, n_descriptors: int) -> None:
        self.capacity = capacity
        self.n_descriptors = n_descriptors
        self._blocks: deque[Rows] = deque()
        self._offset = 0  # rows of the first block already taken
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Observation]:
        return iter(self.rows().observations())

    def extend(self, rows: Rows) -> None:
        """Append ``rows`` (oldest first), then drop the oldest beyond the capacity."""
        if len(rows):
            self._blocks.append(rows)
            self._len += len(rows)
            if self._len > self.capacity:
                self.drop(self._len - self.capacity)

    def drop(self, k: int) -> None:
        """Forget the ``k`` oldest rows."""
        self.popleft(k, keep=False)

    def popleft(self, k: int, keep: bool = True) -> Rows:
        """Take the ``k`` oldest rows out (all if fewer); ``keep=False`` does not gather them."""
        taken: list[Rows] = []
        k = min(k, self._len)
        self._len -= k
        while k:
            first = self._blocks[0]
            available = len(first) - self._offset
            step = min(k, available)
            if keep:
                taken.append(first.slice(self._offset, self._offset + step))
            if step == available:
                self._blocks.popleft()
                self._offset = 0
            else:
                self._offset += step
            k -= step
        return Rows.concat(taken, self.n_descriptors)

    def rows(self) -> Rows:
        """Everything queued, oldest first (the queue is compacted into one block)."""
        if not self._blocks:
            return Rows.empty(self.n_descriptors)
        first = self._blocks[0]
        parts = [first.slice(self._offset, len(first)), *list(self._blocks)[1:]]
        whole = Rows.concat(parts, self.n_descriptors)
        self._blocks, self._offset = deque([whole]), 0
        return whole


def pair_up(queues: tuple[ObservationQueue, ObservationQueue], sides: np.ndarray,
            new: tuple[Rows, Rows]) -> tuple[Rows, Rows]:
    """Queue new events (``sides[i]``, 0 or 1, is the side of the i-th in arrival order;
    ``new[s]`` are side ``s``'s rows in that order) and take out every pair formed, as one
    event at a time would: (baseline rows, candidate rows).

    >>> qs = (ObservationQueue(2, 1), ObservationQueue(2, 1))
    >>> obs = Rows.of([Observation(np.array([i], np.int32), np.array([0.0])) for i in range(5)],
    ...               1)
    >>> new = (obs.slice(0, 3), obs.slice(3, 5))
    >>> a, b = pair_up(qs, np.array([0, 0, 0, 1, 1]), new)  # event 0 is dropped
    >>> a.features.tolist(), b.features.tolist(), len(qs[0]), len(qs[1])
    ([1, 2], [3, 4], 0, 0)
    """
    capacity = queues[0].capacity
    sides = np.asarray(sides, dtype=np.int64)
    queued = (len(queues[0]), len(queues[1]))
    n_descriptors = queues[0].n_descriptors
    # Baseline minus candidate events queued after each event (one side is always empty).
    level = queued[0] - queued[1] + np.cumsum(1 - 2 * sides)
    if not len(sides) or (level.max() <= capacity and level.min() >= -capacity):
        # No event is dropped: plain FIFO pairing of queued-then-new on each side.
        k = min(queued[0] + len(new[0]), queued[1] + len(new[1]))
        paired = []
        for s in (0, 1):
            from_queue = min(k, queued[s])
            head = queues[s].popleft(from_queue)
            paired.append(Rows.concat([head, new[s].slice(0, k - from_queue)], n_descriptors))
            queues[s].extend(new[s].slice(k - from_queue, len(new[s])))
        return paired[0], paired[1]
    return _pair_with_drops(queues, sides, new, queued, capacity)


def _pair_with_drops(queues: tuple[ObservationQueue, ObservationQueue], sides: np.ndarray,
                     new: tuple[Rows, Rows], queued: tuple[int, int],
                     capacity: int) -> tuple[Rows, Rows]:
    """One side ran ``capacity`` ahead: replay the queues' heads with integers, then gather."""
    head, tail = [0, 0], list(queued)  # positions in "queued, then new" of each side
    paired: tuple[list[int], list[int]] = ([], [])
    for s in sides.tolist():
        tail[s] += 1
        if tail[s] - head[s] > capacity:
            head[s] += 1  # the oldest unpaired event of this side is dropped
        if tail[0] > head[0] and tail[1] > head[1]:
            paired[0].append(head[0])
            paired[1].append(head[1])
            head[0] += 1
            head[1] += 1
    out = []
    n_descriptors = queues[0].n_descriptors
    for s in (0, 1):
        combined = Rows.concat([queues[s].rows(), new[s]], n_descriptors)
        out.append(combined.select(np.asarray(paired[s], dtype=np.int64)))
        queues[s].popleft(len(queues[s]), keep=False)
        queues[s].extend(combined.slice(head[s], len(combined)))
    return out[0], out[1]
