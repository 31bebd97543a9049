"""Texts as the leakage audit compares them: normalised, digested (exact duplicates) and sketched (near ones).

- `normalise`: NFKC, case folded, punctuation as spaces, whitespace collapsed. A text over `PIECE_CHARS` characters
  is normalised a piece at a time (cut at whitespace), so that a 20 MB turn costs a piece's memory, not copies of
  the whole.
- `Sketcher.add(turns)`: the 64-bit blake2b digest of the normalised text (its turns joined by a newline: exact
  duplicates are judged on the whole text) and, for near duplicates, the character 3-grams of a bounded sample of
  it: the first `turn_chars` characters of each normalised turn, at most `text_chars` in all. 3-grams never span
  two turns: a conversation's set of grams is the union of its turns'.
- `Sketcher.sign()`: one-permutation MinHash signatures of the texts added, a batch at a time, in numpy: each gram
  hashed once (splitmix64 of its three code points) and put in `SLOTS` of the `BINS` bins (7 bits of the hash for
  each bin, 14 others for its value there), each bin keeping its smallest value: a bin is the MinHash of the grams
  that fall in it, and with 3 slots a short text leaves few bins empty. Empty bins are filled by optimal
  densification (Shrivastava 2017: an empty bin takes the value of the first non-empty bin of a fixed random probe
  sequence, the same for every text, so that two texts still agree on a bin with probability their Jaccard
  similarity). On realistic queries and conversations the estimate's standard deviation is within 10% of a
  120-permutation MinHash's (measured on the docs' performance page). A signature keeps the low 8 bits of each
  bin: two unrelated values agree by chance with probability 1/256, which adds (1 - J) / 256 to an estimate.

Why not rensa's or datasketch's MinHash, which hash every gram `BINS` times: their signatures come back to Python
as lists of ints, 10-15 us a text (measured on the docs' performance page), more than the rest of the audit; here
a text costs its grams (~20 ns each) and no Python object per value. The cost of a text is bounded by its sample.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

SHINGLE_CHARS = 3
BINS = 128
SEED = 42
PIECE_CHARS = 1 << 16  # a text over this is normalised a piece at a time
NORMALISED_CACHE = 4096  # short texts `normalise` remembers: queries and follow-ups come back across personas
_CACHED_CHARS = 512  # longer texts are not remembered (the cache would hold them)
_EMPTY = np.uint32(0x10000)  # a bin no gram fell in (values are 14 bits)
_NO_CHAR = 0x1FFFFF  # pads a text shorter than a gram: no code point is this large
SLOTS = 3  # bins each gram goes to (3 x 7 bits of its hash for the bins, 3 x 14 others for the values)
_PROBES = np.random.default_rng(SEED).integers(0, BINS, size=(64, BINS))  # densification: each empty bin's probes

_PUNCTUATION = re.compile(r"[^\w\s]|_")
# ASCII text, a byte at a time: upper case to lower, punctuation and what `str.split` takes for whitespace to spaces
# (then runs of spaces to one): the same as the general rule, several times faster than `str.translate`.
_ASCII_TABLE = bytes(
    32 if chr(b) in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" or chr(b).isspace() else ord(chr(b).lower())
    for b in range(128)
) + bytes(range(128, 256))
_SPACE_RUNS = re.compile(b"  +")


def _normalise(text: str) -> str:
    if text.isascii():
        return _SPACE_RUNS.sub(b" ", text.encode().translate(_ASCII_TABLE)).strip(b" ").decode()
    return " ".join(_PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


_normalise_cached = lru_cache(maxsize=NORMALISED_CACHE)(_normalise)


def normalise(text: str) -> str:
    """Case, whitespace and punctuation out of the way: NFKC, case folded, punctuation as spaces, single spaces.
    A long text is normalised a piece at a time (`pieces`) and the pieces joined by a space."""
    if len(text) <= _CACHED_CHARS:
        return _normalise_cached(text)
    return " ".join(pieces(text))


def pieces(text: str) -> Iterable[str]:
    """The normalised pieces of a text (none empty), each of at most about `PIECE_CHARS` characters: joined by a
    space they are its normalisation. A text is cut at a space, tab or newline (NFKC composes nothing across one,
    so cutting there changes nothing), or where there is none in the last 4,096 characters of a piece, before a
    character that does not combine with the one before it."""
    start = 0
    while start < len(text):
        stop = start + PIECE_CHARS
        if stop < len(text):
            space = max(text.rfind(" ", stop - 4096, stop), text.rfind("\n", stop - 4096, stop))
            if space > start:
                stop = space
            else:
                while stop < len(text) and unicodedata.combining(text[stop]):
                    stop += 1
        piece = _normalise(text[start:stop])
        if piece:
            yield piece
        start = stop


def shingles(text: str) -> list[str]:
    """Character 3-grams of a normalised text (the text itself when it is shorter): what near duplicates are
    judged on, as strings (the sketch hashes them from the code points; this is the reference)."""
    k = SHINGLE_CHARS
    return [text[i : i + k] for i in range(len(text) - k + 1)] or [text]


def digest(text: str) -> int:
    """The 64-bit digest of a normalised text (exact duplicates share it)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


_digest_cached = lru_cache(maxsize=NORMALISED_CACHE)(digest)


class RecentSignatures:
    """The signatures of the texts signed last in this process, by digest (at most `size`, emptied when full): the
    same query comes back across personas and chunks, and is signed once while it does."""

    def __init__(self, size: int = 1 << 14):
        self.size = size
        self.rows: dict[int, bytes] = {}

    def get(self, key: int) -> bytes | None:
        return self.rows.get(key)

    def update(self, keys: list[int], signed: np.ndarray) -> None:
        if len(self.rows) + len(keys) > self.size:
            self.rows.clear()
        if len(keys) <= self.size:
            self.rows.update(zip(keys, map(bytes, signed)))


RECENT = RecentSignatures()  # this process's (a worker's own, after a fork)


class Sketcher:
    """Texts waiting for their signatures: `add` digests a text and keeps the sample of it to shingle; `sign` gives
    the signatures of every text added since the last call, in order. `turn_chars` and `text_chars` bound the sample
    (see the module docstring); a text whose signature is in `recent`, or added before in the same batch, is not
    sampled nor signed again."""

    def __init__(self, turn_chars: int, text_chars: int, near: bool = True, recent: RecentSignatures = RECENT):
        self.turn_chars, self.text_chars, self.near, self.recent = turn_chars, text_chars, near, recent
        self.keys: list[int] = []  # the digest of each text added since the last `sign`
        self.known: dict[int, bytes] = {}  # digest -> signature, of the texts `recent` had
        self.new: dict[int, int] = {}  # digest -> number, of the texts to sign ...
        self.samples: list[str] = []  # ... their samples (a text's sampled turns) ...
        self.owners: list[int] = []  # ... and the number of the text each belongs to
        self.chars = 0  # characters in `samples`
        self.signed = 0  # texts signed (for the tests)

    def add(self, turns: list[str]) -> int | None:
        """The digest of the text made of `turns` (normalised, joined by newlines), or None when it is empty (every
        turn normalises to nothing); with `near`, its sample waits for `sign`."""
        if len(turns) == 1 and len(turns[0]) <= _CACHED_CHARS:  # a query: the commonest case
            normalised = _normalise_cached(turns[0])
            if not normalised:
                return None
            key = _digest_cached(normalised)
            if self.near:
                self._wait(key, (normalised,))
            return key
        if all(len(turn) <= _CACHED_CHARS for turn in turns):  # short turns
            normalised = [_normalise_cached(turn) for turn in turns]
            if not any(normalised):
                return None
            key = digest("\n".join(normalised))
            if self.near:
                self._wait(key, normalised)
            return key
        digester = hashlib.blake2b(digest_size=8)
        heads = []  # the first characters of each normalised turn, for the sample
        empty = True
        for number, turn in enumerate(turns):
            if number:
                digester.update(b"\n")
            head, wanted = [], self.turn_chars
            for index, piece in enumerate(pieces(turn)):
                empty = False
                if index:
                    digester.update(b" ")
                    if wanted > 0:
                        head.append(" ")
                        wanted -= 1
                digester.update(piece.encode())
                if wanted > 0:
                    head.append(piece[:wanted])
                    wanted -= len(head[-1])
            heads.append("".join(head))
        if empty:
            return None
        key = int.from_bytes(digester.digest(), "little")
        if self.near:
            self._wait(key, heads)
        return key

    def __getstate__(self) -> dict:
        """Pickled (a worker's chunk, signed) without `recent`: the receiving process has its own."""
        state = dict(self.__dict__)
        state["recent"] = None if self.recent is RECENT else self.recent
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.recent is None:
            self.recent = RECENT

    def _wait(self, key: int, turns: Sequence[str]) -> None:
        """Keep the sample of a text's normalised turns — the first `turn_chars` of each, `text_chars` in all —
        unless its signature is known or on its way."""
        self.keys.append(key)
        if key in self.new or key in self.known:
            return
        known = self.recent.get(key)
        if known is not None:  # kept here: another audit may empty `recent` before this one signs
            self.known[key] = known
            return
        number = self.new[key] = len(self.new)
        left = self.text_chars
        for turn in turns:
            if turn and left > 0:
                head = turn[: min(self.turn_chars, left)]
                self.samples.append(head)
                self.owners.append(number)
                self.chars += len(head)
                left -= len(head)

    def sign(self) -> np.ndarray:
        """(texts added since the last call, `BINS`) uint8: their signatures, in order."""
        made = signatures(self.samples, np.array(self.owners, dtype=np.int64), len(self.new))
        out = np.empty((len(self.keys), BINS), dtype=np.uint8)
        new, known = self.new, self.known
        at = np.fromiter((new.get(key, -1) for key in self.keys), dtype=np.int64, count=len(self.keys))
        out[at >= 0] = made[at[at >= 0]]
        rows = np.flatnonzero(at < 0).tolist()
        if rows:  # the texts signed before: their signatures joined, one copy in all
            keys = self.keys
            out[rows] = np.frombuffer(b"".join([known[keys[row]] for row in rows]), dtype=np.uint8).reshape(-1, BINS)
        self.recent.update(list(new), made)
        self.signed += len(new)
        self.keys, self.known, self.new, self.samples, self.owners, self.chars = [], {}, {}, [], [], 0
        return out


_MIX_SEED = np.uint64(SEED * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit mixer (splitmix64's finaliser): every output bit depends on every input bit. In place: `x` is
    returned, mixed (a batch's keys are large; no temporary of their size is made)."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def gram_hashes(samples: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every 3-gram of each sample (a sample shorter than a gram is one gram: itself), and the sample
    each belongs to. Windows over the samples' code points, in numpy: no Python string per gram."""
    return _gram_hashes(samples, np.arange(len(samples), dtype=np.int64))


def _gram_hashes(samples: list[str], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`gram_hashes`, with each gram's sample given as that sample's `labels` value (`signatures` passes the place
    of its text's first bin, so that no gather by sample is needed)."""
    k = SHINGLE_CHARS
    lengths = np.fromiter(map(len, samples), dtype=np.int64, count=len(samples))
    codes = np.frombuffer("".join(samples).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    ends = np.cumsum(lengths)
    windows = max(len(codes) - (k - 1), 0)
    inside = np.ones(windows, dtype=bool)  # the windows that start and end in one sample
    for back in range(1, k):
        last = ends - back
        inside[last[(last >= 0) & (last < windows)]] = False
    keys = codes[:-2] << np.uint64(42)
    keys |= codes[1:-1] << np.uint64(21)
    keys |= codes[2:]
    keys = keys[inside]
    owner = np.repeat(labels, lengths)[:windows][inside]
    short = np.flatnonzero(lengths < k)
    if len(short):  # one gram each: its code points, padded with a value no code point has
        padded = [(list(map(ord, samples[i])) + [_NO_CHAR] * k)[:k] for i in short.tolist()]
        pad = np.array(padded, dtype=np.uint64).reshape(-1, k)
        keys = np.concatenate([keys, (pad[:, 0] << np.uint64(42)) | (pad[:, 1] << np.uint64(21)) | pad[:, 2]])
        owner = np.concatenate([owner, labels[short]])
    keys ^= _MIX_SEED
    return _splitmix64(keys), owner


def signatures(samples: list[str], owners: np.ndarray, texts: int) -> np.ndarray:
    """(texts, BINS) uint8 one-permutation MinHash signatures of `texts` texts, each the union of the 3-grams of the
    `samples` it owns (`owners`: the text number of each sample). A text with no sample has all bins empty (255:
    it matches nothing but an equally empty text, and no text is empty: `Sketcher.add` leaves those out)."""
    signature = np.full(texts * BINS, _EMPTY, dtype=np.uint32)
    if samples:
        hashes, base = _gram_hashes(samples, np.asarray(owners, dtype=np.int64) * BINS)
        place, value = np.empty_like(hashes), np.empty_like(hashes)
        base = base.view(np.uint64)
        for slot in range(SLOTS):  # a gram goes to SLOTS bins, by 7 bits of its hash each, with 14 other bits
            np.right_shift(hashes, np.uint64(57 - 7 * slot), out=place)
            place &= np.uint64(BINS - 1)
            place += base
            np.right_shift(hashes, np.uint64(14 * slot), out=value)
            value &= np.uint64(0x3FFF)
            np.minimum.at(signature, place.view(np.int64), value.astype(np.uint32))
    signature = signature.reshape(texts, BINS)
    _densify(signature)
    return (signature & 0xFF).astype(np.uint8)


def _densify(signature: np.ndarray) -> None:
    """Fill the empty bins, in place, by optimal densification (Shrivastava, ICML 2017): an empty bin takes the
    value of the first non-empty bin of its probe sequence (`_PROBES`, the same for every text), so that two texts
    still agree on a bin with probability their Jaccard similarity. A bin still empty after `_PROBES` probes (a
    text of a handful of grams) takes the next non-empty bin to its right. The bins are addressed by their flat
    place in `signature` (one index, not a row and a column: half the time)."""
    full = signature != _EMPTY
    flat, full_flat = signature.reshape(-1), full.reshape(-1)  # views: `signatures` makes `signature` contiguous
    empty = np.flatnonzero(~full_flat)  # the empty bins' flat places ...
    columns = empty & (BINS - 1)  # ... their bins ...
    starts = empty - columns  # ... and their texts' first bins
    for probe in _PROBES:
        if not len(empty):
            return
        source = starts + probe[columns]
        found = full_flat[source]  # a full bin is never written here: the order of the writes does not matter
        flat[empty[found]] = flat[source[found]]
        missed = ~found
        empty, columns, starts = empty[missed], columns[missed], starts[missed]
    rows = empty // BINS
    if not len(rows):
        return
    left = np.unique(rows)  # the texts with bins left: the next bin to the right (circularly) that is not empty
    doubled = np.concatenate([full[left], full[left]], axis=1)
    marks = np.where(doubled, np.arange(2 * BINS), 4 * BINS)
    after = np.minimum.accumulate(marks[:, ::-1], axis=1)[:, ::-1][:, :BINS] % BINS
    which = np.searchsorted(left, rows)
    any_full = full[rows].any(axis=1)
    rows, columns, which = rows[any_full], columns[any_full], which[any_full]
    signature[rows, columns] = signature[rows, after[which, columns]]


__all__ = [
    "BINS",
    "SLOTS",
    "RECENT",
    "RecentSignatures",
    "Sketcher",
    "digest",
    "normalise",
    "pieces",
    "shingles",
    "signatures",
]
