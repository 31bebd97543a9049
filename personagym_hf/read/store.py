"""Reading interaction stores as upstream writes them, one record at a time.

A store is a directory (searched recursively) or a single file. Layouts: one interaction per `.json`
file (upstream `InteractionStorage`), JSON Lines (`.jsonl`), one JSON array per `.json` file, and
`.gz` of any of these. `index.json` is never trusted — the files are the truth — and TokenTracker
exports (`token_usage*.json`) are not interactions. Nothing holds more than one record (plus one file's
read buffer, or one piece of a big array) in memory.

An array is read by one rule whatever its size, so that cutting it (`plan.py`) changes nothing: its items are found
by a structural scan (`jsonscan.py`) and decoded one by one; an item that is no valid JSON is one bad record, and
the others stand (a valid array up to 64 MiB is decoded in one call, which gives the same records).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import heapq
import os
import stat
from array import array
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import orjson

from .records import INVALID_JSON, NOT_AN_OBJECT, UNREADABLE, BadRecord, Record
from .sizes import READ_SIZES, ReadSizes

if TYPE_CHECKING:
    import numpy as np

INTERACTION_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def is_token_usage_file(path: Path | str) -> bool:
    name = os.path.basename(path)
    return name.startswith("token_usage") and name.endswith(".json")


def is_interaction_file(path: Path | str) -> bool:
    name = os.path.basename(path)
    return (
        name.endswith(INTERACTION_SUFFIXES)
        and name != "index.json"
        and not is_token_usage_file(name)
        and not name.startswith(".")
    )


def _walk(
    folder: str, wanted: Callable[[str], bool] = is_interaction_file, walked: set[tuple[int, int]] | None = None
) -> Iterator[str]:
    """Paths below `folder` whose name is `wanted`, skipping hidden files and folders. A streaming os.scandir walk
    with plain strings: it runs once per file of a store, and (unlike `Path.rglob`) never lists a whole folder of
    100k entries at once.

    Every entry with a wanted name that is not a folder is given, whatever it is — a FIFO, a device, a broken link,
    a link loop: reading it (`iter_file`) reports what it is, instead of the walk skipping it unseen. Links to
    folders are followed, and each folder is walked once (`walked`: device and inode of the folders seen), so a
    link back up the tree (`up -> ..`) is no cycle. A folder is walked under the first name it is met by: folders
    themselves first, then the linked ones in path order, so the name does not depend on the listing order."""
    walked = set() if walked is None else walked
    pending: list[str] = []  # linked folders, walked after the real ones

    def walk(path: str) -> Iterator[str]:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:  # a link loop (ELOOP): not a folder; reading it says what it is
                    is_dir = False
                if not is_dir:
                    if wanted(entry.name):
                        yield entry.path
                elif entry.is_symlink():
                    heapq.heappush(pending, entry.path)
                elif _first_visit(entry.path, walked):
                    yield from walk(entry.path)

    if _first_visit(folder, walked):
        yield from walk(folder)
    while pending:
        linked = heapq.heappop(pending)
        if _first_visit(linked, walked):
            yield from walk(linked)


def _first_visit(folder: str, walked: set[tuple[int, int]]) -> bool:
    """Whether `folder` (followed through links) was not walked yet; it is marked walked."""
    try:
        info = os.stat(folder)
    except OSError:  # gone since it was listed
        return False
    key = (info.st_dev, info.st_ino)
    if key in walked:
        return False
    walked.add(key)
    return True


class PathList(Sequence[str]):
    """A sorted list of file paths, packed: their common prefix once, then the rest of every path in one bytes
    object. A store has an entry per file, and this list lives for a whole export: packed, a path of a
    200k-file store (measured on the bench store) costs 26 bytes instead of 119 as a `str` in a list."""

    def __init__(self, paths: list[str]):  # `paths` sorted
        self.prefix = os.path.commonprefix([paths[0], paths[-1]]) if paths else ""  # sorted: first and last suffice
        self.blob, self.ends = bytearray(), array("Q")
        for path in paths:
            self.blob += path[len(self.prefix) :].encode("utf-8", "surrogateescape")
            self.ends.append(len(self.blob))

    def __len__(self) -> int:
        return len(self.ends)

    def _path(self, index: int) -> str:
        start = self.ends[index - 1] if index else 0
        return self.prefix + self.blob[start : self.ends[index]].decode("utf-8", "surrogateescape")

    def __getitem__(self, index: int | slice) -> str | list[str]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self._path(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("PathList index out of range")
        return self._path(index)


def discover_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Every interaction file under `paths`, in a stable order (sorted by path)."""
    return [Path(p) for p in discover_paths(paths)]


def discover_paths(paths: str | Path | Iterable[str | Path]) -> PathList:
    """`discover_files` as a packed list of strings (see `PathList`): what a streaming pass over a store uses."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[str] = []
    walked: set[tuple[int, int]] = set()  # shared: a folder named twice (or inside another one named) is walked once
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(_walk(path.as_posix(), walked=walked))
        elif os.path.lexists(path):  # a file, or a FIFO, a broken link, a link loop: reading it says which
            found.append(path.as_posix())
        else:
            raise FileNotFoundError(
                f"{path}: no such file or directory; pass --interactions with the folder of your interaction store"
            )
    found.sort()
    # Overlapping arguments can name a file twice; sorted, the copies are neighbours.
    return PathList([path for index, path in enumerate(found) if index == 0 or path != found[index - 1]])


_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


class _NotReadable(Exception):
    """A store entry that is no file to read; the message is the reason."""


def _open_regular(source: str) -> tuple[int, int]:
    """An open descriptor of `source` and its size, when it is a regular file (raises `_NotReadable` otherwise).

    O_NONBLOCK, because opening a FIFO for reading would wait for a writer (forever, in a store); on a regular
    file it changes nothing. fstat then tells what was opened, so a FIFO is never read, nor a device (a link to
    /dev/zero would be read without end)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise _NotReadable(_open_failure(source, e)) from None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _NotReadable(f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(info.st_mode), 'of an unknown kind')})")
    return fd, info.st_size


def _open_failure(source: str, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop (it never reaches a file)"
    if error.errno == errno.ENOENT and os.path.islink(source):
        return f"broken symbolic link (its target {os.readlink(source)} does not exist)"
    if error.errno == errno.ENXIO:  # what opening a socket gives
        with contextlib.suppress(OSError):
            kind = _FILE_KINDS.get(stat.S_IFMT(os.stat(source).st_mode))
            if kind:
                return f"not a regular file ({kind})"
    return f"cannot read file ({error.__class__.__name__}: {error})"


def _parse_error(error: orjson.JSONDecodeError, raw: bytes, line: int | None = None) -> tuple[str, str]:
    """`where` and `reason` of a document orjson could not parse, with one position: the line of the file (`line`
    for a JSONL line, which orjson sees as a document of its own) and the column (a character's, as editors count)."""
    if not raw.strip():
        return "", "invalid JSON (the file is empty)"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:  # orjson gives no position for it
        before = raw[: e.start]
        line_start = before.rfind(b"\n") + 1
        line = line or before.count(b"\n") + 1
        return f"line {line}, column {len(before[line_start:].decode('utf-8')) + 1}", "invalid UTF-8"
    if line is None:
        line, column = error.lineno, error.colno
    elif error.lineno == 1:
        column = error.colno
    else:  # past the line's end (orjson counts its newline as a second line)
        column = len(raw.rstrip(b"\r\n").decode("utf-8")) + 1
    return f"line {line}, column {column}", f"invalid JSON ({error.msg})"


def _record_or_bad(source: str, where: str, value: object) -> Record | BadRecord:
    if isinstance(value, dict):
        return Record(source, where, value)
    return BadRecord(source, where, f"expected a JSON object, got {type(value).__name__}", kind=NOT_AN_OBJECT)


def iter_file(path: str | Path, sizes: ReadSizes = READ_SIZES) -> Iterator[Record | BadRecord]:
    """Records of one file; a file that cannot be read at all (or is no regular file) gives one BadRecord."""
    source = path if isinstance(path, str) else path.as_posix()  # str: this runs once per file of a store
    try:
        fd, size = _open_regular(source)
    except _NotReadable as e:
        yield BadRecord(source, "", str(e), kind=UNREADABLE)
        return
    except OSError as e:
        yield BadRecord(source, "", f"cannot read file ({e.__class__.__name__}: {e})", kind=UNREADABLE)
        return
    try:
        if source.endswith((".jsonl", ".jsonl.gz")):
            yield from _iter_jsonl(source, fd)
        else:
            yield from _iter_json(source, fd, size, sizes)
    except (OSError, EOFError) as e:  # unreadable or truncated gzip
        yield BadRecord(source, "", f"cannot read file ({e.__class__.__name__}: {e})", kind=UNREADABLE)
    finally:
        os.close(fd)


def _file(source: str, fd: int) -> IO[bytes]:
    """A file object over `fd` (gunzipped for `.gz`); it does not close `fd` (`iter_file` does)."""
    raw = open(fd, "rb", closefd=False)
    return gzip.GzipFile(fileobj=raw, mode="rb") if source.endswith(".gz") else raw


def _iter_jsonl(source: str, fd: int) -> Iterator[Record | BadRecord]:
    with _file(source, fd) as f:
        yield from _jsonl_records(source, f)


def _jsonl_records(source: str, lines: Iterable[bytes], first_line: int = 1) -> Iterator[Record | BadRecord]:
    """Records of JSON Lines, given as lines with their newline, the first one line `first_line` of its file: a
    whole file's (`_iter_jsonl`) or a byte range's (`plan.iter_chunk`), which must read the same records.

    A line's bytes are let go before its record is handed on (not kept by `enumerate`'s reused tuple either), and
    no copy of a line is made to see if it is blank: a record costs its parsed value, not that and its text too."""
    number = first_line - 1
    for line in lines:
        number += 1
        if not line or line.isspace():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield BadRecord(source, *_parse_error(e, line, number), kind=INVALID_JSON)
            continue
        line = None
        yield _record_or_bad(source, f"line {number}", value)


def _read_fd(fd: int, size: int, sizes: ReadSizes) -> bytes | None:
    """The bytes of an open plain file of `size` bytes, or None when it is over `sizes.whole_file_limit`. With
    os.open/os.read, a read costs 4 system calls instead of the ~9 of `open().read()` (isatty, fstat and lseek
    among them), and it runs once per file of a store."""
    if size > sizes.whole_file_limit:
        return None
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    parts = [data]  # the file grew since fstat: read on to its end
    while block := os.read(fd, sizes.grown_block):
        parts.append(block)
    return b"".join(parts)


def _iter_json(source: str, fd: int, size: int, sizes: ReadSizes) -> Iterator[Record | BadRecord]:
    if source.endswith(".gz"):
        with _file(source, fd) as f:
            raw = f.read()
    else:
        raw = _read_fd(fd, size, sizes)
        if raw is None:  # too large to read whole: it can only be an array, read a piece at a time
            yield from _iter_big_array(source, fd, size, sizes)
            return
    try:
        value = orjson.loads(raw)
        raw = None  # its records cost their parsed values, not those and the file's text too
    except orjson.JSONDecodeError as e:
        from .jsonscan import blocks_of, ends_at, plan_array  # numpy: not for `--help`, and only for a damaged file

        plan = plan_array(blocks_of(raw, sizes.scan_block), len(raw) + 1)
        if plan is None:
            yield BadRecord(source, *_parse_error(e, raw), kind=INVALID_JSON)
            return
        (piece,) = plan.pieces  # a damaged array: read item by item, as a big one is
        ends = ends_at(True, plan.end)
        data = raw[piece.start : piece.stop]
        yield from array_records(source, data, piece.start, piece.first_item, ends, sizes.scan_block)
        yield from array_end_records(source, plan.end, raw[plan.end] if plan.end >= 0 else None, plan.text_after)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield _record_or_bad(source, f"item {index}", item)
    else:
        yield _record_or_bad(source, "", value)


def _iter_big_array(source: str, fd: int, size: int, sizes: ReadSizes) -> Iterator[Record | BadRecord]:
    """The records of a `.json` file too big to read whole: its array's pieces (`jsonscan.plan_array`), each read
    and decoded item by item, as an export's chunks of it are."""
    from .jsonscan import ends_at, file_blocks, plan_array

    plan = plan_array(file_blocks(fd, 0, size, sizes.scan_block), sizes.piece_bytes)
    if plan is None:
        yield BadRecord(source, "", "invalid JSON (a file this large must be a JSON array)", kind=INVALID_JSON)
        return
    for piece in plan.pieces:
        data = os.pread(fd, piece.stop - piece.start, piece.start)
        ends = ends_at(piece is plan.pieces[-1], plan.end)
        yield from array_records(source, data, piece.start, piece.first_item, ends, sizes.scan_block)
    end_byte = os.pread(fd, 1, plan.end)[:1] if plan.end >= 0 else b""
    yield from array_end_records(source, plan.end, end_byte[0] if end_byte else None, plan.text_after)


def array_records(
    source: str,
    data: bytes,
    offset: int,
    first_item: int,
    ends: str,
    scan_block: int,
    commas: np.ndarray | None = None,
) -> Iterator[Record | BadRecord]:
    """The records of a piece of an array file (bytes `offset` on, see `jsonscan.piece_commas`), item by item,
    numbered from `first_item`: an item that is no valid JSON is one bad record, and the others stand. `ends` as for
    `jsonscan.whole_items`; when it is "" (the file ends inside the array), the piece's last item is what is left of
    it (kept if it decodes), and then the array's end is missing. `scan_block`: bytes scanned at a time."""
    from .jsonscan import is_blank, piece_commas, whole_items

    cut_short = ends == ""
    if commas is None:
        commas = piece_commas(data, cut_short, scan_block)
        assert commas is not None, "a piece of an array planned from these bytes"
    if not whole_items(data, commas, ends, first_item) and not cut_short:
        return
    start, number = 0, first_item
    for at in range(0, len(commas), 4096):  # a slice at a time: a piece of tiny items has millions of commas
        for stop in commas[at : at + 4096].tolist():
            yield _item_record(source, data[start:stop], offset + start, number)
            start, number = stop + 1, number + 1
    last = data[start:]
    if not cut_short:
        yield _item_record(source, last, offset + start, number)
        return
    if not is_blank(last):  # what is left of the last item: kept when it is whole JSON (an object's end is
        record = _item_record(source, last, offset + start, number)  # sure; a number cut short is no object anyway)
        if not (isinstance(record, BadRecord) and record.kind == INVALID_JSON):
            yield record
            number += 1
    yield BadRecord(source, f"item {number}", "truncated JSON array (no closing ']')", kind=INVALID_JSON)


def _item_record(source: str, item: bytes, at: int, number: int) -> Record | BadRecord:
    where = f"item {number}"
    try:
        return _record_or_bad(source, where, orjson.loads(item))
    except orjson.JSONDecodeError as e:
        try:
            item.decode("utf-8")
        except UnicodeDecodeError as u:
            return BadRecord(source, where, f"invalid UTF-8 at byte {at + u.start}", kind=INVALID_JSON)
        shown = at + len(item) - len(item.lstrip(b" \t\r\n"))
        if shown == at + len(item):
            reason = f"invalid JSON (no value before the comma or bracket at byte {shown})"
        else:
            reason = f"invalid JSON ({e.msg}; the item starts at byte {shown})"
        return BadRecord(source, where, reason, kind=INVALID_JSON)


def array_end_records(source: str, end: int, end_byte: int | None, text_after: int) -> Iterator[BadRecord]:
    """What is wrong with an array's end, as `jsonscan.ArrayPlan` found it, after its items."""
    if end_byte == ord("}"):
        yield BadRecord(source, "", f"invalid JSON (the array is closed by '}}' at byte {end})", kind=INVALID_JSON)
    if text_after >= 0:
        yield BadRecord(source, "", f"invalid JSON (text after the array, at byte {text_after})", kind=INVALID_JSON)


def iter_records(
    paths: str | Path | Iterable[str | Path], sizes: ReadSizes = READ_SIZES
) -> Iterator[Record | BadRecord]:
    """Every record of a store, in a stable order."""
    for path in discover_paths(paths):
        yield from iter_file(path, sizes)


def store_fingerprint(paths: str | Path | Iterable[str | Path]) -> str:
    """A cheap fingerprint of a store (file paths, sizes and modification times, no content reads):
    it changes when a file is added, removed or rewritten."""
    import hashlib

    digest = hashlib.sha256()
    for path in discover_paths(paths):
        try:
            info = os.stat(path)
        except OSError:  # a broken link or a link loop: the link itself
            info = os.lstat(path)
        # realpath, not Path.resolve: that raises on a link loop
        digest.update(f"{os.path.realpath(path)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def token_usage_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """TokenTracker exports in the store (recursively) or beside it (in its parent folder). Only regular files:
    they are read whole, and a FIFO would never end its read."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: set[str] = set()
    for path in map(Path, paths):
        folder = path if path.is_dir() else path.parent
        found.update(os.path.realpath(p) for p in _walk(folder.as_posix(), is_token_usage_file) if _is_regular(p))
        beside = folder.resolve().parent.glob("token_usage*.json")
        found.update(os.path.realpath(p) for p in beside if _is_regular(p.as_posix()))
    return [Path(p) for p in sorted(found)]
