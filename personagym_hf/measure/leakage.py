"""Leakage between splits, as a mergeable accumulator: `add(sample, split)`, `merge(other)`, `to_dict()`.

For every pair of splits it counts the personas they share (none under `split_by: persona`) and, for three texts
of a sample — `original_query` (the `query_rewrite` target), `initial_query` and the conversation (its user
turns) — the rows of the smaller split whose text has an exact or a near duplicate in the other.

What is compared (`minhash.py` has the details): texts after `normalise`; an exact duplicate shares the 64-bit
digest of the whole normalised text; a near duplicate has an estimated Jaccard similarity of at least the
threshold over the character 3-grams of a bounded sample of the text (the first `turn_chars` characters of each
user turn, `text_chars` in all), estimated by one-permutation MinHash signatures. Candidates come from LSH bands of
the signatures; each text of the smaller split is checked against at most `checks` texts of the other split per
band (the first in row order that fall in its bucket, each distinct text once), until one verifies. `to_dict`'s
`method` says all of this with the values used.

How, with memory and time bounded by design rather than by how repetitive the data is:
- `add` normalises and digests a sample's texts, and keeps the sample of each to shingle; the samples are signed a
  batch at a time (`batch_chars`). Every row (digest, sample number, signature: 140 bytes; 12 without near
  duplicates) goes to its split's and field's rows, which are written to a spill folder (`spill_dir`: the export's
  staging folder) past `spill_rows`. A chunk's audit in a worker process is signed there, in parallel, and merged
  into the export's in store order.
- `to_dict` takes each pair's smaller split, indexes its distinct texts (at most `index_texts` at once: a bigger one
  is indexed a slice at a time, each slice a pass), and streams the other split's rows against it `block_rows` at
  a time (a split that is the larger of several pairs is streamed once for all of them), `threads` fields at once.
  So memory holds a split's distinct texts and one block per field compared, never every split's texts; the work is
  bounded per row (the sample of a text) and per text of the smaller split (`checks` per band).
Every figure depends on each split's rows in their order only (not on how splits interleave, nor on chunks): the
same for any `--num-proc`, engine, and for `personagym-hf audit --data`, which reads an export split by split.

Memory besides: per sample its id (packed); per persona an entry.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
import weakref
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..config import SPLIT_NAMES
from ..waiting import wait_all
from .minhash import BINS, SEED, SHINGLE_CHARS, SLOTS, Sketcher, normalise, pieces, shingles

FIELDS = ("original_query", "initial_query", "conversation")
PLURALS = {"original_query": "original_queries", "initial_query": "initial_queries", "conversation": "conversations"}
BANDS, ROWS_PER_BAND = 21, 6  # a pair of similarity s shares a band with probability 1 - (1 - s^6)^21
EXAMPLES = 3
MAX_SPLITS = 8  # splits are bits of a uint8
MODES = ("auto", "near", "exact")
KEYS_AT_ONCE = 1 << 13  # signatures whose band keys are made at once

NEAR_ROW = np.dtype([("digest", "<u8"), ("sample", "<u4"), ("signature", "u1", (BINS,))])
EXACT_ROW = np.dtype([("digest", "<u8"), ("sample", "<u4")])


@dataclass(frozen=True)
class LeakageOptions:
    """What the audit compares (`threshold`, `checks`, `turn_chars`, `text_chars`: `to_dict`'s `method` states them)
    and how much it holds at once (the rest: they change no figure)."""

    threshold: float = 0.8  # estimated Jaccard similarity of a near duplicate
    checks: int = 4  # texts of the other split a text is checked against, per LSH band
    turn_chars: int = 1000  # characters of a normalised user turn (or query) that are shingled
    text_chars: int = 4000  # characters of a text (a conversation's turns together) that are shingled
    batch_chars: int = 1 << 16  # characters of samples signed at once
    spill_rows: int = 1 << 12  # rows of a split and field held in memory before they go to the spill folder
    spill_id_bytes: int = 1 << 20  # bytes of sample ids held in memory before they go to the spill folder
    block_rows: int = 1 << 13  # rows of the larger split compared at once
    index_texts: int = 1 << 17  # distinct texts of the smaller splits indexed at once (more: several passes)
    threads: int = 2  # fields compared at once on threads (at most the cores), while the smaller splits are small

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"LeakageOptions: expected a threshold in (0, 1], got {self.threshold!r}")
        names = ("checks", "turn_chars", "text_chars", "batch_chars", "spill_rows", "spill_id_bytes", "block_rows")
        for name in (*names, "index_texts", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LeakageOptions: expected {name} to be an integer >= 1, got {value!r}")
        if self.checks > 255:
            raise ValueError(f"LeakageOptions: expected checks <= 255, got {self.checks!r}")

    def results(self) -> tuple:
        """The options the figures depend on (audits to merge must agree on the signing ones)."""
        return self.threshold, self.checks, self.turn_chars, self.text_chars


def resolve_mode(mode: str | None) -> str | None:
    """An export's audit: "near" (exact and near duplicates), "exact" (exact duplicates only, cheaper) or None
    (off); "auto" is "near" (it was "exact" when near duplicates needed an extra: kept for callers that pass it)."""
    if mode is None or mode in ("near", "exact"):
        return mode
    if mode != "auto":
        raise ValueError(f"audit: expected one of {list(MODES)} or None, got {mode!r}")
    return "near"


def method(near: bool = True, options: "LeakageOptions | None" = None) -> dict[str, Any]:
    """How the figures were made, as `to_dict()` reports it."""
    o = options or LeakageOptions()
    described: dict[str, Any] = {
        "normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed",
        "exact": "the whole normalised text (a conversation: its user turns), by 64-bit blake2b digest",
    }
    if near:
        described.update(
            threshold=o.threshold,
            shingles=(
                f"character {SHINGLE_CHARS}-grams of the first {o.turn_chars} characters of each user turn or "
                f"query, at most {o.text_chars} of a text"
            ),
            minhash=(
                f"one-permutation MinHash, {BINS} bins, {SLOTS} bins a gram, optimal densification, 8 bits a bin, "
                f"seed {SEED}"
            ),
            lsh=(
                f"{BANDS} bands of {ROWS_PER_BAND} bins; each text of the smaller split checked against at most "
                f"{o.checks} texts of the other split per band, the first in row order"
            ),
        )
    described["compared"] = "each pair's smaller split indexed, the other streamed against it"
    return described


def texts_of(sample: dict) -> dict[str, str]:
    """The normalised texts the audit compares, of those the sample has (empty ones left out): the reference for
    what `LeakageAudit` digests (near duplicates are judged on a sample of each, see the module docstring)."""
    texts = {}
    for name, turns in _turns_of(sample):
        parts = [normalise(turn) for turn in turns]
        if any(parts):  # a normalised turn is empty or has no space at its ends
            texts[FIELDS[name]] = "\n".join(parts)
    return texts


def _turns_of(sample: dict) -> Iterator[tuple[int, list[str]]]:
    """(field number, its raw turns) of the texts a sample has: a query is one turn."""
    for number, name in enumerate(FIELDS[:2]):
        value = sample.get(name)
        if isinstance(value, str):
            yield number, [value]
    turns = sample.get("prompt_trajectory")
    if turns is None:
        messages = sample.get("full_conversation") or sample.get("messages") or ()
        turns = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if turns:
        texts = [turn for turn in turns if isinstance(turn, str)]
        if texts:
            yield 2, texts


class _Rows:
    """One split's rows of one field, in row order: the first ones in a spill file, the others in memory."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.blocks: list[np.ndarray] = []
        self.held = 0  # rows in `blocks`
        self.path: str | None = None
        self.spilled = 0  # rows in the file

    def __len__(self) -> int:
        return self.spilled + self.held

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self.blocks.append(rows)
            self.held += len(rows)

    def spill(self, path: str) -> None:
        with open(path, "ab") as f:
            for block in self.blocks:
                f.write(block.tobytes())
        self.path, self.spilled = path, self.spilled + self.held
        self.blocks, self.held = [], 0

    def iter_blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The rows in order, about `rows` at a time."""
        if self.spilled:
            with open(self.path, "rb") as f:
                while True:
                    block = np.fromfile(f, dtype=self.dtype, count=rows)
                    if not len(block):
                        break
                    yield block
        gathered, size = [], 0
        for block in self.blocks:
            gathered.append(block)
            size += len(block)
            if size >= rows:
                yield np.concatenate(gathered)
                gathered, size = [], 0
        if gathered:
            yield np.concatenate(gathered)

    def __getstate__(self) -> dict:
        """Pickled (a worker's chunk) with its spilled rows read back: the file stays with the process."""
        blocks = list(self.iter_blocks(1 << 16))
        return {"dtype": self.dtype, "blocks": blocks, "held": len(self), "path": None, "spilled": 0}


def _remove_folder(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked worker, whose copy of the audit is no owner of the folder
        shutil.rmtree(path, ignore_errors=True)


class LeakageAudit:
    """Leakage between splits (see the module docstring). `near=False` finds exact duplicates only (cheaper).
    `spill_dir`: where rows past `options.spill_rows` are written (a folder made inside it, removed with the audit
    or by `close`); None: the system's temporary folder."""

    def __init__(
        self, *, near: bool = True, options: LeakageOptions | None = None, spill_dir: str | Path | None = None
    ):
        self.near = near
        self.options = options or LeakageOptions()
        self.spill_dir = None if spill_dir is None else str(spill_dir)
        self.split_names: list[str] = []
        self.samples: list[int] = []  # per split number
        self.personas: dict[str, int] = {}  # persona_id -> bits of the splits it is in
        self.ids = bytearray()  # sample ids, one after another (those after the first `ids_spilled` bytes) ...
        self.id_ends = array("Q")  # ... and where each ends
        self.ids_spilled = 0  # bytes of ids in the spill folder's `ids` file
        self.rows: dict[tuple[int, int], _Rows] = {}  # (split number, field number) -> rows
        self.sketcher = Sketcher(self.options.turn_chars, self.options.text_chars, near)
        self.waiting_keys = array("Q")  # the digests of the rows waiting for their signatures ...
        self.waiting_places = array("Q")  # ... and their sample number << 8 | split * 4 | field
        self._folder: str | None = None

    # -- adding --------------------------------------------------------------------------------------------------

    def _split_number(self, split: str) -> int:
        try:
            return self.split_names.index(split)
        except ValueError:
            if len(self.split_names) == MAX_SPLITS:
                raise ValueError(f"LeakageAudit: at most {MAX_SPLITS} splits, got a ninth ({split!r})") from None
            self.split_names.append(split)
            self.samples.append(0)
            return len(self.split_names) - 1

    def add(self, sample: dict, split: str) -> None:
        number = self._split_number(split)
        ordinal = len(self.id_ends)
        self.samples[number] += 1
        self.ids += str(sample.get("sample_id") or "").encode()
        self.id_ends.append(self.ids_spilled + len(self.ids))
        if len(self.ids) >= self.options.spill_id_bytes:
            self._spill_ids()
        persona = sample.get("persona_id")
        if persona:
            self.personas[persona] = self.personas.get(persona, 0) | (1 << number)
        sketcher, place = self.sketcher, ordinal << 8 | number * 4  # a row's sample, split and field in one number
        for field, turns in _turns_of(sample):
            digest = sketcher.add(turns)
            if digest is not None:
                self.waiting_keys.append(digest)
                self.waiting_places.append(place + field)
        if sketcher.chars >= self.options.batch_chars or len(self.waiting_keys) >= self.options.spill_rows:
            self._flush()

    def add_all(self, samples: Iterable[tuple[dict, str]]) -> "LeakageAudit":
        for sample, split in samples:
            self.add(sample, split)
        return self

    def _flush(self) -> None:
        """Sign the texts waiting and hand their rows to their splits' and fields' rows."""
        if not self.waiting_keys:
            return
        rows = np.empty(len(self.waiting_keys), dtype=NEAR_ROW if self.near else EXACT_ROW)
        rows["digest"] = np.frombuffer(self.waiting_keys, dtype=np.uint64)
        places = np.frombuffer(self.waiting_places, dtype=np.uint64)
        rows["sample"] = places >> np.uint64(8)
        if self.near:
            rows["signature"] = self.sketcher.sign()
        self.waiting_keys, self.waiting_places = array("Q"), array("Q")
        where = (places & np.uint64(0xFF)).astype(np.int64)
        for key in np.unique(where).tolist():
            self._append(key // 4, key % 4, rows[where == key])

    def _append(self, split: int, field: int, rows: np.ndarray) -> None:
        store = self.rows.get((split, field))
        if store is None:
            store = self.rows[split, field] = _Rows(rows.dtype)
        store.append(rows)
        if store.held >= self.options.spill_rows:
            store.spill(store.path or os.path.join(self._spill_folder(), f"{split}-{FIELDS[field]}.rows"))

    def _spill_folder(self) -> str:
        if self._folder is None:
            base = self.spill_dir or tempfile.gettempdir()
            os.makedirs(base, exist_ok=True)
            self._folder = tempfile.mkdtemp(prefix="leakage-", dir=base)
            self._finalizer = weakref.finalize(self, _remove_folder, self._folder, os.getpid())
        return self._folder

    def close(self) -> None:
        """Remove the spill folder (the audit cannot be used after)."""
        if self._folder is not None:
            self._finalizer()

    def __getstate__(self) -> dict:
        """Pickled (a worker's chunk) signed, its rows in memory, without the spill folder (this process's)."""
        self._flush()
        state = {name: value for name, value in self.__dict__.items() if name not in ("_folder", "_finalizer")}
        state.update(_folder=None, ids=bytearray(self._all_ids()), ids_spilled=0)
        return state

    def merge(self, other: "LeakageAudit") -> "LeakageAudit":
        """Add `other`'s samples after this one's (as if they had been added here, in that order)."""
        if other.near != self.near or other.options.results() != self.options.results():
            raise ValueError("LeakageAudit.merge: both audits need the same near setting and options")
        self._flush()
        other._flush()
        split_map = [self._split_number(name) for name in other.split_names]
        for theirs, count in enumerate(other.samples):
            self.samples[split_map[theirs]] += count
        for persona, bits in other.personas.items():
            mine = 0
            for theirs in range(len(other.split_names)):
                if bits >> theirs & 1:
                    mine |= 1 << split_map[theirs]
            self.personas[persona] = self.personas.get(persona, 0) | mine
        offset, id_offset = len(self.id_ends), self.ids_spilled + len(self.ids)
        self.ids += other._all_ids()
        ends = np.frombuffer(other.id_ends, dtype=np.uint64) + np.uint64(id_offset)
        self.id_ends.frombytes(ends.tobytes())
        if len(self.ids) >= self.options.spill_id_bytes:
            self._spill_ids()
        for (split, field), store in sorted(other.rows.items()):
            for block in store.iter_blocks(self.options.block_rows):
                block = block.copy()
                block["sample"] += np.uint32(offset)
                self._append(split_map[split], field, block)
        return self

    def __add__(self, other: "LeakageAudit") -> "LeakageAudit":
        return LeakageAudit(near=self.near, options=self.options, spill_dir=self.spill_dir).merge(self).merge(other)

    def sample_id(self, ordinal: int) -> str:
        return self.sample_ids([ordinal])[ordinal]

    def sample_ids(self, ordinals: Iterable[int]) -> dict[int, str]:
        """ordinal -> sample id, for many samples at once: the spill file is opened once for all of them (opened
        once per id, it was a third of `to_dict`'s time on 100k samples whose queries all cross splits)."""
        ids, spilled, ends, found = self.ids, self.ids_spilled, self.id_ends, {}
        with contextlib.ExitStack() as stack:
            f = None
            for ordinal in sorted(set(ordinals)):
                start, end = ends[ordinal - 1] if ordinal else 0, ends[ordinal]
                if start >= spilled:
                    found[ordinal] = ids[start - spilled : end - spilled].decode()
                    continue
                if f is None:
                    f = stack.enter_context(open(os.path.join(self._folder, "ids"), "rb"))
                f.seek(start)
                found[ordinal] = f.read(end - start).decode()
        return found

    def _spill_ids(self) -> None:
        with open(os.path.join(self._spill_folder(), "ids"), "ab") as f:
            f.write(self.ids)
        self.ids_spilled += len(self.ids)
        self.ids = bytearray()

    def _all_ids(self) -> bytes:
        """Every sample id, one after another (those spilled read back)."""
        if not self.ids_spilled:
            return bytes(self.ids)
        with open(os.path.join(self._folder, "ids"), "rb") as f:
            return f.read() + self.ids

    # -- the figures ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The `leakage` section of `statistics.json`."""
        self._flush()
        order = sorted(
            range(len(self.split_names)),
            key=lambda s: (SPLIT_NAMES.index(n) if (n := self.split_names[s]) in SPLIT_NAMES else 99, n),
        )
        pairs: list[tuple[int, int, int, int]] = []  # (x, y, smaller, other) in report order
        for i, x in enumerate(order):
            for y in order[i + 1 :]:
                if self.samples[x] and self.samples[y]:
                    # The smaller split's rows are counted (ties: the later split, the more held-out one).
                    small, other = (x, y) if self.samples[x] < self.samples[y] else (y, x)
                    pairs.append((x, y, small, other))
        figures = self._compare_fields([(small, other) for _, _, small, other in pairs])
        result = {}
        for x, y, small, other in pairs:
            pair = result[f"{self.split_names[x]}-{self.split_names[y]}"] = self._personas(x, y, small)
            for field, name in enumerate(FIELDS):
                pair[name] = figures[field][small, other]
        shares = [
            figure
            for pair in result.values()
            for part in pair.values()
            if isinstance(part, dict)
            for key, figure in part.items()
            if key.endswith("share")
        ]
        return {
            "method": method(self.near, self.options),
            "samples": {self.split_names[s]: self.samples[s] for s in order},
            "pairs": result,
            "max_share": max(shares, default=0.0),
        }

    def _personas(self, x: int, y: int, small: int) -> dict[str, Any]:
        both = sorted(p for p, bits in self.personas.items() if bits >> x & 1 and bits >> y & 1)
        in_small = sum(1 for bits in self.personas.values() if bits >> small & 1)
        return {
            "smaller": self.split_names[small],
            "personas": {"shared": len(both), "share": _share(len(both), in_small), "examples": both[:EXAMPLES]},
        }

    def _compare_fields(self, pairs: list[tuple[int, int]]) -> list[dict[tuple[int, int], dict[str, Any]]]:
        """`_compare` of each field, `options.threads` fields at once while the smaller splits' rows, once per
        thread, fit in `index_texts` (one at a time past that: memory stays that of one field's comparison). A
        field's comparison is numpy on arrays of its own, which releases the GIL for most of its work: two threads
        on two cores take 0.6x the time. On an error or a Ctrl-C the other threads stop at their next block."""
        fields = range(len(FIELDS))
        threads = min(self.options.threads, len(FIELDS), _cores())  # on one core, threads would only cost memory
        smaller = sum(self.samples[small] for small in {small for small, _ in pairs})
        if threads == 1 or smaller * threads > self.options.index_texts:
            return [self._compare(field, pairs) for field in fields]
        stop = threading.Event()
        pool = ThreadPoolExecutor(threads, thread_name_prefix="leakage")
        try:
            futures = [pool.submit(self._compare, field, pairs, stop) for field in fields]
            wait_all(futures)  # in steps: a Ctrl-C that a comparison thread takes is still seen
            return [future.result() for future in futures]
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _compare(
        self, field: int, pairs: list[tuple[int, int]], stop: threading.Event | None = None
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """One field's figures for each (smaller, other) pair: each split that is the larger of some pairs is
        streamed once per pass against the indexes of their smaller splits (see the module docstring). Nothing
        when `stop` is set (checked at each block)."""
        empty = np.zeros(0, dtype=NEAR_ROW if self.near else EXACT_ROW)
        tallies = {pair: _Tally() for pair in pairs}
        for other in sorted({other for _, other in pairs}):
            if stop is not None and stop.is_set():
                return {}
            slices = []  # (smaller split, its distinct texts, a slice of them)
            for small in sorted(small for small, o in pairs if o == other):
                rows = self.rows.get((small, field))
                distinct = _Distinct(np.concatenate([empty, *rows.iter_blocks(1 << 16)]) if rows else empty)
                for start in range(0, max(len(distinct), 1), self.options.index_texts):
                    slices.append((small, distinct, slice(start, start + self.options.index_texts)))
            while slices:  # a pass: as many slices as `index_texts` holds (at least one)
                taken, size = [], 0
                while slices and (not taken or size + _width(slices[0]) <= self.options.index_texts):
                    taken.append(slices.pop(0))
                    size += _width(taken[-1])
                indexes = [(small, _Index(distinct, part, self.near, self.options)) for small, distinct, part in taken]
                stream = self.rows.get((other, field))
                for block in stream.iter_blocks(self.options.block_rows) if stream else ():
                    if stop is not None and stop.is_set():
                        return {}
                    first = _first_occurrences(block["digest"]) if self.near else None
                    for _small, index in indexes:
                        index.exact_block(block)
                        if self.near:
                            index.near_block(block, first)
                for small, index in indexes:
                    tallies[small, other].add(index)
        return {pair: tally.figures(self, self.near) for pair, tally in tallies.items()}


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _width(entry: tuple) -> int:
    _small, distinct, part = entry
    return len(range(*part.indices(len(distinct))))


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct key, in order."""
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, keys), len(sorted_set) - 1)
    return sorted_set[at] == keys


def _band_keys(signature: np.ndarray) -> np.ndarray:
    """(texts, BANDS) uint32: each band's key (`_entry_keys`) for each signature, `KEYS_AT_ONCE` signatures at a
    time (the work arrays take ~30 bytes an entry)."""
    keys = np.empty((len(signature), BANDS), dtype=np.uint32)
    for start in range(0, len(signature), KEYS_AT_ONCE):
        part = signature[start : start + KEYS_AT_ONCE, : BANDS * ROWS_PER_BAND]
        bands = np.tile(np.arange(BANDS, dtype=np.uint8), len(part))
        keys[start : start + len(part)] = _entry_keys(part.reshape(-1, ROWS_PER_BAND), bands).reshape(-1, BANDS)
    return keys


def _entry_keys(bins: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """uint32: a hash of a band's `ROWS_PER_BAND` bins (a row of `bins`) and the band's number."""
    padded = np.zeros((len(bins), 8), dtype=np.uint8)
    padded[:, :ROWS_PER_BAND] = bins
    padded[:, 7] = bands
    return ((padded.view("<u8").reshape(-1) * np.uint64(0xD6E8FEB86659FD93)) >> np.uint64(32)).astype(np.uint32)


def _ranks(groups: np.ndarray) -> np.ndarray:
    """The rank of each element within its run of equal values (`groups` sorted)."""
    at = np.arange(len(groups))
    if not len(groups):
        return at
    starts = np.empty(len(groups), dtype=bool)
    starts[0] = True
    np.not_equal(groups[1:], groups[:-1], out=starts[1:])
    return at - np.maximum.accumulate(np.where(starts, at, 0))


class _SortedSet:
    """A set of uint64 keys as a few sorted arrays (each at least twice the size of the next: adding is amortised
    O(log n) a key, not a sort of the whole set each time)."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def add(self, keys: np.ndarray) -> None:
        level = np.unique(keys)
        while self.levels and len(self.levels[-1]) <= 2 * len(level):
            level = np.union1d(self.levels.pop(), level)
        self.levels.append(level)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for level in self.levels:
            found |= _member(keys, level)
        return found


class _Distinct:
    """A split's rows of a field as distinct texts (sorted by digest): how many rows each has, its first sample
    and (near) its signature."""

    def __init__(self, rows: np.ndarray):
        self.keys, first, inverse = np.unique(rows["digest"], return_index=True, return_inverse=True)
        self.counts = np.bincount(inverse.reshape(-1), minlength=len(self.keys))
        self.first = rows["sample"][first].astype(np.int64)
        self.signature = rows["signature"][first] if "signature" in rows.dtype.names else None

    def __len__(self) -> int:
        return len(self.keys)


class _Index:
    """A slice of a smaller split's distinct texts, with what the other split's rows have shown of them so far."""

    def __init__(self, distinct: _Distinct, part: slice, near: bool, options: LeakageOptions):
        self.keys, self.counts, self.first = distinct.keys[part], distinct.counts[part], distinct.first[part]
        n = len(self.keys)
        self.exact_first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)  # first sample of the text in other
        self.reached = np.zeros(n, dtype=bool)  # a near duplicate verified
        self.done = np.zeros(n, dtype=bool)  # reached, or an exact duplicate seen: no more checks
        self.match = np.full(n, -1, dtype=np.int64)  # the sample of the first one that verified ...
        self.equal = np.zeros(n, dtype=np.int64)  # ... and how many bins agree
        self.near = near
        if not near:
            return
        self.checks = options.checks
        self.need = math.ceil(options.threshold * BINS - 1e-9)
        self.signature = distinct.signature[part]
        self.seen = _SortedSet()  # digests of the other split's texts checked so far
        # An entry is a text in a band (text * BANDS + band), keyed by a 32-bit hash of the band's bins and number
        # (two buckets of one key only cost a check more: every candidate is verified on the whole signature).
        self.budget = np.full(n * BANDS, options.checks, dtype=np.uint8)  # checks left, per entry
        self.entry_keys = _band_keys(self.signature).reshape(-1)  # each entry's key, made once (84 bytes a text)
        self._live()

    def _live(self) -> None:
        """The entries still live (text not reached, checks left), sorted by key."""
        live = np.flatnonzero((self.budget > 0) & ~np.repeat(self.done, BANDS)).astype(np.uint32)
        keys = self.entry_keys[live]
        order = np.argsort(keys, kind="stable")
        self.sorted_keys, self.sorted_entries = keys[order], live[order]
        # A bit per hash of the live keys (~1 in 16 set): most keys of the other split match none, and testing a bit
        # is cheaper than searching the sorted keys.
        self.shift = np.uint64(64 - max(16, int(len(keys) * 16).bit_length()))
        self.bits = np.zeros(1 << (64 - int(self.shift) - 3), dtype=np.uint8)
        where = self._hashed(keys)
        np.bitwise_or.at(self.bits, where >> np.uint64(3), np.left_shift(1, where & np.uint64(7)).astype(np.uint8))

    def _hashed(self, keys: np.ndarray) -> np.ndarray:
        return (keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> self.shift

    def exact_block(self, block: np.ndarray) -> None:
        if not len(self.keys):
            return
        digests = block["digest"]
        at = np.minimum(np.searchsorted(self.keys, digests), len(self.keys) - 1)
        hit = self.keys[at] == digests
        np.minimum.at(self.exact_first, at[hit], block["sample"][hit].astype(np.int64))
        self.done[at[hit]] = True
        if self.near:
            self._prune()

    def near_block(self, rows: np.ndarray, first: np.ndarray) -> None:
        """Check the texts of a block of the other split's rows (`first`: the first row of each distinct text in
        it) against this index, each text not checked in an earlier block."""
        if not len(self.sorted_keys):
            return
        block = rows[first[~self.seen.contains(rows["digest"][first])]]
        if not len(block):
            return
        keys = _band_keys(block["signature"]).reshape(-1)  # entry o * BANDS + band of the block
        where = self._hashed(keys)
        maybe = np.flatnonzero((self.bits[where >> np.uint64(3)] >> (where & np.uint64(7)).astype(np.uint8)) & 1)
        low = np.zeros(len(keys), dtype=np.int64)
        high = np.zeros(len(keys), dtype=np.int64)
        low[maybe] = np.searchsorted(self.sorted_keys, keys[maybe], "left")
        high[maybe] = np.searchsorted(self.sorted_keys, keys[maybe], "right")
        hits = maybe[high[maybe] > low[maybe]]
        if not len(hits):
            return
        # A text takes the first texts of its bucket, at most `checks`: only those of each bucket matter.
        by_key = hits[np.argsort(keys[hits], kind="stable")]
        hits = by_key[_ranks(keys[by_key]) < self.checks]
        lengths = (high - low)[hits]
        o = np.repeat(hits // BANDS, lengths)  # the block's texts (hits: o * BANDS + band)
        entries = self.sorted_entries[
            np.repeat(low[hits] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        ]
        live = ~self.done[entries // BANDS] & (self.budget[entries] > 0)
        o, entries = o[live], entries[live]
        order = np.lexsort((o, entries))  # per entry, the block's texts in row order
        o, entries = o[order], entries[order]
        taken = _ranks(entries) < self.budget[entries]
        o, entries = o[taken], entries[taken]
        if not len(o):
            return
        np.subtract.at(self.budget, entries, 1)
        # A text checked against a text of the index is not checked again: its checks would be the same.
        self.seen.add(block["digest"][np.unique(o)])
        pairs = np.unique((entries // BANDS).astype(np.int64) * len(block) + o)  # verified once, found in any band
        s, o = pairs // len(block), pairs % len(block)
        equal = (block["signature"][o] == self.signature[s]).sum(axis=1)
        good = equal >= self.need
        s, o, equal = s[good], o[good], equal[good]
        first_match = np.r_[True, s[1:] != s[:-1]][: len(s)]  # sorted by (s, o): the first verified in row order
        s, o, equal = s[first_match], o[first_match], equal[first_match]
        self.reached[s] = self.done[s] = True
        self.match[s] = block["sample"][o]
        self.equal[s] = equal
        self._prune()

    def _prune(self) -> None:
        dead = self.done[self.sorted_entries // BANDS] | (self.budget[self.sorted_entries] == 0)
        if dead.sum() * 4 > len(dead):  # rebuild the sorted entries when a quarter of them is no longer live
            self._live()


class _Tally:
    """One pair's figures for one field, over the slices of the smaller split's texts."""

    def __init__(self) -> None:
        self.rows = self.exact = self.near = 0
        self.exact_examples: list[tuple[int, int]] = []
        self.near_examples: list[tuple[int, int, int]] = []

    def add(self, index: _Index) -> None:
        exact = index.exact_first != np.iinfo(np.int64).max
        near = index.reached & ~exact
        self.rows += int(index.counts.sum())
        self.exact += int(index.counts[exact].sum())
        self.near += int(index.counts[exact | near].sum())
        self.exact_examples += zip(index.first[exact].tolist(), index.exact_first[exact].tolist())
        self.near_examples += zip(index.first[near].tolist(), index.match[near].tolist(), index.equal[near].tolist())

    def figures(self, audit: LeakageAudit, near: bool) -> dict[str, Any]:
        wanted = [o for pair in self.exact_examples for o in pair]
        wanted += [o for a, b, _ in self.near_examples for o in (a, b)] if near else []
        sample_id = audit.sample_ids(wanted).__getitem__
        figures: dict[str, Any] = {
            "rows": self.rows,
            "exact": self.exact,
            "exact_share": _share(self.exact, self.rows),
        }
        examples = sorted((sample_id(a), sample_id(b)) for a, b in self.exact_examples)
        figures["exact_examples"] = [list(example) for example in examples[:EXAMPLES]]
        if near:
            figures.update(near=self.near, near_share=_share(self.near, self.rows))
            found = sorted((sample_id(a), sample_id(b), round(e / BINS, 4)) for a, b, e in self.near_examples)
            figures["near_examples"] = [list(example) for example in found[:EXAMPLES]]
        return figures


def report_lines(leakage: dict[str, Any]) -> list[str]:
    """The audit as plain lines: one block per pair of splits."""
    lines = []
    near = "threshold" in leakage["method"]
    if near:
        m = leakage["method"]
        lines.append(
            f"near duplicates: estimated Jaccard >= {m['threshold']} over {m['shingles']} ({m['minhash']}), "
            f"after normalising case, whitespace and punctuation"
        )
    else:
        lines.append("exact duplicates only, after normalising case, whitespace and punctuation")
    samples = leakage["samples"]
    if not leakage["pairs"]:
        lines.append(f"one split ({', '.join(samples) or 'no samples'}): nothing to compare")
    for key, pair in leakage["pairs"].items():
        a, b = key.split("-", 1)
        small = pair["smaller"]
        big = b if small == a else a
        personas = pair["personas"]
        lines.append(
            f"{a} <-> {b} ({samples[a]} and {samples[b]} samples): {personas['shared']} personas shared"
            + (f" (e.g. {', '.join(personas['examples'])})" if personas["shared"] else "")
        )
        for name in FIELDS:
            f = pair[name]
            line = (
                f"  {name}: {f['exact']} of {f['rows']} {small} rows ({f['exact_share']:.1%}) have an exact "
                f"duplicate in {big}"
            )
            if near:
                line += f", {f['near']} ({f['near_share']:.1%}) an exact or near one"
            lines.append(line)
            if f["exact_examples"]:
                lines.append(f"    exact: {'; '.join(' = '.join(e) for e in f['exact_examples'])}")
            if f.get("near_examples"):
                lines.append(f"    near: {'; '.join(f'{e[0]} ~ {e[1]} ({e[2]})' for e in f['near_examples'])}")
    return lines


def _findings(leakage: dict[str, Any], max_share: float) -> list[tuple[str, str, str, str]]:
    """(split a, split b, what: "personas" or a field, phrase) of each leak above `max_share`."""
    found = []
    for key, pair in leakage["pairs"].items():
        a, b = key.split("-", 1)
        small = pair["smaller"]
        big = b if small == a else a
        if pair["personas"]["share"] > max_share:
            found.append((a, b, "personas", f"{a} <-> {b}: {pair['personas']['shared']} personas shared"))
        for name in FIELDS:
            f = pair[name]
            share, kind = (
                (f["near_share"], "an exact or near") if "near_share" in f else (f["exact_share"], "an exact")
            )
            if share > max_share:
                phrase = f"{a} <-> {b}: {share:.1%} of {small} {PLURALS[name]} have {kind} duplicate in {big}"
                found.append((a, b, name, phrase))
    return found


def leaks(leakage: dict[str, Any], max_share: float) -> list[str]:
    """What leaks above `max_share`: one phrase per pair and text (personas included), empty when nothing does."""
    return [phrase for *_where, phrase in _findings(leakage, max_share)]


def summary_line(
    leakage: dict[str, Any],
    max_share: float = 0.0,
    audit: str = "personagym-hf audit",
    split_by: str | None = None,
    lets_cross: Callable[[str, str, str], bool] | None = None,
) -> str | None:
    """One line for an export's summary when anything leaks above `max_share`, else None; `audit`: the command
    that shows the rest, for this export. With `lets_cross` (`transform.assign.lets_cross(split_by)`), what the split
    mode lets cross by design comes after the rest and is said to be so: a user who chose `split_by: query` is not
    told that personas leak as if by mistake (the `splits:` line says what the mode keeps apart)."""
    found = _findings(leakage, max_share)
    if not found:
        return None
    designed = [phrase for a, b, what, phrase in found if lets_cross and lets_cross(a, b, what)]
    unexpected = [phrase for *_where, phrase in found if phrase not in designed]
    shown = (unexpected or designed)[:2]
    left = len(found) - len(shown)
    of_them = f", {len(designed)} of them what split_by {split_by} lets cross" if unexpected and designed else ""
    more = f" (+{left} more{of_them}; run `{audit}`)" if left else ""
    head = "leakage: " if unexpected else f"leakage, only what split_by {split_by} lets cross: "
    return head + "; ".join(shown) + more


__all__ = [
    "FIELDS",
    "MODES",
    "LeakageAudit",
    "LeakageOptions",
    "leaks",
    "method",
    "normalise",
    "pieces",
    "report_lines",
    "resolve_mode",
    "shingles",
    "summary_line",
    "texts_of",
]
