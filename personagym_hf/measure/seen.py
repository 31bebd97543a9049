"""The sample ids a store export has kept so far, and where each was read: to find duplicates across chunks.

This is the one thing an export keeps per record, so it is packed: a 128-bit blake2b digest of the id and
its location, in sorted numpy arrays (24 bytes per id; the dict of `str` ids it replaces took 147, measured
with tracemalloc on 200k bench ids). Ids arrive a chunk at a time and are looked up a chunk at a time, with
vectorised searches. Sorted runs are merged like a
binary counter (two runs of similar size become one), so adding N ids costs O(N log N) and a lookup
searches O(log N) runs. Two different ids share a digest with probability ~N^2 / 2^129: never, in practice.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import numpy as np

_WHERE_KINDS = ("", "line", "item")  # `Record.where` is "", "line N" or "item N"


def pack_location(file: int, where: str) -> int:
    """(index of a file in the store's file list, position in the file) as one int."""
    kind, _, number = where.partition(" ")
    return (file << 34) | (_WHERE_KINDS.index(kind) << 32) | int(number or 0)


def unpack_location(location: int) -> tuple[int, str]:
    kind, number = _WHERE_KINDS[(location >> 32) & 3], location & 0xFFFFFFFF
    return location >> 34, f"{kind} {number}" if kind else ""


def digests(ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit digests of `ids`, as their high and low 64-bit words."""
    raw = b"".join(hashlib.blake2b(sample_id.encode(), digest_size=16).digest() for sample_id in ids)
    words = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return words[:, 0].copy(), words[:, 1].copy()


class _Run:
    """Digests (high and low words) and locations, sorted by digest."""

    def __init__(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray):
        order = np.lexsort((low, high))
        self.high, self.low, self.locations = high[order], low[order], locations[order]

    def __len__(self) -> int:
        return len(self.high)

    def find(self, high: np.ndarray, low: np.ndarray, found: np.ndarray) -> None:
        """Set `found[i]` to the location of digest i where this run has it (and `found[i]` is still -1)."""
        starts = np.searchsorted(self.high, high, side="left")
        ends = np.searchsorted(self.high, high, side="right")
        for i in np.flatnonzero(ends > starts):  # a high word matched: rare (a duplicate, or 1 in 2^64)
            for j in range(starts[i], ends[i]):
                if self.low[j] == low[i] and found[i] < 0:
                    found[i] = self.locations[j]

    @staticmethod
    def merge(a: "_Run", b: "_Run") -> "_Run":
        return _Run(
            np.concatenate((a.high, b.high)),
            np.concatenate((a.low, b.low)),
            np.concatenate((a.locations, b.locations)),
        )


class SeenIds:
    """`find` the ids a batch shares with the ids `add`ed before it; `add` a batch of new ids."""

    answers_later = False  # `ask` answers at once (see `ray_engine.RayIdIndex`)

    def __init__(self) -> None:
        self.runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def find(self, ids: list[str]) -> list[int | None]:
        """For each id, the packed location it was first added with, or None when it is new."""
        if not ids or not self.runs:
            return [None] * len(ids)
        high, low = digests(ids)
        found = np.full(len(ids), -1, dtype=np.int64)
        for run in self.runs:
            run.find(high, low, found)
        return [None if location < 0 else int(location) for location in found.tolist()]

    def add(self, ids: list[str], locations: list[int]) -> None:
        """Add ids that `find` says are new (and that are not repeated within the batch)."""
        if ids:
            self._add(*digests(ids), np.array(locations, dtype=np.int64))

    def find_and_add(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> np.ndarray:
        """`find` and `add` in one step, on digests (`digests`): for each, the location it was first added with (-1:
        none, and it is added now, with its location). The digests are not repeated within the batch."""
        found = np.full(len(high), -1, dtype=np.int64)
        for run in self.runs:
            run.find(high, low, found)
        new = found < 0
        if new.any():
            self._add(high[new], low[new], locations[new])
        return found

    def ask(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> Callable[[], np.ndarray]:
        """`find_and_add`, with its answer given by the function returned (here at once; `ray_engine.RayIdIndex`
        answers later, so that its round trip overlaps the driver's work)."""
        found = self.find_and_add(high, low, locations)
        return lambda: found

    def _add(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> None:
        self.runs.append(_Run(high, low, locations))
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = _Run.merge(self.runs[-1], last)
