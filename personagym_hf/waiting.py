"""Waiting for futures from the main thread so that a Ctrl-C still reaches it.

The kernel hands a process's SIGINT to any thread that does not block it. When one of the other threads takes it
(a process pool's, a thread pool's), Python's handler only trips a flag, which the main thread looks at when it
runs: a wait without a timeout would miss the Ctrl-C until the future ended. So the wait is made in steps.
"""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, Future, wait

SIGNAL_POLL = 0.2  # seconds between two looks at the signals that came while the main thread waits


def wait_all(futures: list[Future]) -> None:
    """Wait until every future is done, raising the first error as soon as one fails."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=SIGNAL_POLL, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()  # a failed future's error, at once
