"""Streaming, atomic writers: every file is written under a temporary name and renamed into place
only when the whole run succeeded, so a run that fails halfway leaves earlier outputs as they were.

JSON is written here rather than with `Dataset.to_json`: that goes through pandas (escaping non-ASCII
by default) and holds batches in memory; this writes one record at a time with orjson (UTF-8,
non-ASCII as is) and gives the same text as `json.dumps(rows, indent=2, ensure_ascii=False)`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

import orjson

_INDENT = orjson.OPT_INDENT_2


def dumps_line(row: Any) -> bytes:
    return orjson.dumps(row) + b"\n"


def dumps_pretty(value: Any) -> bytes:
    return orjson.dumps(value, option=_INDENT) + b"\n"


class AtomicFile:
    """A binary file written to `<dir>/.<name>.tmp` and renamed to its final name by `commit()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.path.with_name(f".{self.path.name}.tmp")
        self.file: IO[bytes] = self.temp.open("wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> Path:
        self.file.close()
        os.replace(self.temp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


def pretty_item(row: Any) -> bytes:
    """One element of a pretty-printed JSON array (indented one level, no separator)."""
    return b"  " + orjson.dumps(row, option=_INDENT).replace(b"\n", b"\n  ")


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
        self.write((b"[\n" if self.count == 0 else ITEM_SEPARATOR) + pretty_item(row))
        self.count += 1

    def add_fragment(self, fragment: Path, count: int) -> None:
        """Append `count` items written elsewhere as `pretty_item`s joined by ITEM_SEPARATOR."""
        if count:
            self.write(b"[\n" if self.count == 0 else ITEM_SEPARATOR)
            copy_into(self, fragment)
            self.count += count

    def commit(self) -> Path:
        self.write(b"\n]\n" if self.count else b"[]\n")
        return super().commit()


class JsonlWriter(AtomicFile):
    """JSON Lines; keeps a sha256 of what it wrote, line by line or part by part (the export's fingerprint)."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.count = 0
        self.sha256 = hashlib.sha256()

    def add(self, row: dict) -> None:
        line = dumps_line(row)
        self.write(line)
        self.sha256.update(line)
        self.count += 1

    def add_file(self, part: Path, count: int, sha256_hex: str) -> None:
        """Append `count` lines written elsewhere, whose sha256 the writer of the part computed."""
        copy_into(self, part)
        self.sha256.update(bytes.fromhex(sha256_hex))
        self.count += count


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
