"""Running `encode` over a store in fixed chunks of files, in this process or in worker processes.

The store is cut into chunks (`plan.py`): `RunOptions.chunk_files` whole files, or a byte range of
`RunOptions.chunk_bytes` of a big JSON Lines file (or a piece of a big JSON array) — fixed sizes, so the cut does
not depend on `num_proc`, and any cut gives the same outputs. `encode_chunk` reads one chunk and runs
`encode.encode` on its records, into a sink:
- in this process `InMemory`: the chunk's JSON items and JSONL lines stay in memory (one chunk at a time);
- in a worker process `PartFiles`: per split a JSON fragment and a JSONL part, and per config and split an Arrow
  IPC file;
- for a job without outputs (validate, stats, the pre-passes) the rows, or nothing.
The parent then appends each chunk to the outputs in chunk order (`Exporter.add_chunk`), so an export
writes the same bytes either way, and memory holds about one chunk. With worker processes the parent does not
write Parquet: it plans each split's shards from the row sizes the chunks report, and the same workers write each
shard from the chunks' Arrow files (`LocalRunner.submit_shard`, `shards.write_shard`; see `shardwork.py`).

A record whose interaction_id an earlier chunk had must not be written. A chunk cannot know the ids of
the chunks before it (a worker runs beside them), so the parent looks up each chunk's ids (`seen.py`) and,
when some were read before, encodes that chunk again without them: rare, and it keeps every chunk
independent of the others (`job.encode_store`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Container, Iterator, Literal, Sequence

import numpy as np
import pyarrow as pa

from ..config import ConfigError, RunOptions
from ..measure.seen import SeenIds
from ..read.plan import Chunk, Files, describe, iter_chunk, plan_chunks
from ..transform.encode import Encoded, Encoder, NoOutput, Rows, Sink, encode
from ..transform.policy import Convert
from ..write.files import BUFFER_BYTES, ITEM_SEPARATOR, dumps_line, pretty_item
from ..write.manifest import collector_name
from ..write.parquet import ShardSpec, ShardWritten, row_sizes, write_shard


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one run needs: the store's files (packed, see `store.PathList`), the encoder, the
    conversion, the sample ids to skip (those an earlier export holds, when appending), and what becomes of the
    rows: "files" (the export's outputs: `InMemory` or `PartFiles`), "rows" (the row dicts, in
    `ChunkResult.rows`) or "none". Handed to each worker once, as its pool's `initargs`: inherited under "fork",
    pickled under "spawn"."""

    files: Sequence[str]
    encoder: Encoder
    convert: Convert
    skip: frozenset[str] = frozenset()
    outputs: Literal["files", "rows", "none"] = "files"


@dataclass
class ChunkTask:
    """One chunk of the store (`plan.Files` or `plan.Range`: it names files by index, so that the tasks of a big
    store hold no path: the list is packed, and each worker has it once, in its `ChunkJob`), and the folder of its
    part files (None for a job that writes none)."""

    index: int
    chunk: Chunk
    folder: str | None = None

    def files(self) -> range:
        """The indices of the files it reads (of one file, for a range)."""
        chunk = self.chunk
        return range(chunk.start, chunk.stop) if isinstance(chunk, Files) else range(chunk.file, chunk.file + 1)


def plan_tasks(files: Sequence[str], options: RunOptions, staging: Path | None = None) -> list[ChunkTask]:
    """The store cut into chunks (`plan.plan_chunks`: `options.chunk_files` whole files, or byte ranges of
    `options.chunk_bytes` of a big JSONL file or JSON array), each with its part-file folder under `staging`
    (None: a job that writes no part files)."""
    chunks = plan_chunks(files, options.chunk_files, options.chunk_bytes)
    return [
        ChunkTask(index, chunk, None if staging is None else str(staging / f"{index:06d}"))
        for index, chunk in enumerate(chunks)
    ]


@dataclass
class ChunkResult:
    """One chunk's `Encoded`, and its encoded samples: in memory (`InMemory`) or in part files (`PartFiles`)."""

    index: int
    folder: Path | None  # of its part files (None: in memory, or no output)
    encoded: Encoded = field(default_factory=Encoded)
    # Encoded samples, in memory (`InMemory`: this process) ...
    items: dict[str, list[bytes]] = field(default_factory=dict)  # split -> JSON items
    lines: dict[str, list[bytes]] = field(default_factory=dict)  # split -> JSONL lines
    batches: list[tuple[str, str, pa.Table]] = field(default_factory=list)  # (config, split, table)
    # ... or in part files (`PartFiles`: worker processes)
    samples: dict[str, int] = field(default_factory=dict)  # split -> samples in its parts
    line_digests: dict[str, bytes] = field(default_factory=dict)  # split -> `writers.line_digests` of its part
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)  # (config, split) -> Arrow IPC file
    table_sizes: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # its rows' `shards.row_sizes`
    rows: list[tuple[str, dict]] = field(default_factory=list)  # (split, row), for a job whose outputs are "rows"
    firsts: dict[str, str] = field(default_factory=dict)  # a duplicate's id -> where it was first read (job.py)

    def json_part(self, split: str) -> Path:
        return self.folder / f"{split}.json.part"

    def jsonl_part(self, split: str) -> Path:
        return self.folder / f"{split}.jsonl.part"

    def discard(self, keep_tables: bool = False) -> None:
        """Remove the part files (a result in memory has none); with `keep_tables` the Arrow files stay, for the
        workers that write the shards from them (`shardwork.py` removes each once its shards are written)."""
        if self.folder is None:
            return
        if not keep_tables:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        for split in self.samples:
            self.json_part(split).unlink(missing_ok=True)
            self.jsonl_part(split).unlink(missing_ok=True)


class InMemory:
    """A sink that keeps a chunk's encoded samples in its `ChunkResult`."""

    def __init__(self, result: ChunkResult, split_names: tuple[str, ...]):
        self.result = result
        result.items = {split: [] for split in split_names}
        result.lines = {split: [] for split in split_names}

    def row(self, split: str, row: dict) -> None:
        self.result.items[split].append(pretty_item(row))
        self.result.lines[split].append(dumps_line(row))

    def table(self, config: str, split: str, table: pa.Table) -> None:
        self.result.batches.append((config, split, table))

    def close(self) -> None:
        pass


class PartFiles:
    """A sink of staging files in a chunk's folder, for the parent process to append to the outputs."""

    def __init__(self, result: ChunkResult, split_names: tuple[str, ...]):
        self.result = result
        result.folder.mkdir(exist_ok=True)  # in the export's staging folder, which the parent made (job.export_store)
        self.json = {s: result.json_part(s).open("wb", buffering=BUFFER_BYTES) for s in split_names}
        self.jsonl = {s: result.jsonl_part(s).open("wb", buffering=BUFFER_BYTES) for s in split_names}
        self.digests: dict[str, list[bytes]] = {s: [] for s in split_names}
        self.writers: dict[tuple[str, str], Any] = {}
        self.sizes: dict[tuple[str, str], list[np.ndarray]] = {}

    def row(self, split: str, row: dict) -> None:
        count = self.result.samples.get(split, 0)
        line = dumps_line(row)
        self.json[split].write((ITEM_SEPARATOR if count else b"") + pretty_item(row))
        self.jsonl[split].write(line)
        self.digests[split].append(hashlib.sha256(line).digest())
        self.result.samples[split] = count + 1

    def table(self, config: str, split: str, table: pa.Table) -> None:
        key = (config, split)
        if key not in self.writers:
            self.result.tables[key] = self.result.folder / f"{config}.{split}.arrow"
            self.writers[key] = pa.ipc.new_file(self.result.tables[key], table.schema)
            self.sizes[key] = []
        self.writers[key].write_table(table)
        self.sizes[key].append(row_sizes(table))  # here, in the worker: the parent plans the shards from them

    def close(self) -> None:
        for part in (*self.json.values(), *self.jsonl.values(), *self.writers.values()):
            part.close()
        self.result.line_digests = {split: b"".join(digests) for split, digests in self.digests.items()}
        self.result.table_sizes = {key: np.concatenate(sizes) for key, sizes in self.sizes.items()}


def encode_chunk(job: ChunkJob, task: ChunkTask, in_memory: bool = False, earlier: Container[str] = ()) -> ChunkResult:
    """`encode` the records of one chunk's files into the job's outputs: for "files" `InMemory`, or `PartFiles` in
    the task's folder. Samples whose id is in `earlier` (ids of earlier chunks) are dropped and listed as
    duplicates."""
    part_files = job.outputs == "files" and not in_memory
    if part_files and task.folder is None:
        raise ValueError(f"chunk {task.index}: part files need a folder (plan_tasks with a staging folder)")
    result = ChunkResult(task.index, Path(task.folder) if part_files else None)
    names = job.encoder.split_names
    if job.outputs == "files":
        sink: Sink = PartFiles(result, names) if part_files else InMemory(result, names)
    else:
        sink = Rows() if job.outputs == "rows" else NoOutput()
    records = iter_chunk(job.files, task.chunk)
    try:
        result.encoded = encode(records, job.encoder, job.convert, sink, skip=job.skip, earlier=earlier)
    finally:
        if isinstance(sink, (InMemory, PartFiles)):
            sink.close()
    if isinstance(sink, Rows):
        result.rows = sink.rows
    return result


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


WINDOW_PER_WORKER = 2  # chunk tasks in flight per worker: every worker busy, and few results (part files) waiting


class LocalRunner:
    """The worker processes of one run (`options.num_proc` > 1), started with `options.start_method`: they encode
    the chunks (`chunks`, a window of tasks ahead, results in store order) and write the shards planned meanwhile
    (`submit_shard`), which so queue behind a few chunks, not behind the whole store. Use it as a context manager:
    leaving it on an error stops the workers at once.

    `concurrent.futures`' pool, not `multiprocessing.Pool`: a worker that dies (SIGKILL, the OOM killer) fails its
    task there (BrokenProcessPool), where `Pool` waits for the lost task forever."""

    def __init__(self, job: ChunkJob, options: RunOptions, workers: int | None = None):
        check_sendable(job, options.start_method)
        self.job = job
        self.workers = workers or options.num_proc
        self.pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context(options.start_method),
            initializer=_start_worker,
            initargs=(job,),
        )

    def id_index(self) -> SeenIds:
        """The index of the kept sample ids: in this process, which is on the machine the workers are."""
        return SeenIds()

    def __enter__(self) -> "LocalRunner":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.pool.shutdown(wait=True)
            return
        # Stop now: `shutdown` alone would let the running tasks finish. The pool has no public way to stop its
        # workers before Python 3.14 (`terminate_workers`), so they are terminated one by one.
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        # A worker stopped while it sent a result leaves half a message in the result pipe: the pool's thread would
        # wait for the rest forever, and the interpreter for that thread at exit. With every worker gone, closing
        # this process's copy of the pipe's write end ends that read.
        results = getattr(self.pool, "_result_queue", None)
        if results is not None:
            results._writer.close()

    def chunks(self, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, ChunkResult]]:
        pending: deque[tuple[ChunkTask, Future]] = deque()
        upcoming = iter(tasks)
        try:
            for task in upcoming:
                pending.append((task, self._submit(_encode_in_worker, task)))
                if len(pending) >= WINDOW_PER_WORKER * self.workers:
                    break
            while pending:
                task, future = pending.popleft()
                result = self.result(future, f"chunk {task.index} ({describe(self.job.files, task.chunk)})")
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
            return self.pool.submit(function, argument)
        came: list[int] = []

        def hold(number: int, frame) -> None:
            came.append(number)

        # A handler installed outside Python (getsignal gives None) could not be put back: such a signal is left be.
        held = [number for number in HELD_SIGNALS if signal.getsignal(number) is not None]
        handlers = {number: signal.signal(number, hold) for number in held}
        try:
            return self.pool.submit(function, argument)
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
            return handle.result()
        except BrokenProcessPool:
            # Every task not yet done fails with it, so `what` (the first of them) may not be what the worker ran.
            raise WorkerDied(
                "a worker process died (killed, or out of memory); the earlier export is unchanged: rerun, with "
                "fewer --num-proc if memory ran out"
            ) from None
