"""Reading interaction stores as upstream writes them, one record at a time.

A store is a directory (searched recursively) or a single file. Layouts: one interaction per `.json`
file (upstream `InteractionStorage`), JSON Lines (`.jsonl`), one JSON array per `.json` file, and
`.gz` of any of these. `index.json` is never trusted — the files are the truth — and TokenTracker
exports (`token_usage*.json`) are not interactions. Nothing holds more than one record (plus one file's
read buffer) in memory.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import gzip
import heapq
import json
import os
import stat
from array import array
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

import orjson

from .records import INVALID_JSON, NOT_AN_OBJECT, UNREADABLE, BadRecord, Record

INTERACTION_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_ARRAY_CHUNK = 1 << 20
_WHOLE_FILE_LIMIT = 64 << 20  # above this a .json file is parsed as a stream (it can only be an array)


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


def iter_file(path: str | Path) -> Iterator[Record | BadRecord]:
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
            yield from _iter_json(source, fd, size)
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
        yield from _jsonl_records(source, enumerate(f, start=1))


def _jsonl_records(source: str, lines: Iterable[tuple[int, bytes]]) -> Iterator[Record | BadRecord]:
    """Records of JSON Lines, given as (line number, line with its newline): a whole file's (`_iter_jsonl`) or a
    byte range's (`plan.iter_chunk`), which must read the same records."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield BadRecord(source, *_parse_error(e, line, number), kind=INVALID_JSON)
            continue
        yield _record_or_bad(source, f"line {number}", value)


def _read_whole(source: str) -> bytes | None:
    """A plain file's bytes, or None when it is over `_WHOLE_FILE_LIMIT` (raises `_NotReadable` for no regular
    file): what reading a store's `.json` file costs, in one call."""
    fd, size = _open_regular(source)
    try:
        return _read_fd(fd, size)
    finally:
        os.close(fd)


def _read_fd(fd: int, size: int) -> bytes | None:
    """The bytes of an open plain file of `size` bytes, or None when it is over `_WHOLE_FILE_LIMIT`. With
    os.open/os.read, a read costs 4 system calls instead of the ~9 of `open().read()` (isatty, fstat and lseek
    among them), and it runs once per file of a store."""
    if size > _WHOLE_FILE_LIMIT:
        return None
    data = os.read(fd, size + 1)
    if len(data) <= size:
        return data
    parts = [data]  # the file grew since fstat: read on to its end
    while block := os.read(fd, _ARRAY_CHUNK):
        parts.append(block)
    return b"".join(parts)


def _iter_json(source: str, fd: int, size: int) -> Iterator[Record | BadRecord]:
    if source.endswith(".gz"):
        with _file(source, fd) as f:
            raw = f.read()
    else:
        raw = _read_fd(fd, size)
        if raw is None:  # too large to parse whole: it can only be an array, parsed as a stream
            with _file(source, fd) as f:
                yield from _iter_json_array_stream(f, source)
            return
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        yield BadRecord(source, *_parse_error(e, raw), kind=INVALID_JSON)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield _record_or_bad(source, f"item {index}", item)
    else:
        yield _record_or_bad(source, "", value)


def _iter_json_array_stream(f: IO[bytes], source: str) -> Iterator[Record | BadRecord]:
    """Items of a large top-level JSON array, decoded one at a time from a bounded buffer."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buffer, position, index, eof, started = "", 0, 0, False, False
    read, decoding_from = 0, 0  # bytes read; where in the file the bytes being decoded start

    def fill() -> bool:
        nonlocal buffer, position, eof, read, decoding_from
        chunk = f.read(_ARRAY_CHUNK)
        eof = not chunk
        decoding_from = read - len(utf8.getstate()[0])  # the decoder holds the start of a character cut in two
        read += len(chunk)
        buffer = buffer[position:] + utf8.decode(chunk, final=eof)
        position = 0
        return not eof

    try:
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            if position >= len(buffer):
                if not fill():
                    yield BadRecord(
                        source, f"item {index}", "truncated JSON array (no closing ']')", kind=INVALID_JSON
                    )
                    return
                continue
            if not started:
                if buffer[position] != "[":
                    yield BadRecord(
                        source, "", "invalid JSON (a file this large must be a JSON array)", kind=INVALID_JSON
                    )
                    return
                started, position = True, position + 1
                continue
            if buffer[position] == "]":
                return
            try:
                value, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as e:
                if not eof and fill():
                    continue
                yield BadRecord(source, f"item {index}", f"invalid JSON ({e.msg})", kind=INVALID_JSON)
                return
            except RecursionError:  # Python's decoder nests a call per level; where the item ends is unknown
                yield BadRecord(source, f"item {index}", "invalid JSON (nested too deeply)", kind=INVALID_JSON)
                return
            yield _record_or_bad(source, f"item {index}", value)
            position, index = end, index + 1
    except UnicodeDecodeError as e:
        yield BadRecord(source, f"item {index}", f"invalid UTF-8 at byte {decoding_from + e.start}", kind=INVALID_JSON)


def iter_records(paths: str | Path | Iterable[str | Path]) -> Iterator[Record | BadRecord]:
    """Every record of a store, in a stable order."""
    for path in discover_paths(paths):
        yield from iter_file(path)


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
