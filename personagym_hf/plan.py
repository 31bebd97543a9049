"""Cutting a store into chunks, and reading a chunk back: a run of whole files, or a byte range of a large JSON Lines
file, so that one big `.jsonl` file is work for many processes.

A chunk is one piece of the store's file list (`store.PathList`), named by index so that it holds no path and
pickles to a few dozen bytes (a worker process, or a Ray task, gets the file list once and chunks by the
thousand):
- `Files(start, stop)`: whole files `files[start:stop]`, read by `store.iter_file`, each file as a whole;
- `Range(file, start, stop, first_line, size)`: bytes `start` to `stop` of the plain `.jsonl` file `files[file]`,
  whole lines only.

`plan_chunks` groups whole files `chunk_files` at a time, or fewer when the group's plain `.jsonl` files would
pass `chunk_bytes` (a few mid-sized JSON Lines files are then work for several processes too), and cuts each plain
`.jsonl` file over `chunk_bytes` into ranges at line ends, each range a chunk of its own. Such a file ends the group
of whole files before it (a shorter group), and the next group starts after it: so a store of `.json` files is cut
exactly by `chunk_files`, and a chunk is never a mix of files and a range (why a chunk is one piece, not a list).
`.gz` files (no byte of them can be found without decompressing all before it) and `.json` files (an array is one
document) stay whole, whatever their size.

Reading a plan back gives exactly the records, `where` and bad-record reasons of reading the files whole, for any
`chunk_bytes`: a range's lines go through the parser `store.iter_file` uses, numbered from `first_line`. A file
that cannot be opened gives its one bad record from its first range only. The plan is a snapshot: bytes a file
gained since it was planned are not read, and a file that shrank (or whose lines moved across a cut) gives one bad
record saying it changed, from the range where that is seen.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from dataclasses import dataclass
from typing import Iterator, Sequence

from .records import UNREADABLE, BadRecord, Record
from .store import _jsonl_records, _NotReadable, _open_regular, iter_file

logger = logging.getLogger(__name__)

_PLAN_BLOCK = 8 << 20  # bytes read at a time while counting a file's lines: the only memory planning takes
_READ_BUFFER = 1 << 20  # read buffer of a range (its lines are parsed one at a time, as a whole file's)


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


Chunk = Files | Range


def plan_chunks(files: Sequence[str], chunk_files: int, chunk_bytes: int) -> list[Chunk]:
    """The store's chunks, in store order (see the module's docstring). Each plain `.jsonl` file over `chunk_bytes`
    is read once here, in blocks, to find its cuts and count its lines; every other file is at most stat'ed."""
    for name, value in (("chunk_files", chunk_files), ("chunk_bytes", chunk_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    chunks: list[Chunk] = []
    group = 0  # first file of the current group of whole files
    group_bytes = 0  # bytes of the group's plain .jsonl files
    for index, path in enumerate(files):
        ranges, size = _cut(path, index, chunk_bytes) if path.endswith(".jsonl") else (None, 0)
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


def _cut(path: str, index: int, chunk_bytes: int) -> tuple[list[Chunk] | None, int]:
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
        cuts = _line_cuts(fd, size, chunk_bytes)
    except OSError:
        return None, 0
    finally:
        os.close(fd)
    if len(cuts) == 1:  # no line end to cut at (a long last line): read whole, as any file
        return [Files(index, index + 1)], 0
    size = cuts[-1][1]  # what was read: less than fstat said when the file shrank meanwhile
    logger.debug("%s: %d bytes cut into %d ranges", path, size, len(cuts))
    return [Range(index, start, stop, first_line, size) for start, stop, first_line in cuts], 0


def _line_cuts(fd: int, size: int, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """(start, stop, first line) of each range of the first `size` bytes of `fd`: a range ends at the first line end
    that makes it `chunk_bytes` long or more (the last one at the end). Newlines are found and counted a block at a
    time (`bytearray.find` and `count`), never a line at a time, in one buffer whatever the file's size."""
    buffer = bytearray(_PLAN_BLOCK)
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


def iter_chunk(files: Sequence[str], chunk: Chunk) -> Iterator[Record | BadRecord]:
    """The records of a chunk: over a plan's chunks, exactly those of `store.iter_file` over the store's files."""
    for _index, records in iter_chunk_files(files, chunk):
        yield from records


def iter_chunk_files(files: Sequence[str], chunk: Chunk) -> Iterator[tuple[int, Iterator[Record | BadRecord]]]:
    """`iter_chunk` a file at a time: (index of the file in `files`, its records in this chunk), for a caller that
    records which file each record came from."""
    if isinstance(chunk, Files):
        for index in range(chunk.start, chunk.stop):
            yield index, iter_file(files[index])
    else:
        yield chunk.file, _iter_range(files[chunk.file], chunk)


def _iter_range(source: str, piece: Range) -> Iterator[Record | BadRecord]:
    try:
        fd, size = _open_regular(source)
    except (_NotReadable, OSError) as e:
        if piece.start == 0:  # what `iter_file` gives, once per file
            yield BadRecord(source, "", str(e) if isinstance(e, _NotReadable) else _read_failure(e), kind=UNREADABLE)
        return
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
        with io.BufferedReader(_Window(fd, piece.stop - piece.start), _READ_BUFFER) as f:
            yield from _jsonl_records(source, enumerate(f, start=piece.first_line))
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
    return int(chunk.stop == chunk.size)


def describe(files: Sequence[str], chunk: Chunk) -> str:
    """A chunk in one line, for logs: `files[0:1000] (a.json .. z.json)` or `big.jsonl bytes 0:67108880 of
    201326592, from line 1`."""
    if isinstance(chunk, Files):
        names = (
            files[chunk.start] if chunk.stop - chunk.start == 1 else f"{files[chunk.start]} .. {files[chunk.stop - 1]}"
        )
        return f"files[{chunk.start}:{chunk.stop}] ({names})"
    return f"{files[chunk.file]} bytes {chunk.start}:{chunk.stop} of {chunk.size}, from line {chunk.first_line}"
