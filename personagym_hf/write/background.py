"""One thread that runs writes handed to it, in the order they were handed over, while the caller goes on.

pyarrow encodes, compresses and writes a Parquet row group without holding the GIL, so on a second core an export's
Parquet writing overlaps its reading and encoding (which hold it) instead of adding to them: `ParquetSplitWriter`
hands its row groups and closes here when its runner gives it a `Background` (`run.runner.InProcess` does), and
`exporter.SplitFiles` its JSON files' writes (`os.writev`, which holds no GIL while the kernel copies either). One
thread, first in first out: every file gets the same calls in the same order as when written inline, so the same
bytes. The writes waiting hold at most `max_bytes` of data (and one write of any size), so memory stays bounded
whatever the store's size; the bound is in bytes, not writes, because an export hands over its six configs' row
groups in bursts, and a short queue made the encoding wait for the writer (measured on docs/performance.md).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_STOP = object()
MAX_BYTES = 128 << 20


class Background:
    """Writes run on one thread of their own, in order. The first write that fails stops the rest from running; its
    error is raised to the caller at its next `submit`, `wait` or `close`. Use `close()` (or `with`) when done."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._state = threading.Condition()
        self._pending = 0  # writes handed over and not finished
        self._bytes = 0  # and the bytes they hold
        self._error: BaseException | None = None  # the first failure, until raised to the caller
        self._failed = False  # for good: the writes after a failure are skipped
        self._thread: threading.Thread | None = None

    def submit(self, write: Callable[..., Any], *args: Any, nbytes: int = 0) -> None:
        """Run `write(*args)` after every write handed over before it. `nbytes`: what its arguments hold; this
        blocks while the writes waiting hold more than `max_bytes` with it (a write alone always goes)."""
        self._raise()
        if self._thread is None:
            # A daemon: an export that never reaches `close` (killed, or a bug) does not keep the interpreter alive.
            self._thread = threading.Thread(target=self._run, name="personagym-hf-writes", daemon=True)
            self._thread.start()
        with self._state:
            self._state.wait_for(lambda: self._pending == 0 or self._bytes + nbytes <= self.max_bytes or self._failed)
            self._pending += 1
            self._bytes += nbytes
        self._todo.put((write, args, nbytes))
        self._raise()

    def wait(self) -> None:
        """Return once every write handed over has run; raise the first error one of them raised."""
        with self._state:
            self._state.wait_for(lambda: self._pending == 0)
        self._raise()

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for the writes handed over, then end the thread. `raise_error=False` (cleaning up after another
        error): the writes' error, if any, is dropped."""
        if self._thread is not None:
            self._todo.put((_STOP, (), 0))
            self._thread.join()
            self._thread = None
        if raise_error:
            self._raise()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self.close(raise_error=kind is None)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            write, args, nbytes = self._todo.get()
            if write is _STOP:
                return
            try:
                if not self._failed:  # after a failure the rest are skipped: their files are dropped anyway
                    write(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there
                with self._state:
                    self._error, self._failed = error, True
            finally:
                del args  # the row group's memory goes now, not when the next write comes
                with self._state:
                    self._pending -= 1
                    self._bytes -= nbytes
                    self._state.notify_all()


__all__ = ["Background", "MAX_BYTES"]
