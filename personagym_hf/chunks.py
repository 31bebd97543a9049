"""Encoding a store in fixed chunks of files, in this process or in worker processes.

The store's files are cut into chunks of `RunOptions.chunk_files` — a fixed count, so the cut does not depend on
`num_proc`. `encode_chunk` reads, converts, validates and splits one chunk, and hands each sample's JSON
item, JSONL line and (a batch at a time) every config's Arrow table to a sink:
- in this process the sink is `InMemory`: the chunk's encoded samples stay in memory (measured: +25 MB peak RSS);
- in a worker process it is `PartFiles`: per split a JSON fragment and a JSONL part, and per config and
  split an Arrow IPC file.
The parent then appends each chunk to the outputs in chunk order (`Exporter.add_chunk`), so an export
writes the same bytes either way, and memory holds about one chunk.

A record whose interaction_id an earlier chunk had must not be written. A chunk cannot know the ids of
the chunks before it (a worker runs beside them), so the parent looks up each chunk's ids (`seen.py`) and,
when some were read before, encodes that chunk again without them: rare, and it keeps every chunk
independent of the others.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container, Iterator, Protocol, Sequence

import pyarrow as pa

from .config import SPLIT_NAMES, ConfigError, ExportConfig, RunOptions
from .manifest import collector_name
from .samples import Convert, Rejections, iter_samples
from .split import assign_split, split_key
from .stats import StatsAccumulator
from .store import BadRecord, iter_file
from .writers import BUFFER_BYTES, ITEM_SEPARATOR, dumps_line, pretty_item


class Encoder:
    """A sample -> its split and its row in the JSON files, under one export's settings."""

    def __init__(
        self, cfg: ExportConfig, split: bool, views: bool, audit: str | None = None, split_cache: int | None = None
    ):
        from .views import config_specs, full_fields

        self.cfg, self.split = cfg, split
        self.audit = audit  # the leakage audit of every chunk: "near", "exact" or None (audit.resolve_mode)
        self.split_names = SPLIT_NAMES if split else ("train",)
        self.fields = full_fields(cfg.format)
        self.specs = config_specs(cfg.format) if views else {}  # dataset configs to build (none: no Parquet)
        self.splits: dict[str, str] = {}  # split key -> split
        self.split_cache = split_cache or RunOptions.split_cache
        self.groups = None  # `groups.SplitGroups`, resolved, under split_by: persona_and_query

    def split_of(self, data: dict) -> str:
        """`split.split_of`, remembered per key: a persona has many samples, and its hash costs 1.3 us each time.
        Bounded, for stores whose keys are all different (`split_by: sample`)."""
        if not self.split:
            return "train"
        if self.groups is not None:  # split_by: persona_and_query, grouped by the pre-pass (job.py)
            return self.groups.split_of(data["sample_id"])
        key = split_key(data, self.cfg.split_by)
        split = self.splits.get(key)
        if split is None:
            if len(self.splits) >= self.split_cache:
                self.splits.clear()
            split = self.splits[key] = assign_split(key, self.cfg.seed, self.cfg.ratios)
        return split

    def row(self, data: dict) -> dict:
        return {name: data[name] for name in self.fields}


@dataclass(frozen=True)
class Kept:
    """A sample a chunk kept, and where its record was read (`file`: index in the store's file list)."""

    sample_id: str
    file: int
    where: str
    interaction_id: str | None


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one export needs: the store's files (packed, see `store.PathList`), the encoder, the
    conversion, the sample ids to skip (those an earlier export holds, when appending) and the rows of an Arrow
    batch. Handed to each worker once, as its pool's `initargs`: inherited under "fork", pickled under "spawn"."""

    files: Sequence[str]
    encoder: Encoder
    convert: Convert
    skip: frozenset[str] = frozenset()
    batch_rows: int = RunOptions.batch_rows


@dataclass
class ChunkTask:
    """Files `start` to `stop` of the store's file list (a task names them, so that the tasks of a big store
    hold no path: the list is packed, and each worker has it once, in its `ChunkJob`)."""

    index: int
    start: int
    stop: int
    folder: str


@dataclass
class ChunkResult:
    index: int
    folder: Path
    kept: list[Kept] = field(default_factory=list)
    duplicates: list[Kept] = field(default_factory=list)  # samples dropped: an earlier chunk had their id
    bad: list[BadRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: StatsAccumulator = field(default_factory=StatsAccumulator)
    audit: Any = None  # the chunk's `LeakageAudit` of its rows, when the export audits
    # Encoded samples, in memory (`InMemory`: this process) ...
    items: dict[str, list[bytes]] = field(default_factory=dict)  # split -> JSON items
    lines: dict[str, list[bytes]] = field(default_factory=dict)  # split -> JSONL lines
    batches: list[tuple[str, str, pa.Table]] = field(default_factory=list)  # (config, split, table)
    # ... or in part files (`PartFiles`: worker processes)
    samples: dict[str, int] = field(default_factory=dict)  # split -> samples in its parts
    line_digests: dict[str, bytes] = field(default_factory=dict)  # split -> `writers.line_digests` of its part
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)  # (config, split) -> Arrow IPC file

    def json_part(self, split: str) -> Path:
        return self.folder / f"{split}.json.part"

    def jsonl_part(self, split: str) -> Path:
        return self.folder / f"{split}.jsonl.part"

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Sink(Protocol):
    """Where a chunk's encoded samples go."""

    def item(self, split: str, pretty: bytes, line: bytes) -> None:
        """One sample: its item of the JSON array (`pretty_item`) and its JSONL line."""

    def table(self, config: str, split: str, table: pa.Table) -> None:
        """A batch of one config's rows."""

    def close(self) -> None:
        """The chunk is encoded."""


class InMemory:
    """A sink that keeps a chunk's encoded samples in its `ChunkResult`."""

    def __init__(self, result: ChunkResult, split_names: tuple[str, ...]):
        self.result = result
        result.items = {split: [] for split in split_names}
        result.lines = {split: [] for split in split_names}

    def item(self, split: str, pretty: bytes, line: bytes) -> None:
        self.result.items[split].append(pretty)
        self.result.lines[split].append(line)

    def table(self, config: str, split: str, table: pa.Table) -> None:
        self.result.batches.append((config, split, table))

    def close(self) -> None:
        pass


class PartFiles:
    """A sink of staging files in a chunk's folder, for the parent process to append to the outputs."""

    def __init__(self, result: ChunkResult, split_names: tuple[str, ...]):
        self.result = result
        self.json = {s: result.json_part(s).open("wb", buffering=BUFFER_BYTES) for s in split_names}
        self.jsonl = {s: result.jsonl_part(s).open("wb", buffering=BUFFER_BYTES) for s in split_names}
        self.digests: dict[str, list[bytes]] = {s: [] for s in split_names}
        self.writers: dict[tuple[str, str], Any] = {}

    def item(self, split: str, pretty: bytes, line: bytes) -> None:
        count = self.result.samples.get(split, 0)
        self.json[split].write((ITEM_SEPARATOR if count else b"") + pretty)
        self.jsonl[split].write(line)
        self.digests[split].append(hashlib.sha256(line).digest())
        self.result.samples[split] = count + 1

    def table(self, config: str, split: str, table: pa.Table) -> None:
        key = (config, split)
        if key not in self.writers:
            self.result.tables[key] = self.result.folder / f"{config}.{split}.arrow"
            self.writers[key] = pa.ipc.new_file(self.result.tables[key], table.schema)
        self.writers[key].write_table(table)

    def close(self) -> None:
        for part in (*self.json.values(), *self.jsonl.values(), *self.writers.values()):
            part.close()
        self.result.line_digests = {split: b"".join(digests) for split, digests in self.digests.items()}


class Batches:
    """Each split's samples, turned into every config's Arrow table a batch at a time and handed to
    `write(config, split, table)`."""

    def __init__(self, flags: dict[str, bool], write: Callable[[str, str, pa.Table], None], batch_rows: int):
        from .tables import ViewTables

        self.tables, self.write, self.batch_rows = ViewTables(flags), write, batch_rows
        self.samples: dict[str, list[dict]] = {}

    def add(self, data: dict, split: str) -> None:
        batch = self.samples.setdefault(split, [])
        batch.append(data)
        if len(batch) >= self.batch_rows:
            self.flush(split)

    def flush(self, split: str) -> None:
        if self.samples.get(split):
            for config, table in self.tables.build(self.samples[split]).items():
                self.write(config, split, table)
            self.samples[split] = []

    def flush_all(self) -> None:
        for split in list(self.samples):
            self.flush(split)


def encode_chunk(job: ChunkJob, task: ChunkTask, in_memory: bool = False, earlier: Container[str] = ()) -> ChunkResult:
    """Encode one chunk `InMemory`, or into `PartFiles` in the task's folder. Samples whose id is in `earlier`
    (ids of earlier chunks) are dropped and listed as duplicates."""
    encoder, convert = job.encoder, job.convert
    skip = job.skip  # sample ids an earlier export already holds (append)
    result = ChunkResult(task.index, Path(task.folder))
    if not in_memory:
        result.folder.mkdir(parents=True, exist_ok=True)
    sink: Sink = InMemory(result, encoder.split_names) if in_memory else PartFiles(result, encoder.split_names)
    # Bad records are collected here and reported by the parent, in store order; "error" still stops at once.
    rejections = Rejections("error" if encoder.cfg.on_bad_records == "error" else "skip")
    batches = Batches(encoder.cfg.format, sink.table, job.batch_rows) if encoder.specs else None
    if encoder.audit is not None:
        from .audit import LeakageAudit

        result.audit = LeakageAudit(near=encoder.audit == "near")
    try:
        current = [task.start]

        def records():
            for offset, path in enumerate(job.files[task.start : task.stop]):
                current[0] = task.start + offset
                yield from iter_file(path)

        for sample, record in iter_samples(records(), convert, rejections):
            if sample.sample_id in skip:
                continue
            record_id = record.data.get("interaction_id")
            kept = Kept(sample.sample_id, current[0], record.where, record_id if isinstance(record_id, str) else None)
            if sample.sample_id in earlier:
                result.duplicates.append(kept)
                continue
            data = sample.to_dict()
            split = encoder.split_of(data)
            row = encoder.row(data)
            sink.item(split, pretty_item(row), dumps_line(row))
            result.stats.add(data, split)
            if result.audit is not None:  # the rows as written: what an append reads back (export.py)
                result.audit.add(row, split)
            if batches is not None:
                batches.add(data, split)
            result.kept.append(kept)
        if batches is not None:
            batches.flush_all()
    finally:
        sink.close()
    result.bad, result.warnings = rejections.bad, rejections.warnings
    return result


# In a worker process only: its pool's job, given once by `_start_worker` (the pool's initializer).
_worker_job: ChunkJob | None = None


def _start_worker(job: ChunkJob) -> None:
    """A worker dies on SIGTERM (the pool's `terminate`), whatever handler the parent's CLI installed."""
    global _worker_job
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_job = job


def _encode_in_worker(task: ChunkTask) -> ChunkResult:
    return encode_chunk(_worker_job, task)


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


def run_chunks(
    job: ChunkJob, staging: Path, options: RunOptions = RunOptions()
) -> Iterator[tuple[ChunkTask, ChunkResult]]:
    """Chunk results in store order: encoded in memory in this process (`num_proc` 1, or a single chunk), or
    into part files by worker processes started with `options.start_method`."""
    files, size = job.files, options.chunk_files
    tasks = [
        ChunkTask(index, start, min(start + size, len(files)), str(staging / f"{index:06d}"))
        for index, start in enumerate(range(0, len(files), size))
    ]
    if options.num_proc <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, encode_chunk(job, task, in_memory=True)
        return
    check_sendable(job, options.start_method)
    context = multiprocessing.get_context(options.start_method)
    with context.Pool(min(options.num_proc, len(tasks)), initializer=_start_worker, initargs=(job,)) as pool:
        yield from zip(tasks, pool.imap(_encode_in_worker, tasks))
