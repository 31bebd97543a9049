"""`export --engine ray`: the store's chunks encoded, and the Parquet shards written, by Ray tasks, on one machine or a
cluster, with the outputs of the local export, byte for byte.

Each chunk task runs `chunks.encode_chunk` on one chunk of the plan (`plan.py`) into part files, exactly as a local
worker process does, and returns the chunk's small summary (`ChunkResult`: kept ids and where they were read, bad
records, statistics, the audit, the part files' names, its rows' sizes). The driver takes the results in store order
and does what it does for local workers (`job.encode_store`: duplicates across chunks, the reports;
`Exporter.add_chunk`: the JSON parts appended to the outputs, each split's shards planned from the sizes,
`shardwork.py`); each planned shard is written by a shard task (`shards.write_shard`) from the chunks' Arrow files.
So the driver holds the packed file list, a window of pending tasks and one result at a time, never the store's
rows, encodes no Parquet, and the engine changes no output byte.

No dataframe API: Ray Data's readers, writers and partitions decide file names, shard cuts and schema metadata
themselves, and gave other bytes on every run when measured (issue 14); Ray Core tasks running the project's own
encoder give the same bytes.

A task whose worker dies is run again by Ray (`RETRIES`): it rewrites its part files (or its shard) from the start,
under the same names, so a retry changes nothing. An export that fails leaves the earlier export intact, as a local
one does.

Every node must see the store and the output folder at the same paths (a shared file system): a task checks both
and stops with one line naming the node when it cannot. Relative paths are resolved on the node against the
driver's working directory, so reports name files exactly as a local export does.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..config import ConfigError, RunOptions
from ..extras import require
from ..measure.seen import SeenIds
from ..read.plan import describe
from ..write.parquet import ShardSpec, ShardWritten, write_shard
from ..write.planned_shards import PlannedSplitWriter
from .chunks import ChunkJob, ChunkResult, ChunkTask, encode_chunk

logger = logging.getLogger(__name__)

RETRIES = 3  # runs of a task whose worker died, after the first (Ray's max_retries); an exception is not retried
WINDOW_PER_CPU = 2  # tasks in flight per CPU of the cluster: every CPU busy, and a bounded number of results waiting
CPUS_PER_ID_BUCKET = 4  # one actor holding a bucket of the kept sample ids per this many CPUs of the cluster...
ID_BUCKETS = (2, 16)  # ...and at least and at most this many


STOP_WAIT = 30.0  # seconds an export that failed lets its tasks in flight finish before it cancels them
CONNECT_TIMEOUT = 5.0  # seconds to reach the head's port before `ray.init`, which waits a minute and more


class NodeCannotSeeError(ConfigError):
    """A Ray node does not see a path the export needs (no shared file system)."""


class RayConnectError(ConfigError):
    """The Ray cluster cannot be reached or refuses this driver."""


class RayTaskFailed(RuntimeError):
    """Ray could not run a chunk's task (its worker died more often than `RETRIES`, or Ray lost it)."""


def _encode_task(job: ChunkJob, task: ChunkTask, cwd: str) -> ChunkResult:
    """One chunk, on a Ray worker: checked paths, then `encode_chunk` into the task's part files."""
    previous = os.getcwd()
    try:
        os.chdir(cwd)  # relative store paths mean on the node what they mean to the driver
    except OSError:
        raise NodeCannotSeeError(
            f"node {socket.gethostname()} cannot see the export's working directory {cwd}: every Ray node must see "
            "the store and the output folder at the same path (a shared file system), or give absolute paths"
        ) from None
    try:
        staging = os.path.dirname(task.folder) if task.folder is not None else None  # None: a job without files
        if staging is not None and not os.path.isdir(staging):
            raise NodeCannotSeeError(
                f"node {socket.gethostname()} cannot see the export's staging folder {os.path.abspath(staging)}: "
                "every Ray node must see the output folder and the store at the same path (a shared file system)"
            )
        first = job.files[task.files()[0]]
        if not os.path.lexists(first):
            raise NodeCannotSeeError(
                f"node {socket.gethostname()} cannot see the store's file {os.path.abspath(first)}: every Ray node "
                "must see the store at the same path (a shared file system); rerun if it was removed meanwhile"
            )
        return encode_chunk(job, task)
    finally:
        os.chdir(previous)


def _connect(address: str | None, runtime_env: Mapping[str, Any] | None = None) -> bool:
    """Connect this driver to Ray (`address`, else what `ray.init` finds: RAY_ADDRESS, a cluster `ray start`
    started here, or a new local instance) with the job's `runtime_env`; True when this call connected (and so
    disconnects at the end). A driver connected already keeps its connection, and its runtime environment."""
    ray = require("ray", "ray", "--engine ray")
    if ray.is_initialized():
        if runtime_env is not None:
            logger.warning("Ray is connected already: ray_runtime_env is not applied (give it to your ray.init)")
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local") and "://" not in address:
        _reachable(address)
    with _messages_aside() as messages:
        try:
            ray.init(
                address=address,
                runtime_env=dict(runtime_env) if runtime_env is not None else None,
                log_to_driver=False,
                logging_level=logging.WARNING,
                include_dashboard=False,
            )
        except (ValueError, TypeError) as error:  # a runtime_env Ray refuses (a py_modules path that does not exist)
            raise RayConnectError(
                f"Ray refused the runtime environment (--runtime-env-json): {_scrubbed(error, runtime_env)}"
            ) from None
        except ConnectionError as error:
            messages.seek(0)
            if b"InvalidAuthToken" in messages.read():
                raise RayConnectError(
                    f"the Ray cluster at {address} refused this driver's token: give the export the cluster's token "
                    "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE=token"
                ) from None
            raise RayConnectError(
                f"cannot connect to the Ray cluster at {address}: {str(error).splitlines()[0]} (check --address, and "
                "that RAY_AUTH_TOKEN or ~/.ray/auth_token holds the cluster's token)"
            ) from None
    return True


@contextmanager
def _messages_aside() -> Iterator[IO[bytes]]:
    """What is written to stderr while Ray connects goes to a temporary file instead. Ray's C++ core writes there
    itself, past Python's logging: a line a second for ~20 s while a cluster refuses the driver's token, a warning
    when no route to 8.8.8.8 shows it the node's address. The export says in one line what went wrong."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as messages:
        os.dup2(messages.fileno(), 2)
        try:
            yield messages
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _scrubbed(error: BaseException, runtime_env: Mapping[str, Any] | None) -> str:
    """The first line of Ray's message, with the values of the runtime environment's env_vars (secrets, often)
    replaced by ***."""
    line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    for value in ((runtime_env or {}).get("env_vars") or {}).values():
        if isinstance(value, str) and value:
            line = line.replace(value, "***")
    return line


def _reachable(address: str) -> None:
    """Fail fast, in one line, when nothing listens at the head's `host:port`."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except ValueError:
        raise RayConnectError(
            f"--address {address!r}: expected HOST:PORT of the Ray head (port 6379 by default)"
        ) from None
    except OSError as error:
        raise RayConnectError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error}); start it with `ray start --head` "
            "or fix --address"
        ) from None


def _shard_task(job: ChunkJob, spec: ShardSpec, cwd: str) -> ShardWritten:
    """One planned Parquet shard, on a Ray worker, from the chunks' Arrow files (`shards.write_shard`)."""
    previous = os.getcwd()
    os.chdir(cwd)  # a relative output folder means on the node what it means to the driver (checked by the chunks)
    try:
        return write_shard(spec, job.encoder.specs[spec.config])
    finally:
        os.chdir(previous)


class _IdBucket:
    """A Ray actor: the kept sample ids whose digest falls in its bucket, and where each was first read
    (`seen.SeenIds`). It gets the chunks' ids in store order: Ray runs a synchronous actor's calls from one
    submitter in the order they were submitted, unless they are retried (`max_task_retries=0`) or
    `allow_out_of_order_execution` is set; so the first it is given is the one an export keeps."""

    def __init__(self) -> None:
        self.seen = SeenIds()

    def find_and_add(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> np.ndarray:
        return self.seen.find_and_add(high, low, locations)

    def count(self) -> int:
        return len(self.seen)


class RayIdIndex:
    """`seen.SeenIds` spread over `_IdBucket` actors by a stable hash (the digest's high word), so that the driver
    holds no per-record state: for each chunk it sends each bucket its share of the chunk's ids, and gets back only
    where the ids an earlier chunk had were first read."""

    answers_later = True  # a round trip to the actors: the driver takes the answer once the next chunk is in

    def __init__(self, ray: Any, buckets: int):
        self.ray = ray
        actor = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD")(_IdBucket)
        self.buckets = [actor.remote() for _ in range(buckets)]

    def ask(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> Callable[[], np.ndarray]:
        """`seen.SeenIds.ask`: each bucket gets its share now (so the calls of one chunk after another reach each
        bucket in store order), and the function returned waits for their answers."""
        which = high % np.uint64(len(self.buckets))
        shares = [np.flatnonzero(which == number) for number in range(len(self.buckets))]
        calls = [
            (share, bucket.find_and_add.remote(high[share], low[share], locations[share]))
            for bucket, share in zip(self.buckets, shares)
            if len(share)
        ]

        def answer() -> np.ndarray:
            found = np.full(len(high), -1, dtype=np.int64)
            try:
                for (share, _), part in zip(calls, self.ray.get([ref for _, ref in calls])):
                    found[share] = part
            except self.ray.exceptions.RayError as error:  # an actor died: the ids it held are gone
                raise RayTaskFailed(
                    f"Ray lost the index of the sample ids read so far ({type(error).__name__}: its actor died); "
                    "the earlier export is unchanged: rerun"
                ) from None
            return found

        return answer

    def find_and_add(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> np.ndarray:
        return self.ask(high, low, locations)()

    def counts(self) -> list[int]:
        """The ids each bucket holds."""
        return self.ray.get([bucket.count.remote() for bucket in self.buckets])

    def close(self) -> None:
        for bucket in self.buckets:
            self.ray.kill(bucket)


class RayRunner:
    """`local.LocalRunner` on Ray: the chunks encoded by tasks (`chunks`, a window of tasks ahead, results in
    store order) and the planned shards written by tasks (`submit_shard`). A context manager: it connects (and
    disconnects when it connected), and leaving it on an error cancels every task still running."""

    background = None  # the workers write the files; this process only joins their parts

    def __init__(self, options: RunOptions):
        self.options = options
        self.job: ChunkJob | None = None  # the job of the chunks running, in Ray's object store once (`job_ref`)
        self.refs: list[Any] = []  # tasks that may still run
        self.indexes: list[RayIdIndex] = []  # their actors are killed on leaving

    def __enter__(self) -> "RayRunner":
        import ray

        self.ray = ray
        self.connected = _connect(self.options.ray_address, self.options.ray_runtime_env)
        try:
            self.encode = ray.remote(max_retries=RETRIES, retry_exceptions=False)(_encode_task)
            self.write = ray.remote(max_retries=RETRIES, retry_exceptions=False)(_shard_task)
            self.window = max(2, WINDOW_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
            self.cwd = os.getcwd()
        except BaseException:
            self._disconnect()
            raise
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            self._stop_tasks(interrupted=kind is not None and not issubclass(kind, Exception))
            for index in self.indexes:
                index.close()
        finally:
            self._disconnect()

    def _stop_tasks(self, interrupted: bool) -> None:
        """Leave no task running: an export that failed lets its tasks in flight (a window of chunks, shards: short)
        finish, for `STOP_WAIT` at most, then cancels what is left; an interrupted one cancels them at once. Why
        wait: a task cancelled as it finishes can fail a check in Ray's core worker, which aborts this process
        ("Tried to complete task that was not pending", ray-project/ray#54798); the full test suite hit it."""
        running = [ref for ref in self.refs if not self.ready(ref)]
        if running and not interrupted:
            _done, running = self.ray.wait(running, num_returns=len(running), timeout=STOP_WAIT, fetch_local=False)
        for ref in running:
            self.ray.cancel(ref, force=True)
        self.refs = []

    def id_index(self) -> RayIdIndex:
        """The index of the kept sample ids, in actors of the cluster (`RayIdIndex`)."""
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        low, high = ID_BUCKETS
        self.indexes.append(RayIdIndex(self.ray, min(high, max(low, cpus // CPUS_PER_ID_BUCKET))))
        return self.indexes[-1]

    def _disconnect(self) -> None:
        if self.connected:
            self.ray.shutdown()

    def split_writer(self, folder: Path, split: str, config: str, specs: dict[str, Any], spill: Path):
        """The shards of one (config, split): planned in the driver, written by shard tasks."""
        options = self.options
        return PlannedSplitWriter(
            folder, split, config, specs, self, spill, options.max_shard_bytes, options.row_group_rows
        )

    def chunks(self, job: ChunkJob, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, ChunkResult]]:
        if self.job is not job:
            self.job, self.job_ref = job, self.ray.put(job)  # once, for every task of the job
        job_ref = self.job_ref
        pending: deque[tuple[ChunkTask, Any]] = deque()
        upcoming = iter(tasks)

        def submit() -> None:
            task = next(upcoming, None)
            if task is not None:
                pending.append((task, self._track(self.encode.remote(job_ref, task, self.cwd))))

        for _ in range(self.window):
            submit()
        while pending:
            task, ref = pending.popleft()
            result = self.result(ref, f"chunk {task.index} ({describe(job.files, task.chunk)})")
            submit()
            yield task, result

    def submit_shard(self, spec: ShardSpec) -> Any:
        return self._track(self.write.remote(self.job_ref, spec, self.cwd))

    def _track(self, ref: Any) -> Any:
        self.refs = [other for other in self.refs if not self.ready(other)]
        self.refs.append(ref)
        return ref

    def ready(self, ref: Any) -> bool:
        done, _ = self.ray.wait([ref], timeout=0, fetch_local=False)
        return bool(done)

    def result(self, ref: Any, what: str) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # the task's own exception, as a local run raises it
            raise error.cause from None
        except self.ray.exceptions.RayError as error:  # the worker died RETRIES + 1 times, or Ray lost the task
            raise RayTaskFailed(
                f"Ray could not run {what}: {type(error).__name__}: {str(error).strip().splitlines()[0]}; the earlier "
                "export is unchanged"
            ) from None
