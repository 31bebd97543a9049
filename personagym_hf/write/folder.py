"""The output folder of an export as one transaction: a lock, a staging folder, one atomic swap.

An export writes many files (split JSON and JSONL, statistics, Parquet shards, the card, ...). Renaming
them into place one by one leaves a window in which a reader — or a run killed at that instant — sees
some new files beside old ones. So the whole export is written into a staging folder beside the output
folder (`.<name>.staging-<pid>`, same file system), and swapped in with one `renameat2(RENAME_EXCHANGE)`:
at every instant the output folder is the complete old export or the complete new one. Where the file
system cannot exchange, two renames are used and the next run repairs the gap (the old folder waits
under `.<name>.old-<pid>`).

The user's own files in the output folder — anything that is not one of the export's file names,
timestamped versions of earlier exports included — are carried into the staging folder as hard links
just before the swap, and files they add while the export runs are moved over right after it.

An output folder that is a mount point (a container's volume, say) cannot be swapped: there the export is
staged inside it (`.personagym-staging-<pid>`) and moved in entry by entry after a marker listing the new
entries is written; a run killed during that move is finished by the next one (rolled forward), so the
folder holds a mix only until the next run starts.

One export at a time per folder: an exclusive `flock` on `.<name>.lock` beside it (inside, for a mount
point). The kernel releases it when the holder dies, so a killed run never blocks the next; the next run
removes whatever the killed one left (staging folders, old folders), after moving back any file of the
user's it held.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import stat
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
INSIDE_STAGING, INSIDE_OLD = ".personagym-staging-", ".personagym-old-"  # in an output folder that is a mount point
COMMIT_MARKER = ".commit"  # in a staging folder inside a mount point: the names it is moving in (roll forward)


class OutputError(OSError):
    """The output folder cannot be written (one line, with the fix)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OutputBusyError(OutputError):
    """Another export holds the output folder's lock."""


def checkpoint(name: str) -> None:
    """A named instant of the commit, where the fault tests kill the process (`PERSONAGYM_HF_KILL_AT=name`)."""
    if os.environ.get("PERSONAGYM_HF_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def hold(name: str) -> None:
    """A named instant where the signal tests hold the process until a signal ends it (`PERSONAGYM_HF_HOLD_AT=
    name:FOLDER`): it makes `FOLDER/name.<pid>`, which says to the test that it is there, and waits. A test that
    sends its signal once every process it waits for is held cannot see the run finish first, however loaded the
    machine. Unset, it costs one look-up."""
    spec = os.environ.get("PERSONAGYM_HF_HOLD_AT")
    if spec is None or spec.partition(":")[0] != name:
        return
    (Path(spec.partition(":")[2]) / f"{name}.{os.getpid()}").touch()
    while True:
        signal.pause()  # a handler that raises (Ctrl-C, the CLI's SIGTERM) ends it; a worker dies of SIGTERM


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically; False where the kernel or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    encode = os.fsencode
    if renameat2(_AT_FDCWD, encode(a), _AT_FDCWD, encode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), a)


def _link_tree(source: Path, target: Path) -> None:
    """`target` as a copy of `source` made of hard links (symbolic links copied as links)."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        target.mkdir()
        shutil.copystat(source, target, follow_symlinks=False)
        for entry in os.scandir(source):
            _link_tree(source / entry.name, target / entry.name)
    else:
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:  # a file system without hard links: copy
            shutil.copy2(source, target, follow_symlinks=False)


def _describe_holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def _writable_error(path: Path) -> str | None:
    """Why `path` (an existing folder) cannot be written to, or None."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError as e:
        return e.strerror
    if not os.access(path, os.W_OK | os.X_OK):
        return "permission denied"
    return None


class OutputFolder:
    """The output folder of one export: `open()`, write into `staging`, then `commit()` or `abort()`.

    `managed(name)` says which top-level names of the folder belong to the export (replaced as a whole);
    every other entry is the user's and is kept.
    """

    def __init__(self, path: str | Path, managed: Callable[[str], bool], *, wait: bool = False):
        self.requested = Path(path)
        self.managed = managed
        self.wait = wait
        self.path = Path(os.path.realpath(self.requested))  # a symlinked output folder: work where it points
        self.parent = self.path.parent
        self.name = self.path.name
        self.lock_path = self.parent / f".{self.name}.lock"
        self.staging = self.parent / f".{self.name}.staging-{os.getpid()}"
        # A mount point cannot be renamed: its export is staged inside it and moved in entry by entry.
        self.inside = self.path.is_dir() and os.path.ismount(self.path)
        if self.inside:
            self.lock_path = self.path / ".personagym.lock"
            self.staging = self.path / f"{INSIDE_STAGING}{os.getpid()}"
        self._lock_fd: int | None = None

    # -- opening -------------------------------------------------------------------------------------------

    def open(self) -> "OutputFolder":
        """Check the folder can be written, take the lock, clean up after killed runs, create `staging`."""
        where = self.requested
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{where}: is a file, not a folder; pass --output with a folder path")
        existing = self.parent
        while not existing.exists():
            existing = existing.parent
        reason = _writable_error(existing) or (_writable_error(self.path) if self.path.is_dir() else None)
        if reason:
            raise OutputError(f"cannot write to {where}: {reason}; choose another --output or make it writable")
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(
                f"cannot write to {where}: {e.strerror}; choose another --output or make it writable"
            ) from None
        try:
            self._recover()
            self.staging.mkdir()
            if self.path.is_dir():
                os.chmod(self.staging, stat.S_IMODE(self.path.stat().st_mode))
        except BaseException:
            self.release()
            raise
        return self

    def _lock(self) -> None:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise OutputBusyError(
                    f"{self.requested} is being written by another export{_describe_holder(self.lock_path)}; "
                    "wait for it to finish, or pass --wait to queue behind it",
                    errno.EBUSY,
                ) from None
            # The holder unlinks the lock file before it lets go: a lock on an unlinked file locks nothing.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                self._lock_fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._lock_fd is not None:
            self.lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _leftovers(self) -> list[Path]:
        folder, prefixes = (
            (self.path, (INSIDE_STAGING, INSIDE_OLD))
            if self.inside
            else (self.parent, (f".{self.name}.staging-", f".{self.name}.old-"))
        )
        try:
            return sorted(folder / e.name for e in os.scandir(folder) if e.name.startswith(prefixes))
        except FileNotFoundError:
            return []

    def _recover(self) -> None:
        """Undo what a killed run left: an output folder moved aside, the user's files in a dead staging
        folder, the staging and old folders themselves."""
        leftovers = self._leftovers()
        if self.inside:
            for leftover in leftovers:
                if (leftover / COMMIT_MARKER).exists():
                    self._move_in(leftover)
                    logger.warning("%s: finished moving in the export a killed run had begun to", self.requested)
                shutil.rmtree(leftover, ignore_errors=True)
            return
        if not self.path.exists():
            old = [p for p in leftovers if p.name.startswith(f".{self.name}.old-")]
            if old:
                os.rename(old[-1], self.path)
                logger.warning("%s: restored the export a killed run had moved aside", self.requested)
                leftovers.remove(old[-1])
        for leftover in leftovers:
            if self.path.is_dir():
                self._move_user_entries(leftover, self.path)
            shutil.rmtree(leftover, ignore_errors=True)

    # -- committing ----------------------------------------------------------------------------------------

    def _user_entries(self, folder: Path) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(folder) if not self.managed(e.name))
        except FileNotFoundError:
            return []

    def _move_user_entries(self, source: Path, target: Path) -> None:
        """Entries of the user's in `source` that `target` lacks, renamed into `target`."""
        for name in self._user_entries(source):
            if not os.path.lexists(target / name):
                os.rename(source / name, target / name)

    def _move_in(self, staging: Path) -> None:
        """Move a staged export into a mount point, entry by entry; safe to run again after a kill (see
        COMMIT_MARKER): the old export's entries go aside first, then each new one moves in."""
        marker = json.loads((staging / COMMIT_MARKER).read_text(encoding="utf-8"))
        names, stale = marker["names"], marker["remove"]
        old = self.path / f"{INSIDE_OLD}{os.getpid()}"
        old.mkdir(exist_ok=True)
        for name in stale:
            if os.path.lexists(self.path / name):
                os.rename(self.path / name, old / name)
        for name in names:
            if os.path.lexists(staging / name):
                if os.path.lexists(self.path / name):
                    os.rename(self.path / name, old / name)
                os.rename(staging / name, self.path / name)
                checkpoint("mid-move")
        shutil.rmtree(old)

    def commit(self) -> None:
        """Swap the staging folder in; the old export is gone, the user's files are kept."""
        if self.inside:
            names = sorted(os.listdir(self.staging))
            stale = sorted({n for n in os.listdir(self.path) if self.managed(n)} - set(names))
            marker = self.staging / f"{COMMIT_MARKER}.tmp"  # renamed into place: never read half written
            marker.write_text(json.dumps({"names": names, "remove": stale}), encoding="utf-8")
            os.rename(marker, self.staging / COMMIT_MARKER)
            checkpoint("before-swap")
            self._move_in(self.staging)
            shutil.rmtree(self.staging)
        elif self.path.is_dir():
            for name in self._user_entries(self.path):
                if not os.path.lexists(self.staging / name):
                    _link_tree(self.path / name, self.staging / name)
            checkpoint("before-swap")
            if _exchange(str(self.staging), str(self.path)):
                old = self.staging
            else:
                old = self.parent / f".{self.name}.old-{os.getpid()}"
                os.rename(self.path, old)
                checkpoint("between-renames")
                os.rename(self.staging, self.path)
            checkpoint("after-swap")
            self._move_user_entries(old, self.path)  # files the user added while the export ran
            shutil.rmtree(old)
        else:
            checkpoint("before-swap")
            os.rename(self.staging, self.path)
        self.release()

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.release()

    def staged_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.staging):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    pass
        return total
