"""`LocalRunner`: the chunks encoded, and the Parquet shards written, by worker processes of this machine
(`RunOptions.num_proc`), started with `RunOptions.start_method`.

Each worker gets the run's `ChunkJob` once (the pool's initializer: inherited under "fork", pickled under "spawn"),
encodes chunks into part files (`chunks.encode_chunk`) and writes the shards the parent plans
(`write.parquet.write_shard`). Workers die with their parent, ignore Ctrl-C (the parent stops them), and a worker
killed mid-task fails the run in one line; the earlier export stays as it was.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config import ConfigError, RunOptions
from ..measure.seen import SeenIds
from ..read.plan import describe
from ..waiting import wait_all
from ..write.manifest import collector_name
from ..write.parquet import ShardSpec, ShardWritten, write_shard
from ..write.planned_shards import PlannedSplitWriter
from .chunks import ChunkJob, ChunkResult, ChunkTask, encode_chunk

# In a worker process only: its pool's job, given once by `_start_worker` (the pool's initializer).
_worker_job: ChunkJob | None = None


def _start_worker(job: ChunkJob) -> None:
    """A worker dies on SIGTERM (the pool's `terminate`), whatever handler the parent's CLI installed (or held while
    forking it: `LocalRunner._submit`), and leaves Ctrl-C to its parent, which stops the workers: a terminal sends
    SIGINT to every process of the export, and each worker would print a traceback. It dies with its parent too
    (`_die_with_parent`)."""
    global _worker_job
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _worker_job = job


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent() -> None:
    """A `concurrent.futures` worker whose parent was killed (kill -9, the OOM killer) would wait for its next task
    forever: it holds the write end of its own task queue, so it never reads the end of it. On Linux the kernel
    SIGKILLs it when the parent dies; a parent that died before this call is seen at once."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(1)


# Held while the pool forks. An exception a signal handler raises there is lost or harmful: inside one of Python's
# at-fork handlers it is swallowed ("Exception ignored"), and between a fork and the pool's bookkeeping it leaves a
# worker the pool does not know of, which nothing stops. Blocking the signals would not do: any thread that does not
# block them (the pool's, the audit's) takes them, and Python still runs the handler in the main thread.
HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _encode_in_worker(task: ChunkTask) -> ChunkResult:
    return encode_chunk(_worker_job, task)


def _write_shard_in_worker(spec: ShardSpec) -> ShardWritten:
    return write_shard(spec, _worker_job.encoder.specs[spec.config])


def check_sendable(job: ChunkJob, start_method: str) -> None:
    """Under "spawn" or "forkserver" the job is pickled to each worker: a collector whose class is not importable
    (defined in a function, say) cannot be, and this says so in one line before any worker starts."""
    if start_method == "fork":
        return
    try:
        pickle.dumps(job.convert)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        name = collector_name(job.convert) or getattr(job.convert, "__qualname__", repr(job.convert))
        raise ConfigError(
            f"start_method {start_method!r}: the collector {name} cannot be sent to worker processes "
            f"({str(error).splitlines()[0]}); define it at the top level of an importable module, or use "
            "start_method 'fork'"
        ) from None


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its task (killed, or out of memory)."""

    def __init__(self) -> None:
        super().__init__(
            "a worker process died (killed, or out of memory); the earlier export is unchanged: rerun, with fewer "
            "--num-proc if memory ran out"
        )


STOP_GRACE = 2.0  # seconds a worker has to end on SIGTERM when a run stops on an error, before it is killed
WINDOW_PER_WORKER = 2  # chunk tasks in flight per worker: every worker busy, and few results (part files) waiting


class LocalRunner:
    """The worker processes of one run (`options.num_proc` > 1), started with `options.start_method`: they encode
    the chunks (`chunks`, a window of tasks ahead, results in store order) and write the shards planned meanwhile
    (`submit_shard`), which so queue behind a few chunks, not behind the whole store. Use it as a context manager:
    leaving it on an error stops the workers at once.

    `concurrent.futures`' pool, not `multiprocessing.Pool`: a worker that dies (SIGKILL, the OOM killer) fails its
    task there (BrokenProcessPool), where `Pool` waits for the lost task forever."""

    background = None  # the workers write the files; this process only joins their parts

    def __init__(self, options: RunOptions, workers: int | None = None):
        self.options = options
        self.workers = workers or options.num_proc
        self.job: ChunkJob | None = None
        self.pool: ProcessPoolExecutor | None = None  # started by `chunks`, for its job

    def _start(self, job: ChunkJob) -> ProcessPoolExecutor:
        """The pool of `job`'s workers: each gets the job once, as its initializer's argument. A run of another job
        (the pre-pass before the export) gets a pool of its own."""
        if self.job is not job:
            check_sendable(job, self.options.start_method)
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.job = job
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context(self.options.start_method),
                initializer=_start_worker,
                initargs=(job,),
            )
        return self.pool

    def id_index(self) -> SeenIds:
        """The index of the kept sample ids: in this process, which is on the machine the workers are."""
        return SeenIds()

    def split_writer(self, folder: Path, split: str, config: str, specs: dict[str, Any], spill: Path):
        """The shards of one (config, split): planned in this process, written by the workers."""
        options = self.options
        return PlannedSplitWriter(
            folder, split, config, specs, self, spill, options.max_shard_bytes, options.row_group_rows
        )

    def __enter__(self) -> "LocalRunner":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.pool is None:
            return
        if kind is None:
            self.pool.shutdown(wait=True)
            return
        # Stop now: `shutdown` alone would let the running tasks finish. The pool has no public way to stop its
        # workers before Python 3.14 (`terminate_workers`), so they are terminated one by one. Its processes and
        # result queue are taken first: `shutdown(wait=False)` drops the pool's references to both.
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        results = getattr(self.pool, "_result_queue", None)
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        # A worker forked while `_submit` held the signals has that handler until its initializer runs: a SIGTERM
        # then is taken by it and lost, and the worker would outlive the run. What still runs after `STOP_GRACE` is
        # killed. (Each process's sentinel tells that it ended whichever thread reaps it: the pool's thread joins
        # them too, and `exitcode` or `is_alive` can be wrong in this thread meanwhile.)
        running = {process.sentinel: process for process in processes}
        deadline = time.monotonic() + STOP_GRACE
        while running and (left := deadline - time.monotonic()) > 0:
            for sentinel in wait_for(list(running), timeout=left):
                del running[sentinel]
        for process in running.values():
            process.kill()
        for process in processes:
            process.join(timeout=STOP_GRACE)
        # A worker stopped while it sent a result leaves half a message in the result pipe: the pool's thread would
        # wait for the rest forever, and the interpreter for that thread at exit. With every worker gone, closing
        # this process's copy of the pipe's write end ends that read.
        if results is not None:
            results._writer.close()

    def chunks(self, job: ChunkJob, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, ChunkResult]]:
        self._start(job)
        pending: deque[tuple[ChunkTask, Future]] = deque()
        upcoming = iter(tasks)
        try:
            for task in upcoming:
                pending.append((task, self._submit(_encode_in_worker, task)))
                if len(pending) >= WINDOW_PER_WORKER * self.workers:
                    break
            while pending:
                task, future = pending.popleft()
                result = self.result(future, f"chunk {task.index} ({describe(job.files, task.chunk)})")
                following = next(upcoming, None)
                if following is not None:
                    pending.append((following, self._submit(_encode_in_worker, following)))
                yield task, result
        finally:
            for _task, future in pending:
                future.cancel()

    def submit_shard(self, spec: ShardSpec) -> Future:
        return self._submit(_write_shard_in_worker, spec)

    def _submit(self, function, argument) -> Future:
        """`pool.submit`, with `HELD_SIGNALS` held: a submit may fork the workers (all of them at the first, under
        "fork"); a signal that comes meanwhile is raised again, to its own handler, once the submit is done."""
        if threading.current_thread() is not threading.main_thread():  # handlers can be set in the main thread only
            try:
                return self.pool.submit(function, argument)
            except BrokenProcessPool:
                raise WorkerDied() from None
        came: list[int] = []

        def hold(number: int, frame) -> None:
            came.append(number)

        # A handler installed outside Python (getsignal gives None) could not be put back: such a signal is left be.
        held = [number for number in HELD_SIGNALS if signal.getsignal(number) is not None]
        handlers = {number: signal.signal(number, hold) for number in held}
        try:
            return self.pool.submit(function, argument)
        except BrokenProcessPool:  # a worker died since the last result was taken: the pool takes no new task
            raise WorkerDied() from None
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
            for number in came[:1]:
                signal.raise_signal(number)

    @staticmethod
    def ready(handle: Future) -> bool:
        return handle.done()

    def result(self, handle: Future, what: str) -> Any:
        try:
            # In steps (`waiting.py`): waiting without a timeout, the main thread missed a Ctrl-C that the pool's
            # threads took until the workers' next result came (in the tests, whose workers are held, never).
            wait_all([handle])
            return handle.result()
        except BrokenProcessPool:
            # Every task not yet done fails with it, so `what` (the first of them) may not be what the worker ran.
            raise WorkerDied() from None
