"""Leakage between splits, as a mergeable accumulator: `add(sample, split)`, `merge(other)`, `to_dict()`.

For every pair of splits it counts the personas they share (none under `split_by: persona`) and, for three
texts of a sample — `original_query` (the `query_rewrite` target), `initial_query` and the conversation (its
user turns) — the rows of the smaller split whose text has an exact or a near duplicate in the other.

Texts are compared after `normalise` (NFKC, case folded, punctuation as spaces, whitespace collapsed). Exact
duplicates share the 64-bit blake2b digest of that text. Near duplicates have an estimated Jaccard similarity of
at least `THRESHOLD` over character 3-grams (whole words would give a three-word query one shingle; 3-grams
keep a one-typo variant of a short query above 0.8, and long turns work the same way). Signatures are rensa's
MinHash (`RMinHash`, fixed seed) of each distinct text, kept as their low 16 bits (a random match of two 16-bit
values adds (1 - J) / 65536 to the estimate). `token_hashes` gives rensa the 3-grams already hashed, by rensa's
own hash of each distinct gram, from the texts' code points: no Python string per gram.

Each distinct text is signed once where it can be: an audit merged into another (a chunk into the export's)
hands over the texts still waiting for their signatures, and the audit they join signs only those it does not
hold yet; a chunk pickled by a worker process is signed there, in parallel, taking the signatures of texts
that worker signed for its earlier chunks (`_RecentSignatures`).

Candidates come from LSH bands over the stored signatures, sorted with numpy rather than from rensa's or
datasketch's LSH index: their `query` returns every text of every matching bucket, and queries written from
templates fill buckets with thousands of texts (measured in the README: gigabytes of candidate lists for 100k
queries). Here a text is checked against the first `REPS` texts of the other split in each bucket it falls in,
in content order, until one verifies; every decision depends on the texts only, not on the order samples
arrive in, so the figures are the same for any chunking.

Memory: per sample its id (packed) and, per text, 9 bytes of row (text number, split, sample number); per
distinct text an 8-byte digest, a dict entry and a 240-byte signature. No text is kept, but the at most `BATCH`
distinct texts waiting for their signatures (a chunk's, until it is merged: at most its own distinct texts) and
the `NORMALISED_CACHE` texts `normalise` remembers. Per process, at most 2 MB of common 3-gram hashes and
`OTHER_GRAMS` others, and in a worker at most `_RecentSignatures.SIZE` signatures (3.9 MB).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import unicodedata
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import numpy as np

from ..config import SPLIT_NAMES
from ..extras import require

FIELDS = ("original_query", "initial_query", "conversation")
PLURALS = {"original_query": "original_queries", "initial_query": "initial_queries", "conversation": "conversations"}
SHINGLE_CHARS = 3
NUM_PERM = 120
BANDS, ROWS_PER_BAND = 20, 6  # a pair of similarity s shares a band with probability 1 - (1 - s^6)^20
THRESHOLD = 0.8
SEED = 42
REPS = 4  # texts of the other split a candidate is checked against, per bucket
BATCH = 1024  # distinct texts waiting for their signatures (their shingles and digests are built at once)
EXAMPLES = 3
NORMALISED_CACHE = 4096  # texts
MAX_SPLITS = 8  # splits are bits of a uint8
_VERIFY_ROWS = 1 << 15  # signature pairs compared at once

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_ASCII_PUNCTUATION = str.maketrans(dict.fromkeys("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", " "))


@lru_cache(maxsize=NORMALISED_CACHE)
def normalise(text: str) -> str:
    """Case, whitespace and punctuation out of the way: NFKC, case folded, punctuation as spaces, single spaces.

    Remembered for recent texts: the same query and follow-up turns come back across personas."""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_PUNCTUATION).split())
    return " ".join(_PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def shingles(text: str) -> list[str]:
    """Character 3-grams of a normalised text (the text itself when it is shorter)."""
    k = SHINGLE_CHARS
    return [text[i : i + k] for i in range(len(text) - k + 1)] or [text]


def texts_of(sample: dict) -> dict[str, str]:
    """The normalised texts the audit compares, of those the sample has (empty ones left out)."""
    texts = {}
    for name in ("original_query", "initial_query"):
        value = sample.get(name)
        if isinstance(value, str) and (text := normalise(value)):
            texts[name] = text
    turns = sample.get("prompt_trajectory")
    if turns is None:
        messages = sample.get("full_conversation") or sample.get("messages") or ()
        turns = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if turns:
        parts = [normalise(turn) for turn in turns if isinstance(turn, str)]
        if any(parts):  # a normalised turn is empty or has no space at its ends
            texts["conversation"] = "\n".join(parts)
    return texts


@lru_cache(maxsize=NORMALISED_CACHE)
def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# rensa's batch functions run on a pool of Rust threads, started in the process at its first big batch. A process
# forked after that (a `--num-proc` worker of a Python session that exported before) has the pool but none of its
# threads: its next big batch would wait for them forever. Such a process signs one text at a time instead, with
# the same signatures (`RMinHash.update` hashes the same shingles with the same hash).
_batches_run = False  # this process called a batch function (its pool may have threads)
_pool_lost = False  # this process was forked after that: the pool has no threads here


def _forked() -> None:
    global _pool_lost
    _pool_lost = _pool_lost or _batches_run


os.register_at_fork(after_in_child=_forked)


def signatures(texts: list[str]) -> np.ndarray:
    """MinHash signatures of normalised texts: (len(texts), NUM_PERM) uint16."""
    global _batches_run
    rensa = require("rensa", "audit", "near-duplicate detection")
    if _pool_lost:
        rows = []
        for text in texts:
            minhash = rensa.RMinHash(NUM_PERM, SEED)
            minhash.update(shingles(text))
            rows.append(minhash.digest())
    else:
        _batches_run = True
        hashes, offsets = token_hashes(texts)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, NUM_PERM, SEED)
        rows = matrix.to_rows()  # the matrix has no buffer: a list of lists is the only way out
    return (np.array(rows, dtype=np.uint32) & 0xFFFF).astype(np.uint16).reshape(len(texts), NUM_PERM)


def token_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """rensa's token hash of each of the texts' `shingles`, in order, as one uint64 array, and where each text's
    tokens start (len(texts) + 1 offsets): what `RMinHash.digest_matrix_from_flat_token_hashes` takes.

    The 3-grams are windows over the texts' code points, not Python strings (a string per character of every text
    was most of the audit's time). rensa hashes a token's UTF-8 bytes, so its hash of each distinct 3-gram is asked
    once (`_GramHashes` remembers it) and looked up by the gram's code points."""
    k = SHINGLE_CHARS
    joined = "".join(texts)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    counts = np.where(lengths >= k, lengths - (k - 1), 1)  # a shorter text is its one token
    offsets = np.zeros(len(texts) + 1, dtype=np.uint64)
    np.cumsum(counts, out=offsets[1:])
    inside = np.ones(max(len(codes) - (k - 1), 0), dtype=bool)  # the windows that start and end in one text
    for back in range(1, k):
        last = ends - back
        inside[last[(last >= 0) & (last < len(inside))]] = False
    hashes = _GRAMS.hashes(codes, inside)
    short = np.flatnonzero(lengths < k)
    if len(short):
        whole = np.zeros(int(offsets[-1]), dtype=bool)
        whole[offsets[short].astype(np.int64)] = True
        spread = np.empty(len(whole), dtype=np.uint64)
        spread[~whole], spread[whole] = hashes, _rensa_hashes([texts[i] for i in short])
        hashes = spread
    return hashes, offsets


def _rensa_hashes(tokens: list[str]) -> list[int]:
    rensa = require("rensa", "audit", "near-duplicate detection")
    return rensa.RMinHash.hash_token_sets([tokens])[0]


class _GramHashes:
    """rensa's hash of every 3-gram met so far, by its code points. Grams of what `normalise` leaves of ASCII (lower
    case letters, digits, the space, the newline between turns: `COMMON`) are in a table indexed by 6 bits a
    character (2^18 hashes, 2 MB: numpy gives bigger arrays huge pages, which would take memory for a table mostly
    empty; 0 is "not known yet"); the others in a dict of at most `OTHER_GRAMS` (emptied when full)."""

    COMMON = "abcdefghijklmnopqrstuvwxyz0123456789 \n"
    OTHER_GRAMS = 1 << 16

    def __init__(self) -> None:
        self.code = np.full(128, 63, dtype=np.uint32)  # code point (below 128) -> 6-bit code, 63: not common
        self.code[[ord(c) for c in self.COMMON]] = np.arange(len(self.COMMON), dtype=np.uint32)
        self.table: np.ndarray | None = None
        self.other: dict[int, int] = {}

    def hashes(self, codes: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """The hashes of the 3-grams that start at each code point of `codes` where `inside`."""
        small = self.code[np.minimum(codes, 127)]
        keys = ((small[:-2] << 12) | (small[1:-1] << 6) | small[2:])[inside]
        common = (small[:-2] | small[1:-1] | small[2:])[inside] < 63
        if common.all():
            return self._common(keys)
        out = np.empty(len(keys), dtype=np.uint64)
        out[common] = self._common(keys[common])
        wide = codes.astype(np.uint64)
        rest = ((wide[:-2] << 42) | (wide[1:-1] << 21) | wide[2:])[inside][~common]
        other, inverse = np.unique(rest, return_inverse=True)
        other = other.tolist()
        if len(self.other) + len(other) > self.OTHER_GRAMS:
            self.other.clear()
        unknown = [key for key in other if key not in self.other]
        if unknown:
            mask = (1 << 21) - 1
            grams = [chr(key >> 42) + chr(key >> 21 & mask) + chr(key & mask) for key in unknown]
            self.other.update(zip(unknown, _rensa_hashes(grams)))
        values = np.fromiter(map(self.other.__getitem__, other), dtype=np.uint64, count=len(other))
        out[~common] = values[inverse.reshape(-1)]
        return out

    def _common(self, keys: np.ndarray) -> np.ndarray:
        if self.table is None:
            self.table = np.zeros(1 << 18, dtype=np.uint64)
        found = self.table[keys]
        missing = found == 0
        if missing.any():
            unknown = np.unique(keys[missing])
            grams = ["".join(self.COMMON[key >> shift & 63] for shift in (12, 6, 0)) for key in unknown.tolist()]
            self.table[unknown] = _rensa_hashes(grams)
            found[missing] = self.table[keys[missing]]
        return found


_GRAMS = _GramHashes()


MODES = ("auto", "near", "exact")


def resolve_mode(mode: str | None) -> str | None:
    """An export's audit: "near" (rensa's MinHash), "exact" (digests only) or None (off); "auto" is "near" when
    rensa is installed, else "exact"."""
    if mode is None or mode in ("near", "exact"):
        return mode
    if mode != "auto":
        raise ValueError(f"audit: expected one of {list(MODES)} or None, got {mode!r}")
    from importlib.util import find_spec

    return "near" if find_spec("rensa") is not None else "exact"


def method(near: bool = True, threshold: float = THRESHOLD) -> dict[str, Any]:
    """How the figures were made, as `to_dict()` reports it."""
    described: dict[str, Any] = {"normalisation": "NFKC, case folded, punctuation as spaces, whitespace collapsed"}
    if near:
        from importlib.metadata import version

        described.update(
            threshold=threshold,
            shingles=f"character {SHINGLE_CHARS}-grams",
            minhash=f"rensa {version('rensa')} RMinHash, {NUM_PERM} permutations, seed {SEED}",
            lsh=f"{BANDS} bands of {ROWS_PER_BAND} rows, {REPS} checks per bucket",
        )
    return described


@dataclass
class _Texts:
    """The distinct texts of one field (digest, signature) and one row per sample that has the field."""

    index: dict[int, int] = field(default_factory=dict)  # digest -> text number
    keys: array = field(default_factory=lambda: array("Q"))  # digest of each text number
    blocks: list[np.ndarray] = field(default_factory=list)  # signatures of the first texts, in text order
    pending: list[str] = field(default_factory=list)  # texts after those, waiting for their signatures
    row_text: array = field(default_factory=lambda: array("I"))
    row_split: array = field(default_factory=lambda: array("B"))
    row_sample: array = field(default_factory=lambda: array("I"))

    def add(self, text: str, split: int, sample: int, near: bool) -> None:
        key = _digest(text)
        number = self.index.get(key)
        if number is None:
            number = self.index[key] = len(self.keys)
            self.keys.append(key)
            if near:
                self.pending.append(text)
                if len(self.pending) >= BATCH:
                    self.flush()
        self.row_text.append(number)
        self.row_split.append(split)
        self.row_sample.append(sample)

    def flush(self, recent: "_RecentSignatures | None" = None) -> None:
        if self.pending:
            if recent is None:
                self.blocks.append(signatures(self.pending))
            else:
                self.blocks.append(recent.sign(self.keys[len(self.keys) - len(self.pending) :], self.pending))
            self.pending = []

    def __getstate__(self) -> dict:
        """Pickled (a worker's chunk) with its signatures made and without `index`, which `keys` rebuilds."""
        self.flush(_RECENT)
        return {name: value for name, value in self.__dict__.items() if name != "index"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.index = {key: number for number, key in enumerate(self.keys)}

    def signature_matrix(self) -> np.ndarray:
        self.flush()
        if len(self.blocks) != 1:
            self.blocks = [np.concatenate(self.blocks) if self.blocks else np.zeros((0, NUM_PERM), np.uint16)]
        return self.blocks[0]

    def merge(self, other: "_Texts", split_map: np.ndarray, sample_offset: int, near: bool) -> None:
        """Add `other`'s texts and rows after these. Texts new here take `other`'s signature when it has one (a
        worker's chunk comes pickled, signed), else wait here for theirs: a chunk of this process signs nothing, and
        a text already here is not signed again."""
        index, keys = self.index, self.keys
        mine, new = [], []
        for number, key in enumerate(other.keys):
            found = index.get(key)
            if found is None:
                found = index[key] = len(keys)
                keys.append(key)
                new.append(number)
            mine.append(found)
        if near and new:
            signed = sum(len(block) for block in other.blocks)  # other's first texts; the rest wait in `pending`
            ready = [number for number in new if number < signed]
            if ready:
                self.flush()  # the texts waiting here come before these
                self.blocks.append(np.concatenate(other.blocks)[ready])
            for number in new[len(ready) :]:
                self.pending.append(other.pending[number - signed])
                if len(self.pending) >= BATCH:
                    self.flush()
        texts = np.array(mine, dtype=np.uint32)[np.frombuffer(other.row_text, dtype=np.uint32)]
        self.row_text.frombytes(texts.tobytes())
        self.row_split.frombytes(split_map[np.frombuffer(other.row_split, dtype=np.uint8)].tobytes())
        samples = np.frombuffer(other.row_sample, dtype=np.uint32).astype(np.int64) + sample_offset
        self.row_sample.frombytes(samples.astype(np.uint32).tobytes())


class _RecentSignatures:
    """The signatures this process made for the chunks it pickled, by digest (at most `SIZE`, emptied when full): a
    worker meets the same texts in chunk after chunk, and signs each once."""

    SIZE = 1 << 14  # 3.9 MB of signatures: under the size numpy gives huge pages, which would all be taken

    def __init__(self) -> None:
        self.slots: dict[int, int] = {}
        self.rows: np.ndarray | None = None

    def sign(self, keys: Iterable[int], texts: list[str]) -> np.ndarray:
        """`signatures(texts)`, taking those of the texts (by their digests, `keys`) signed here before."""
        keys = list(keys)
        found = [self.slots.get(key, -1) for key in keys]
        missing = [i for i, slot in enumerate(found) if slot < 0]
        if len(missing) == len(keys):
            made = result = signatures(texts)
        else:
            result = np.empty((len(keys), NUM_PERM), dtype=np.uint16)
            hit = [i for i, slot in enumerate(found) if slot >= 0]
            result[hit] = self.rows[[found[i] for i in hit]]
            made = signatures([texts[i] for i in missing]) if missing else result[:0]
            result[missing] = made
        if 0 < len(missing) <= self.SIZE:
            if self.rows is None:
                self.rows = np.empty((self.SIZE, NUM_PERM), dtype=np.uint16)
            if len(self.slots) + len(missing) > self.SIZE:
                self.slots.clear()
            start = len(self.slots)
            self.slots.update((keys[i], start + j) for j, i in enumerate(missing))
            self.rows[start : start + len(missing)] = made
        return result


_RECENT = _RecentSignatures()


class LeakageAudit:
    """Leakage between splits (see the module docstring). `near=False` finds exact duplicates only, without rensa."""

    def __init__(self, *, near: bool = True, threshold: float = THRESHOLD):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"LeakageAudit: expected a threshold in (0, 1], got {threshold!r}")
        if near:
            require("rensa", "audit", "near-duplicate detection")
        self.near, self.threshold = near, threshold
        self.split_names: list[str] = []
        self.samples: list[int] = []  # per split number
        self.personas: dict[str, int] = {}  # persona_id -> bits of the splits it is in
        self.ids = bytearray()  # sample ids, one after another ...
        self.id_ends = array("Q")  # ... and where each ends
        self.fields = {name: _Texts() for name in FIELDS}

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
        self.id_ends.append(len(self.ids))
        persona = sample.get("persona_id")
        if persona:
            self.personas[persona] = self.personas.get(persona, 0) | (1 << number)
        for name, text in texts_of(sample).items():
            self.fields[name].add(text, number, ordinal, self.near)

    def add_all(self, samples: Iterable[tuple[dict, str]]) -> "LeakageAudit":
        for sample, split in samples:
            self.add(sample, split)
        return self

    def merge(self, other: "LeakageAudit") -> "LeakageAudit":
        """Add `other`'s samples after this one's (as if they had been added here, in that order)."""
        if (other.near, other.threshold) != (self.near, self.threshold):
            raise ValueError("LeakageAudit.merge: both audits need the same near and threshold settings")
        split_map = np.array([self._split_number(name) for name in other.split_names] or [0], dtype=np.uint8)
        for theirs, count in enumerate(other.samples):
            self.samples[split_map[theirs]] += count
        for persona, bits in other.personas.items():
            mine = 0
            for theirs in range(len(other.split_names)):
                if bits >> theirs & 1:
                    mine |= 1 << int(split_map[theirs])
            self.personas[persona] = self.personas.get(persona, 0) | mine
        offset, id_offset = len(self.id_ends), len(self.ids)
        self.ids += other.ids
        ends = np.frombuffer(other.id_ends, dtype=np.uint64) + np.uint64(id_offset)
        self.id_ends.frombytes(ends.tobytes())
        for name in FIELDS:
            self.fields[name].merge(other.fields[name], split_map, offset, self.near)
        return self

    def __add__(self, other: "LeakageAudit") -> "LeakageAudit":
        return LeakageAudit(near=self.near, threshold=self.threshold).merge(self).merge(other)

    def sample_id(self, ordinal: int) -> str:
        start = self.id_ends[ordinal - 1] if ordinal else 0
        return self.ids[start : self.id_ends[ordinal]].decode()

    def to_dict(self) -> dict[str, Any]:
        """The `leakage` section of `statistics.json`."""
        order = sorted(
            range(len(self.split_names)),
            key=lambda s: (SPLIT_NAMES.index(n) if (n := self.split_names[s]) in SPLIT_NAMES else 99, n),
        )
        fields = {name: _FieldFigures.of(self.fields[name], len(self.split_names), self) for name in FIELDS}
        pairs = {}
        for i, x in enumerate(order):
            for y in order[i + 1 :]:
                if self.samples[x] and self.samples[y]:
                    pairs[f"{self.split_names[x]}-{self.split_names[y]}"] = self._pair(x, y, fields)
        shares = [
            figure
            for pair in pairs.values()
            for part in pair.values()
            if isinstance(part, dict)
            for key, figure in part.items()
            if key.endswith("share")
        ]
        return {
            "method": method(self.near, self.threshold),
            "samples": {self.split_names[s]: self.samples[s] for s in order},
            "pairs": pairs,
            "max_share": max(shares, default=0.0),
        }

    def _pair(self, x: int, y: int, fields: dict[str, "_FieldFigures"]) -> dict[str, Any]:
        # The smaller split's rows are counted (ties: the later split, the more held-out one).
        small, other = (x, y) if self.samples[x] < self.samples[y] else (y, x)
        names = self.split_names
        both = sorted(p for p, bits in self.personas.items() if bits >> x & 1 and bits >> y & 1)
        in_small = sum(1 for bits in self.personas.values() if bits >> small & 1)
        result: dict[str, Any] = {
            "smaller": names[small],
            "personas": {"shared": len(both), "share": _share(len(both), in_small), "examples": both[:EXAMPLES]},
        }
        for name, figures in fields.items():
            result[name] = figures.pair(small, other, self.near)
        return result


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass
class _FieldFigures:
    """One field's texts resolved: in which splits each text is (`present`) and has an exact or near duplicate
    (`reach`), and the first verified near match per (text, split)."""

    audit: LeakageAudit
    row_text: np.ndarray
    row_split: np.ndarray
    present: np.ndarray
    reach: np.ndarray
    first: np.ndarray  # (texts, splits): the first sample of each text in each split
    match: dict[int, tuple[np.ndarray, np.ndarray]]  # split -> (matched text or -1, equal signature values)

    @classmethod
    def of(cls, texts: _Texts, splits: int, audit: LeakageAudit) -> "_FieldFigures":
        row_text = np.frombuffer(texts.row_text, dtype=np.uint32)
        row_split = np.frombuffer(texts.row_split, dtype=np.uint8)
        n = len(texts.keys)
        present = np.zeros(n, dtype=np.uint8)
        np.bitwise_or.at(present, row_text, (1 << row_split.astype(np.uint8)).astype(np.uint8))
        first = np.full((n, max(splits, 1)), np.iinfo(np.uint32).max, dtype=np.uint32)
        np.minimum.at(first, (row_text, row_split), np.frombuffer(texts.row_sample, dtype=np.uint32))
        figures = cls(audit, row_text, row_split, present, present.copy(), first, {})
        if audit.near and n > 1:
            figures._near(texts.signature_matrix(), np.frombuffer(texts.keys, dtype=np.uint64), splits)
        return figures

    def _near(self, sig: np.ndarray, keys: np.ndarray, splits: int) -> None:
        """Mark each text's splits where a near duplicate verifies (see the module docstring)."""
        n, need = len(keys), math.ceil(self.audit.threshold * NUM_PERM - 1e-9)
        self.match = {y: (np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)) for y in range(splits)}
        for band in range(BANDS):
            columns = sig[:, band * ROWS_PER_BAND : (band + 1) * ROWS_PER_BAND].astype(np.uint64)
            bucket = np.zeros(n, dtype=np.uint64)
            for column in columns.T:
                bucket = bucket * np.uint64(0x9E3779B97F4A7C15) + column
            order = np.lexsort((keys, bucket))  # by bucket, then by content: independent of arrival order
            starts = np.flatnonzero(np.r_[True, bucket[order][1:] != bucket[order][:-1]])
            group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
            shared = np.bincount(group)[group] > 1
            bits = self.present[order]
            for y in range(splits):
                self._band(sig, need, order, starts, group, shared, bits, y)

    def _band(self, sig, need, order, starts, group, shared, bits, y: int) -> None:
        in_y = (bits >> y & 1).astype(bool)
        counted = np.cumsum(in_y)
        rank = counted - (counted[starts] - in_y[starts])[group]  # 1-based rank of a y text in its bucket
        is_rep = in_y & shared & (rank <= REPS)
        reps = np.full((len(starts), REPS), -1, dtype=np.int64)
        reps[group[is_rep], rank[is_rep] - 1] = np.flatnonzero(is_rep)
        waiting = np.flatnonzero(shared & ~in_y & ~(self.reach[order] >> y & 1).astype(bool))
        matched, equal = self.match[y]
        for k in range(REPS):
            rep = reps[group[waiting], k]
            tried = rep >= 0
            a, b = order[waiting[tried]], order[rep[tried]]
            counts = np.concatenate(
                [
                    (sig[a[i : i + _VERIFY_ROWS]] == sig[b[i : i + _VERIFY_ROWS]]).sum(1)
                    for i in range(0, len(a), _VERIFY_ROWS)
                ]
                or [np.zeros(0, dtype=np.int64)]
            )
            hit = counts >= need
            self.reach[a[hit]] |= np.uint8(1 << y)
            matched[a[hit]], equal[a[hit]] = b[hit], counts[hit]
            done = np.zeros(len(waiting), dtype=bool)
            done[np.flatnonzero(tried)[hit]] = True
            waiting = waiting[~done]

    def pair(self, small: int, other: int, near: bool) -> dict[str, Any]:
        rows = self.row_split == small
        total = int(rows.sum())
        exact_texts = (self.present >> other & 1).astype(bool)
        exact = int((rows & exact_texts[self.row_text]).sum())
        figures: dict[str, Any] = {"rows": total, "exact": exact, "exact_share": _share(exact, total)}
        in_small = (self.present >> small & 1).astype(bool)
        sample_id = self.audit.sample_id
        examples = [
            (sample_id(int(self.first[t, small])), sample_id(int(self.first[t, other])))
            for t in np.flatnonzero(in_small & exact_texts)
        ]
        figures["exact_examples"] = [list(pair) for pair in sorted(examples)[:EXAMPLES]]
        if near:
            reach = (self.reach >> other & 1).astype(bool)
            count = int((rows & reach[self.row_text]).sum())
            figures.update(near=count, near_share=_share(count, total))
            matched, equal = self.match.get(other, (np.full(len(self.present), -1), None))
            near_examples = [
                (
                    sample_id(int(self.first[t, small])),
                    sample_id(int(self.first[matched[t], other])),
                    round(int(equal[t]) / NUM_PERM, 4),
                )
                for t in np.flatnonzero(in_small & (matched >= 0))
            ]
            figures["near_examples"] = [list(example) for example in sorted(near_examples)[:EXAMPLES]]
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


def leaks(leakage: dict[str, Any], max_share: float) -> list[str]:
    """What leaks above `max_share`: one phrase per pair and text (personas included), empty when nothing does."""
    found = []
    for key, pair in leakage["pairs"].items():
        a, b = key.split("-", 1)
        small = pair["smaller"]
        big = b if small == a else a
        if pair["personas"]["share"] > max_share:
            found.append(f"{a} <-> {b}: {pair['personas']['shared']} personas shared")
        for name in FIELDS:
            f = pair[name]
            share, kind = (
                (f["near_share"], "an exact or near") if "near_share" in f else (f["exact_share"], "an exact")
            )
            if share > max_share:
                found.append(f"{a} <-> {b}: {share:.1%} of {small} {PLURALS[name]} have {kind} duplicate in {big}")
    return found


def summary_line(leakage: dict[str, Any], max_share: float = 0.0, audit: str = "personagym-hf audit") -> str | None:
    """One line for an export's summary when anything leaks above `max_share`, else None; `audit`: the command
    that shows the rest, for this export."""
    found = leaks(leakage, max_share)
    if not found:
        return None
    more = f" (+{len(found) - 2} more; run `{audit}`)" if len(found) > 2 else ""
    return "leakage: " + "; ".join(found[:2]) + more


__all__ = [
    "FIELDS",
    "MODES",
    "LeakageAudit",
    "resolve_mode",
    "leaks",
    "normalise",
    "report_lines",
    "shingles",
    "summary_line",
    "texts_of",
]
