"""Where the items of a top-level JSON array begin and end, found without decoding them: so that a big array file
is cut into pieces of work (`plan.py`), and a damaged array is read item by item (`store.py`).

A structural scan of the bytes, a block at a time, vectorised with numpy (a Python loop over the bytes would
take longer than decoding them): runs of backslashes (a run of odd length escapes the byte after it), the quotes
left over (each opens or closes a string; a backslash escapes any byte, which JSON allows only
inside strings, so that the rule is one), and outside strings the brackets, braces and commas, whose running
depth gives the commas between the array's items (depth 1) and its closing bracket (back to depth 0). It checks
the structure only; what an item holds is the JSON decoder's business, one item at a time. The scan is a
function of the bytes alone, read left to right with its state carried from block to block, so every block
size, and a scan started just after any comma it finds (`ArrayScan(inside=True)`), finds the same items.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

_BLANK = np.zeros(256, dtype=bool)
_BLANK[list(b" \t\r\n")] = True
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[list(b"[]{},")] = True
_DEPTH = np.zeros(256, dtype=np.int64)
_DEPTH[list(b"[{")] = 1
_DEPTH[list(b"]}")] = -1
_BACKSLASH, _QUOTE, _COMMA, _OPEN = 0x5C, 0x22, 0x2C, 0x5B
_ALL_BLANK = re.compile(rb"[ \t\r\n]*\Z")  # stops at the first byte that is not blank, and copies nothing


class ArrayScan:
    """The structural state of a JSON text fed to `feed` a block at a time. `inside`: the text starts inside the
    array, just after its `[` or one of the commas between its items."""

    def __init__(self, inside: bool = False):
        self.offset = 0  # bytes fed so far
        self.started = inside  # the array's `[` was seen
        self.first = 0  # the offset just after the `[`
        self.blank = True  # nothing but blanks since then, up to `end` (or the bytes fed)
        self.not_array = False  # the first byte that is not blank is not `[`
        self.depth = 1 if inside else 0
        self.in_string = False
        self.escape = False  # the next byte is escaped by a backslash
        self.end = -1  # the offset of the byte that closed the array (back to depth 0), once seen
        self.text_after = -1  # the offset of the first byte past `end` that is not blank, once seen

    def feed(self, block: bytes | bytearray | memoryview) -> np.ndarray:
        """The offsets (from the first byte fed) of the commas between the array's items in `block`."""
        data = np.frombuffer(block, dtype=np.uint8)
        base = self.offset
        self.offset += len(data)
        if self.not_array or not len(data):
            return _NONE
        if self.end >= 0:
            self._look_past_end(data, base)
            return _NONE
        if not self.started:
            shown = np.flatnonzero(~_BLANK[data])
            if not len(shown):
                return _NONE
            first = int(shown[0])
            if data[first] != _OPEN:
                self.not_array = True
                return _NONE
            self.started, self.depth, self.first = True, 1, base + first + 1
            data, base = data[first + 1 :], base + first + 1
            if not len(data):
                return _NONE
        return self._scan(data, base)

    def _scan(self, data: np.ndarray, base: int) -> np.ndarray:
        size = len(data)
        escaped = np.zeros(size + 1, dtype=bool)  # one past the end: the next block's first byte
        escaped[0] = self.escape
        slashes = np.flatnonzero(data == _BACKSLASH)
        if len(slashes):
            starts = np.ones(len(slashes), dtype=bool)
            starts[1:] = slashes[1:] != slashes[:-1] + 1
            run_starts = slashes[starts]
            run_lengths = np.diff(np.append(np.flatnonzero(starts), len(slashes)))
            if self.escape and run_starts[0] == 0:  # its first backslash is the byte the last block escaped
                run_starts[0] += 1
                run_lengths[0] -= 1
            odd = (run_lengths & 1) == 1
            escaped[run_starts[odd] + run_lengths[odd]] = True
        self.escape = bool(escaped[size])
        plain = ~escaped[:size]
        quotes = np.flatnonzero((data == _QUOTE) & plain)
        marks = np.flatnonzero(_STRUCTURAL[data] & plain)
        outside = ((np.searchsorted(quotes, marks) + self.in_string) & 1) == 0
        marks = marks[outside]
        self.in_string ^= bool(len(quotes) & 1)
        if not len(marks):
            self._look_for_content(data)
            return _NONE
        depth = self.depth + np.cumsum(_DEPTH[data[marks]])
        closed = np.flatnonzero(depth <= 0)
        if len(closed):  # the array ends in this block
            last = int(closed[0])
            self.end, self.depth = base + int(marks[last]), 0
            self._look_for_content(data[: int(marks[last])])
            commas = marks[:last][(depth[:last] == 1) & (data[marks[:last]] == _COMMA)]
            self._look_past_end(data[int(marks[last]) + 1 :], self.end + 1)
            return commas + base
        self.depth = int(depth[-1])
        self._look_for_content(data)
        return marks[(depth == 1) & (data[marks] == _COMMA)] + base

    def _look_for_content(self, data: np.ndarray) -> None:
        if self.blank and len(data):
            self.blank = bool(_BLANK[data[: 1 << 12]].all()) and bool(_BLANK[data].all())

    def _look_past_end(self, data: np.ndarray, base: int) -> None:
        if self.text_after < 0 and len(data):
            shown = np.flatnonzero(~_BLANK[data])
            if len(shown):
                self.text_after = base + int(shown[0])


_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes `start` to `stop` of an array file: `start` just after the array's `[` or a comma between items, `stop`
    at the comma or closing byte after its last item, or at the file's end when the array has no end (then its last
    item is cut short). `items`: the items that end in it (an item cut short not counted)."""

    start: int
    stop: int
    first_item: int
    items: int


@dataclass(frozen=True, slots=True)
class ArrayPlan:
    """A top-level array's pieces, in order, and how it ends: `end` is the offset of its closing byte (a `]`, or a
    `}` that closes it wrongly) or -1 when the file ends inside it, `text_after` that of the first byte past the
    end that is not blank, or -1."""

    pieces: list[Piece]
    end: int
    text_after: int


def plan_array(blocks: Iterable[bytes | bytearray | memoryview], piece_bytes: int) -> ArrayPlan | None:
    """Cut the JSON text given as consecutive `blocks` into pieces: each ends at the first comma between items at or
    past `piece_bytes` from its start (the last at the array's end). None when the text is no array (its first byte
    that is not blank is not `[`, or it is all blank)."""
    scan = ArrayScan()
    pieces: list[Piece] = []
    start, first_item = -1, 0  # of the current piece
    commas_seen, commas_before = 0, 0  # commas between items so far; of them, those before `start`
    for block in blocks:
        commas = scan.feed(block)
        if scan.not_array:
            return None
        if start < 0 and scan.started:
            start = scan.first
        while True:
            at = int(np.searchsorted(commas, start + piece_bytes - 1, side="left"))
            if at >= len(commas):
                break
            items = commas_seen + at - commas_before + 1
            pieces.append(Piece(start, int(commas[at]), first_item, items))
            start, first_item, commas_before = int(commas[at]) + 1, first_item + items, commas_seen + at + 1
        commas_seen += len(commas)
        if scan.end >= 0 and scan.text_after >= 0:
            break  # nothing past this changes the plan
    if not scan.started:
        return None
    if scan.end < 0:  # the file ends inside the array: its last item is cut short
        pieces.append(Piece(start, scan.offset, first_item, commas_seen - commas_before))
    else:
        items = 0 if scan.blank else commas_seen - commas_before + 1  # `[ ]` has no item
        pieces.append(Piece(start, scan.end, first_item, items))
    return ArrayPlan(pieces, scan.end, scan.text_after)


def file_blocks(fd: int, start: int, stop: int, block: int) -> Iterator[memoryview]:
    """Bytes `start` to `stop` of an open file (fewer if it is shorter), `block` bytes at a time, in one buffer
    that each block reuses: a block is valid until the next is read."""
    buffer = bytearray(min(block, max(stop - start, 1)))
    view = memoryview(buffer)
    offset = start
    while offset < stop:
        read = os.preadv(fd, [view[: min(len(buffer), stop - offset)]], offset)
        if not read:
            return
        yield view[:read]
        offset += read


def blocks_of(data: bytes, block: int) -> Iterator[memoryview]:
    """`data` `block` bytes at a time, without copies."""
    view = memoryview(data)
    for start in range(0, len(data), block):
        yield view[start : start + block]


def is_blank(data: bytes) -> bool:
    """Whether `data` holds JSON whitespace only."""
    return _ALL_BLANK.match(data) is not None


def piece_commas(data: bytes, cut_short: bool, block: int) -> np.ndarray | None:
    """The offsets in `data` of the commas between items, where `data` is a piece of an array (`Piece`: from just
    after its `[` or a comma, to the comma or closing byte after an item, or to the file's end when `cut_short`);
    None when `data` is no such piece (the file changed since it was planned). `block`: bytes scanned at a time."""
    scan = ArrayScan(inside=True)
    commas = np.concatenate([scan.feed(part) for part in blocks_of(data, block)] or [_NONE])
    if scan.end >= 0 or (not cut_short and (scan.depth != 1 or scan.in_string or scan.escape)):
        return None
    return commas


def ends_at(last: bool, end: int) -> str:
    """What a piece ends at, for `whole_items`: "," unless it is the array's `last`, then "]" (the array's closing
    byte, at `end`) or "" (the file ends inside the array: `end` is -1)."""
    return "," if not last else "]" if end >= 0 else ""


def whole_items(data: bytes, commas: np.ndarray, ends: str, first_item: int) -> int:
    """The whole items of a piece of an array (its commas from `piece_commas`), as `Piece.items` counts them.
    `ends`: what the piece ends at, "," (a comma between items), "]" (the array's closing byte) or "" (the file's
    end: its last item, cut short, is not counted). An array with nothing but blanks between its brackets has no
    item."""
    if ends == "]" and first_item == 0 and not len(commas) and is_blank(data):
        return 0
    return len(commas) + (ends != "")
