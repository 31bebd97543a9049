"""Streaming, atomic writers: every file is written under a temporary name and renamed into place
only when the whole run succeeded, so a run that fails halfway leaves earlier outputs as they were.

JSON is written here rather than with `Dataset.to_json`: that goes through pandas (escaping non-ASCII
by default) and holds batches in memory; this writes one record at a time with orjson (UTF-8,
non-ASCII as is) and gives the same text as `json.dumps(rows, indent=2, ensure_ascii=False)`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import IO, Any, Iterator

import orjson

_INDENT = orjson.OPT_INDENT_2
# Output files take a few KB per sample: with 1 MiB buffers they cost a few syscalls per 1000 samples, not two
# per sample.
BUFFER_BYTES = 1 << 20
# Buffers one os.writev takes: 1024 on Linux; 16 is the least POSIX allows (sysconf says -1 when it has no limit).
IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if "SC_IOV_MAX" in getattr(os, "sysconf_names", {}) else 16


def dumps_line(row: Any) -> bytes:
    # Not OPT_APPEND_NEWLINE, which saves this copy: with it an export of 100k realistic interactions peaked 75 MB
    # higher (the lines a chunk holds took more memory than their length).
    return orjson.dumps(row) + b"\n"


def dumps_line_within(row: Any, limit: int) -> bytes | None:
    """`dumps_line(row)`, or None when the line is longer than `limit` bytes: a big row's text is then made once,
    to learn its size, and not copied (for `line_pieces` to write later)."""
    dumped = orjson.dumps(row)
    return None if len(dumped) >= limit else dumped + b"\n"


def dumps_pretty(value: Any) -> bytes:
    return orjson.dumps(value, option=_INDENT) + b"\n"


class AtomicFile:
    """A binary file written to `<dir>/.<name>.tmp` and renamed to its final name by `commit()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.path.with_name(f".{self.path.name}.tmp")
        self.file: IO[bytes] = self.temp.open("wb", buffering=BUFFER_BYTES)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def write_parts(self, parts: list[bytes], per_call: int = IOV_MAX) -> None:
        """Write `parts`, one after the other, without joining them: os.writev takes them as they are (at most
        `per_call` at a time), and holds no GIL while the kernel copies them (on `write.background`'s thread, the
        export goes on meanwhile). `parts` may be changed (a part written in part is replaced by its rest)."""
        self.file.flush()  # what `write` left in the buffer goes first
        fd, start = self.file.fileno(), 0
        while start < len(parts):
            written = os.writev(fd, parts[start : start + per_call])
            if not written and any(parts[start : start + per_call]):  # never for a file: not a loop without end
                raise OSError(errno.EIO, "the file took no byte of a write", str(self.temp))
            while start < len(parts) and written >= len(parts[start]):
                written -= len(parts[start])
                start += 1
            if written:  # a short write (a signal, the disk filling up): the rest of that part next
                parts[start] = memoryview(parts[start])[written:]

    def commit(self) -> Path:
        self.file.close()
        os.replace(self.temp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the file. Never raises: it runs while another error unwinds, often a full disk, where closing the file
        flushes a buffer the disk cannot take (the descriptor is closed all the same) and that error is the cause."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink(missing_ok=True)


def _pieces(value: Any, indent: bool, level: int) -> Iterator[bytes]:
    """`value` as orjson writes it — compact, or with `indent` two spaces a level from `level` on — in pieces:
    brackets, separators and keys here, each leaf (a string, a number) by orjson. The same bytes as one
    `orjson.dumps`, holding one leaf's at a time instead of the whole text's (a big row, `chunks.InMemory`)."""
    mapping = isinstance(value, dict)  # subclasses too: orjson writes them as their base type
    if mapping or isinstance(value, (list, tuple)):
        if not value:
            yield b"{}" if mapping else b"[]"
            return
        opening, closing = (b"{", b"}") if mapping else (b"[", b"]")
        inner = b"\n" + b"  " * (level + 1) if indent else b""
        yield opening
        for number, entry in enumerate(value.items() if mapping else value):
            separator = (b"," if number else b"") + inner
            if mapping:
                key, entry = entry
                if not isinstance(key, str):  # as orjson, which takes str keys only
                    raise TypeError("Dict key must be str")
                yield separator + orjson.dumps(key) + (b": " if indent else b":")
            else:
                yield separator
            yield from _pieces(entry, indent, level + 1)
        yield (b"\n" + b"  " * level if indent else b"") + closing
    else:
        yield orjson.dumps(value)


def line_pieces(row: Any) -> Iterator[bytes]:
    """`dumps_line(row)`, in pieces (`_pieces`)."""
    yield from _pieces(row, False, 0)
    yield b"\n"


def item_pieces(row: Any) -> Iterator[bytes]:
    """`pretty_item(row)`, in pieces (`_pieces`)."""
    yield b"  "
    yield from _pieces(row, True, 1)


def pretty_item(row: Any) -> bytes:
    """One element of a pretty-printed JSON array (indented one level, no separator): the row dumped inside a
    one-item array, minus the array's "[\n" and "\n]" (faster than re-indenting a dumped row)."""
    return orjson.dumps([row], option=_INDENT)[2:-2]


ITEM_SEPARATOR = b",\n"


def copy_into(target: "AtomicFile", source: Path) -> None:
    """Append a part file to `target`: in the kernel (copy_file_range) where it can, else in blocks."""
    target.file.flush()
    with source.open("rb") as f:
        remaining = os.fstat(f.fileno()).st_size
        try:
            while remaining > 0:
                copied = os.copy_file_range(f.fileno(), target.file.fileno(), remaining)
                if copied == 0:
                    break
                remaining -= copied
        except OSError:  # not supported here (old kernel, other file system): copy what is left by hand
            pass
        if remaining > 0:
            f.seek(os.fstat(f.fileno()).st_size - remaining)
            while block := f.read(1 << 20):
                target.write(block)


class JsonArrayWriter(AtomicFile):
    """A JSON array of pretty-printed objects, one `add()` (or one fragment of items) at a time."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.count = 0

    def add(self, row: dict) -> None:
        self.add_items([pretty_item(row)])

    def add_items(self, items: list[bytes | dict]) -> None:
        """Append items already encoded by `pretty_item`, or rows to encode here, one at a time (a big row is
        held as itself until it is written: see `chunks.InMemory`)."""
        if items:
            self.write(b"[\n" if self.count == 0 else ITEM_SEPARATOR)
            if any(isinstance(item, dict) for item in items):
                for number, item in enumerate(items):
                    if number:
                        self.write(ITEM_SEPARATOR)
                    for piece in item_pieces(item) if isinstance(item, dict) else (item,):
                        self.write(piece)
            else:
                self.write(ITEM_SEPARATOR.join(items))
            self.count += len(items)

    def parts_of(self, items: list[bytes]) -> list[bytes]:
        """`add_items(items)` of encoded items as the parts to write (`write_parts`), counted as written: its caller
        writes them next, before anything else is added."""
        parts = [ITEM_SEPARATOR] * (2 * len(items))
        parts[1::2] = items
        if self.count == 0 and items:
            parts[0] = b"[\n"
        self.count += len(items)
        return parts

    def add_fragment(self, fragment: Path, count: int) -> None:
        """Append `count` items written elsewhere as `pretty_item`s joined by ITEM_SEPARATOR."""
        if count:
            self.write(b"[\n" if self.count == 0 else ITEM_SEPARATOR)
            copy_into(self, fragment)
            self.count += count

    def commit(self) -> Path:
        self.write(b"\n]\n" if self.count else b"[]\n")
        return super().commit()


def line_digests(lines: list[bytes]) -> bytes:
    """The sha256 digest of each line, concatenated: what `JsonlWriter.fingerprint` is computed from."""
    return b"".join(hashlib.sha256(line).digest() for line in lines)


class JsonlWriter(AtomicFile):
    """JSON Lines, with a fingerprint of what it wrote: the sha256 of the sha256 of each line. Hashing lines,
    not the file, gives one fingerprint however the lines arrived — line by line here, as a part a worker
    wrote (with the digests it computed), or carried over from an earlier export by an append."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.count = 0
        self.sha256 = hashlib.sha256()

    def add(self, row: dict) -> None:
        self.add_lines([dumps_line(row)])

    def add_lines(self, lines: list[bytes | dict]) -> None:
        """Append lines already encoded by `dumps_line`, or rows to encode here, one at a time (a big row is held
        as itself until it is written: see `chunks.InMemory`)."""
        if not lines:
            return
        if any(isinstance(line, dict) for line in lines):
            for line in lines:
                if isinstance(line, dict):
                    self._add_row(line)
                else:
                    self.add_lines([line])
            return
        self.write(b"".join(lines))
        self.sha256.update(line_digests(lines))
        self.count += len(lines)

    def note_lines(self, lines: list[bytes]) -> None:
        """Count encoded `lines` and add their digests, as `add_lines` does, without writing them: its caller writes
        them next (`write_parts`), before anything else is added."""
        self.sha256.update(line_digests(lines))
        self.count += len(lines)

    def _add_row(self, row: dict) -> None:
        """One row's line, written a piece at a time (`line_pieces`), with the digest of the whole line."""
        digest = hashlib.sha256()
        for piece in line_pieces(row):
            self.write(piece)
            digest.update(piece)
        self.sha256.update(digest.digest())
        self.count += 1

    def add_file(self, part: Path, count: int, digests: bytes) -> None:
        """Append a part of `count` lines written elsewhere, with the `line_digests` its writer computed."""
        copy_into(self, part)
        self.sha256.update(digests)
        self.count += count

    def fingerprint(self) -> str:
        return self.sha256.hexdigest()


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """A small JSON document (statistics, token usage, reports), pretty-printed, written atomically."""
    out = AtomicFile(path)
    try:
        out.write(dumps_pretty(value))
    except BaseException:
        out.abort()
        raise
    return out.commit()


class OutputSet:
    """Files of one run: all committed together at the end, or all aborted."""

    def __init__(self) -> None:
        self.files: list[AtomicFile] = []

    def open(self, file: AtomicFile) -> AtomicFile:
        self.files.append(file)
        return file

    def commit(self) -> list[Path]:
        return [file.commit() for file in self.files]

    def abort(self) -> None:
        for file in self.files:
            file.abort()
