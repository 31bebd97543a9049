"""Cutting a store into chunks, and reading a chunk back: a run of whole files, a byte range of a large JSON Lines
file, or a piece of a large JSON array, so that one big file is work for many processes.

A chunk is one piece of the store's file list (`store.PathList`), named by index so that it holds no path and
pickles to a few dozen bytes (a worker process, or a Ray task, gets the file list once and chunks by the
thousand):
- `Files(start, stop)`: whole files `files[start:stop]`, read by `store.iter_file`, each file as a whole;
- `Range(file, start, stop, first_line, size)`: bytes `start` to `stop` of the plain `.jsonl` file `files[file]`,
  whole lines only;
- `Items(file, start, stop, first_item, items, size, ...)`: the bytes of whole items of the array in the plain
  `.json` file `files[file]`, found by a structural scan (`jsonscan.py`).

`plan_chunks` groups whole files `chunk_files` at a time, or fewer when the group's plain `.jsonl` files would
pass `chunk_bytes` (a few mid-sized JSON Lines files are then work for several processes too), cuts each plain
`.jsonl` file over `chunk_bytes` into ranges at line ends, and each plain `.json` file over `chunk_bytes` that holds
an array into pieces between items, each range or piece a chunk of its own. Such a file ends the group of whole
files before it (a shorter group), and the next group starts after it: so a store of upstream's `.json` files is
cut exactly by `chunk_files`, and a chunk is never a mix of files and a range (why a chunk is one piece, not a
list). `.gz` files stay whole, whatever their size: no byte of them can be found without decompressing all before
it. Upstream's `interaction_*.json` files are not looked at (`_one_interaction`).

Reading a plan back gives exactly the records, `where` and bad-record reasons of reading the files whole, for any
`chunk_bytes`: a range's lines go through the parser `store.iter_file` uses, numbered from `first_line`, and a
piece's items through the item reader every array goes through (`store.array_records`), numbered from
`first_item`. A file that cannot be opened gives its one bad record from its first range or piece only. The plan
is a snapshot: bytes a file gained since it was planned are not read, and a file that shrank (or whose lines or
items moved across a cut) gives one bad record saying it changed, from the range or piece where that is seen.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import stat
from dataclasses import dataclass
from typing import Iterator, Sequence

from .records import UNREADABLE, BadRecord, Record
from .sizes import READ_SIZES, ReadSizes
from .store import (
    _jsonl_records,
    _NotReadable,
    _open_regular,
    array_end_records,
    array_records,
    iter_file,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Files:
    """Whole files `files[start:stop]` of the store's file list."""

    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class Range:
    """Bytes `start` to `stop` of the plain `.jsonl` file `files[file]`: `start` is 0 or just after a newline, `stop`
    just after a newline or the file's end, and the line at `start` is line `first_line` of the file. `size` is the
    file's size when it was planned: its last range stops there."""

    file: int
    start: int
    stop: int
    first_line: int
    size: int


@dataclass(frozen=True, slots=True)
class Items:
    """Items `first_item` to `first_item + items` of the JSON array in the plain `.json` file `files[file]`: bytes
    `start` to `stop` (a `jsonscan.Piece`). `size` is the file's size when it was planned. The file's last piece
    (`last`) also says how the array ends: `end`, the offset of its closing byte (-1: the file ends inside the
    array), and `text_after`, that of the first byte past it that is not blank (-1: none)."""

    file: int
    start: int
    stop: int
    first_item: int
    items: int
    size: int
    last: bool = False
    end: int = -1
    text_after: int = -1


Chunk = Files | Range | Items


def plan_chunks(
    files: Sequence[str], chunk_files: int, chunk_bytes: int, sizes: ReadSizes = READ_SIZES
) -> list[Chunk]:
    """The store's chunks, in store order (see the module's docstring). Each plain `.jsonl` file over `chunk_bytes`
    is read once here, `sizes.plan_block` bytes at a time, to find its cuts and count its lines; every other file is
    at most stat'ed."""
    for name, value in (("chunk_files", chunk_files), ("chunk_bytes", chunk_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    chunks: list[Chunk] = []
    group = 0  # first file of the current group of whole files
    group_bytes = 0  # bytes of the group's plain .jsonl files
    for index, path in enumerate(files):
        if path.endswith(".jsonl"):
            ranges, size = _cut(path, index, chunk_bytes, sizes)
        elif path.endswith(".json") and not _one_interaction(path):
            ranges, size = _cut_array(path, index, chunk_bytes, sizes), 0
        else:
            ranges, size = None, 0
        if ranges is None:  # a whole file, in the current group, unless the group is full
            if index - group == chunk_files or (group_bytes and group_bytes + size > chunk_bytes):
                chunks.append(Files(group, index))
                group, group_bytes = index, 0
            group_bytes += size
            continue
        if group < index:
            chunks.append(Files(group, index))
        chunks.extend(ranges)
        group, group_bytes = index + 1, 0
    if group < len(files):
        chunks.append(Files(group, len(files)))
    return chunks


def _cut(path: str, index: int, chunk_bytes: int, sizes: ReadSizes) -> tuple[list[Chunk] | None, int]:
    """The chunks of a `.jsonl` file over `chunk_bytes` (its ranges, or the whole file when it is one line), or None
    for a file to group with the others (small, no regular file, or unreadable: reading it says why), and the bytes
    it adds to its group (0 for no regular file)."""
    try:
        info = os.stat(path)
    except OSError:
        return None, 0
    if not stat.S_ISREG(info.st_mode):
        return None, 0
    if info.st_size <= chunk_bytes:
        return None, info.st_size
    try:
        fd, size = _open_regular(path)
    except (_NotReadable, OSError):
        return None, 0
    try:
        cuts = _line_cuts(fd, size, chunk_bytes, sizes.plan_block)
    except OSError:
        return None, 0
    finally:
        os.close(fd)
    if len(cuts) == 1:  # no line end to cut at (a long last line): read whole, as any file
        return [Files(index, index + 1)], 0
    size = cuts[-1][1]  # what was read: less than fstat said when the file shrank meanwhile
    logger.debug("%s: %d bytes cut into %d ranges", path, size, len(cuts))
    return [Range(index, start, stop, first_line, size) for start, stop, first_line in cuts], 0


def _one_interaction(path: str) -> bool:
    """Whether the file is named as upstream's `InteractionStorage` names its files, which hold one interaction
    each: planning does not stat them (a store of a million of them would spend ~3 s on it). Cutting changes no
    output, so an array file named so is only read whole, by one process."""
    return path[path.rfind("/") + 1 :].startswith("interaction_")


def _cut_array(path: str, index: int, chunk_bytes: int, sizes: ReadSizes) -> list[Chunk] | None:
    """The pieces of a `.json` file over `chunk_bytes` whose text is an array (`jsonscan.plan_array`), or None for
    a file read whole (small, no array, one piece, no regular file, or unreadable: reading it says why)."""
    from .jsonscan import file_blocks, plan_array  # numpy: only for a store with such a file

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= chunk_bytes:
            return None
        fd, size = _open_regular(path)
    except (_NotReadable, OSError):
        return None
    try:
        plan = plan_array(file_blocks(fd, 0, size, sizes.scan_block), chunk_bytes)
    except OSError:
        return None
    finally:
        os.close(fd)
    if plan is None or len(plan.pieces) == 1:
        return None
    logger.debug("%s: %d bytes cut into %d pieces of its array", path, size, len(plan.pieces))
    *pieces, last = [Items(index, p.start, p.stop, p.first_item, p.items, size) for p in plan.pieces]
    return [*pieces, dataclasses.replace(last, last=True, end=plan.end, text_after=plan.text_after)]


def _line_cuts(fd: int, size: int, chunk_bytes: int, block: int) -> list[tuple[int, int, int]]:
    """(start, stop, first line) of each range of the first `size` bytes of `fd`: a range ends at the first line end
    that makes it `chunk_bytes` long or more (the last one at the end). Newlines are found and counted a block at a
    time (`bytearray.find` and `count`), `block` bytes at a time, never a line at a time, in one buffer whatever the
    file's size."""
    buffer = bytearray(block)
    view = memoryview(buffer)
    cuts: list[tuple[int, int, int]] = []
    start, first_line = 0, 1  # of the current range
    offset, lines = 0, 0  # the file offset of `buffer[0]`; newlines before `offset + counted`
    end = chunk_bytes - 1  # the current range ends after the first newline at or past this offset
    while offset < size:
        read = os.readv(fd, [view[: min(len(buffer), size - offset)]])
        if not read:  # the file shrank since fstat
            break
        counted = 0  # bytes of the block whose newlines are in `lines`
        while end < offset + read:
            cut = buffer.find(b"\n", max(end - offset, counted), read)
            if cut < 0:
                break
            lines += buffer.count(b"\n", counted, cut + 1)
            counted = cut + 1
            cuts.append((start, offset + counted, first_line))
            start, first_line = offset + counted, lines + 1
            end = start + chunk_bytes - 1
        lines += buffer.count(b"\n", counted, read)
        offset += read
    if start < offset or not cuts:
        cuts.append((start, offset, first_line))
    return cuts


def iter_chunk(files: Sequence[str], chunk: Chunk, sizes: ReadSizes = READ_SIZES) -> Iterator[Record | BadRecord]:
    """The records of a chunk: over a plan's chunks, exactly those of `store.iter_file` over the store's files."""
    for _index, records in iter_chunk_files(files, chunk, sizes):
        yield from records


def iter_chunk_files(
    files: Sequence[str], chunk: Chunk, sizes: ReadSizes = READ_SIZES
) -> Iterator[tuple[int, Iterator[Record | BadRecord]]]:
    """`iter_chunk` a file at a time: (index of the file in `files`, its records in this chunk), for a caller that
    records which file each record came from."""
    if isinstance(chunk, Files):
        for index in range(chunk.start, chunk.stop):
            yield index, iter_file(files[index], sizes)
    elif isinstance(chunk, Range):
        yield chunk.file, _iter_range(files[chunk.file], chunk, sizes.range_buffer)
    else:
        yield chunk.file, _iter_items(files[chunk.file], chunk, sizes.scan_block)


def _open_part(source: str, first: bool) -> tuple[int, int] | BadRecord | None:
    """The open file (fd, size) of a range or piece; when it cannot be opened, the bad record `iter_file` gives, from
    the file's `first` range or piece only (None from the others)."""
    try:
        return _open_regular(source)
    except (_NotReadable, OSError) as e:
        if not first:
            return None
        return BadRecord(source, "", str(e) if isinstance(e, _NotReadable) else _read_failure(e), kind=UNREADABLE)


def _iter_range(source: str, piece: Range, buffer: int) -> Iterator[Record | BadRecord]:
    opened = _open_part(source, piece.start == 0)
    if not isinstance(opened, tuple):
        yield from [opened] if opened else []
        return
    fd, size = opened
    try:
        if size < piece.stop:  # shrank: the range that holds its new end says so, those past it give nothing
            if piece.start <= size:
                yield BadRecord(source, "", _changed(f"it had {piece.size} bytes, it has {size}"), kind=UNREADABLE)
            return
        os.lseek(fd, max(piece.start - 1, 0), os.SEEK_SET)
        if piece.start and os.read(fd, 1) != b"\n":  # rewritten: the line no longer starts at the cut
            changed = _changed(f"line {piece.first_line} no longer starts at byte {piece.start}")
            yield BadRecord(source, "", changed, kind=UNREADABLE)
            return
        with io.BufferedReader(_Window(fd, piece.stop - piece.start), buffer) as f:
            yield from _jsonl_records(source, f, piece.first_line)
    except OSError as e:  # as `iter_file`: the records read so far stand
        yield BadRecord(source, "", _read_failure(e), kind=UNREADABLE)
    finally:
        os.close(fd)


def _iter_items(source: str, piece: Items, scan_block: int) -> Iterator[Record | BadRecord]:
    from .jsonscan import ends_at, piece_commas, whole_items  # numpy: only for a store with such a file

    ends = ends_at(piece.last, piece.end)
    cut_short = ends == ""
    opened = _open_part(source, piece.first_item == 0)
    if not isinstance(opened, tuple):
        yield from [opened] if opened else []
        return
    fd, _size = opened
    try:
        data = os.pread(fd, piece.stop - piece.start, piece.start)
        before = os.pread(fd, 1, piece.start - 1)
        after = b"" if cut_short else os.pread(fd, 1, piece.stop)
        commas = piece_commas(data, cut_short, scan_block) if len(data) == piece.stop - piece.start else None
        if (
            commas is None
            or before not in (b"[", b",")
            or after not in ((b"",) if cut_short else (b"]", b"}") if piece.last else (b",",))
            or whole_items(data, commas, ends, piece.first_item) != piece.items
        ):
            changed = _changed(f"item {piece.first_item} no longer starts at byte {piece.start}")
            yield BadRecord(source, "", changed, kind=UNREADABLE)
            return
        yield from array_records(source, data, piece.start, piece.first_item, ends, scan_block, commas)
        if piece.last:
            yield from array_end_records(source, piece.end, after[0] if after else None, piece.text_after)
    except OSError as e:  # as `iter_file`: the records read so far stand
        yield BadRecord(source, "", _read_failure(e), kind=UNREADABLE)
    finally:
        os.close(fd)


def _read_failure(error: OSError) -> str:
    return f"cannot read file ({error.__class__.__name__}: {error})"


def _changed(what: str) -> str:
    return f"the file changed since the export started ({what}); rerun the export"


class _Window(io.RawIOBase):
    """The next `remaining` bytes of an open file, and no byte past them: a range read by `io.BufferedReader`,
    which splits its lines in C as it does a whole file's. It does not close the descriptor."""

    def __init__(self, fd: int, remaining: int):
        self.fd, self.remaining = fd, remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.remaining)
        if wanted <= 0:
            return 0
        read = os.readv(self.fd, [memoryview(buffer)[:wanted]])
        self.remaining -= read
        return read


def chunk_files_count(chunk: Chunk) -> int:
    """The files a chunk finishes, for a progress bar over the store's files: a run of files counts them all, a range
    1 when it is its file's last and 0 otherwise. A plan's chunks add up to the store's file count."""
    if isinstance(chunk, Files):
        return chunk.stop - chunk.start
    if isinstance(chunk, Items):
        return int(chunk.last)
    return int(chunk.stop == chunk.size)


def describe(files: Sequence[str], chunk: Chunk) -> str:
    """A chunk in one line, for logs: `files[0:1000] (a.json .. z.json)` or `big.jsonl bytes 0:67108880 of
    201326592, from line 1`."""
    if isinstance(chunk, Files):
        names = (
            files[chunk.start] if chunk.stop - chunk.start == 1 else f"{files[chunk.start]} .. {files[chunk.stop - 1]}"
        )
        return f"files[{chunk.start}:{chunk.stop}] ({names})"
    if isinstance(chunk, Items):
        items = f"items {chunk.first_item}:{chunk.first_item + chunk.items}"
        return f"{files[chunk.file]} bytes {chunk.start}:{chunk.stop} of {chunk.size}, {items}"
    return f"{files[chunk.file]} bytes {chunk.start}:{chunk.stop} of {chunk.size}, from line {chunk.first_line}"
