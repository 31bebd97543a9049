"""One thread that runs writes handed to it, in the order they were handed over, while the caller goes on.

pyarrow encodes, compresses and writes a Parquet row group without holding the GIL, so on a second core an export's
Parquet writing overlaps its reading and encoding (which hold it) instead of adding to them: `ParquetSplitWriter`
hands its row groups and closes here when its runner gives it a `Background` (`run.runner.InProcess` does). One
thread, first in first out: every file gets the same calls in the same order as when written inline, so the same
bytes. At most `depth` writes wait at a time, so memory stays bounded by a few row groups whatever the store's size.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_STOP = object()


class Background:
    """Writes run on one thread of their own, in order. The first write that fails stops the rest from running; its
    error is raised to the caller at its next `submit`, `wait` or `close`. Use `close()` (or `with`) when done."""

    def __init__(self, depth: int = 4):
        self._todo: queue.Queue = queue.Queue(maxsize=depth)
        self._idle = threading.Condition()
        self._pending = 0  # writes handed over and not finished
        self._error: BaseException | None = None  # the first failure, until raised to the caller
        self._failed = False  # for good: the writes after a failure are skipped
        self._thread: threading.Thread | None = None

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        """Run `write(*args)` after every write handed over before it; blocks while `depth` writes wait."""
        self._raise()
        if self._thread is None:
            # A daemon: an export that never reaches `close` (killed, or a bug) does not keep the interpreter alive.
            self._thread = threading.Thread(target=self._run, name="personagym-hf-writes", daemon=True)
            self._thread.start()
        with self._idle:
            self._pending += 1
        self._todo.put((write, args))

    def wait(self) -> None:
        """Return once every write handed over has run; raise the first error one of them raised."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)
        self._raise()

    def close(self, *, raise_error: bool = True) -> None:
        """Wait for the writes handed over, then end the thread. `raise_error=False` (cleaning up after another
        error): the writes' error, if any, is dropped."""
        if self._thread is not None:
            self._todo.put((_STOP, ()))
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
            write, args = self._todo.get()
            if write is _STOP:
                return
            try:
                if not self._failed:  # after a failure the rest are skipped: their files are dropped anyway
                    write(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there
                self._error, self._failed = error, True
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


__all__ = ["Background"]
