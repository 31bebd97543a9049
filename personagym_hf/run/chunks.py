"""Running `encode` over a store in fixed chunks of files, in this process or in worker processes.

The store is cut into chunks (`plan.py`): `RunOptions.chunk_files` whole files, or a byte range of
`RunOptions.chunk_bytes` of a big JSON Lines file (or a piece of a big JSON array) — fixed sizes, so the cut does
not depend on `num_proc`, and any cut gives the same outputs. `encode_chunk` reads one chunk and runs
`encode.encode` on its records, into a sink:
- in this process `InMemory`: the chunk's JSON items and JSONL lines stay in memory (one chunk at a time);
- in a worker process `PartFiles`: per split a JSON fragment and a JSONL part, and per config and split an Arrow
  IPC file;
- for a job without outputs (validate, stats, the pre-passes) the rows, the samples' group keys, or nothing.
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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Container, Literal, Sequence

import numpy as np
import pyarrow as pa

from ..config import RunOptions
from ..read.plan import Chunk, Files, iter_chunk, plan_chunks
from ..transform.assign import KeyCounts, KeySink
from ..transform.encode import Encoded, Encoder, NoOutput, Rows, Sink, encode
from ..transform.policy import Convert
from ..write.files import BUFFER_BYTES, ITEM_SEPARATOR, dumps_line, dumps_line_within, pretty_item
from ..write.folder import hold
from ..write.parquet import row_sizes


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one run needs: the store's files (packed, see `store.PathList`), the encoder, the
    conversion, the sample ids to skip (those an earlier export holds, when appending), and what becomes of the
    rows: "files" (the export's outputs: `InMemory` or `PartFiles`), "rows" (the row dicts, in
    `ChunkResult.rows`), "keys" (the samples' group keys, in `ChunkResult.keys`: the splits' pre-pass) or "none".
    Handed to each worker once, as its pool's `initargs`: inherited under "fork", pickled under "spawn"."""

    files: Sequence[str]
    encoder: Encoder
    convert: Convert
    skip: frozenset[str] = frozenset()
    outputs: Literal["files", "rows", "keys", "none"] = "files"


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
    items: dict[str, list[bytes | dict]] = field(default_factory=dict)  # split -> JSON items (a big row: the row)
    lines: dict[str, list[bytes | dict]] = field(default_factory=dict)  # split -> JSONL lines (a big row: the row)
    batches: list[tuple[str, str, pa.Table]] = field(default_factory=list)  # (config, split, table)
    # ... or in part files (`PartFiles`: worker processes)
    samples: dict[str, int] = field(default_factory=dict)  # split -> samples in its parts
    line_digests: dict[str, bytes] = field(default_factory=dict)  # split -> `writers.line_digests` of its part
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)  # (config, split) -> Arrow IPC file
    table_sizes: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # its rows' `shards.row_sizes`
    rows: list[tuple[str, dict]] = field(default_factory=list)  # (split, row), for a job whose outputs are "rows"
    keys: KeyCounts | None = None  # for a job whose outputs are "keys"
    firsts: dict[str, str] = field(default_factory=dict)  # a duplicate's id -> where it was first read (job.py)

    def json_part(self, split: str) -> Path:
        return self.folder / f"{split}.json.part"

    def jsonl_part(self, split: str) -> Path:
        return self.folder / f"{split}.jsonl.part"

    def discard(self, keep_tables: bool = False) -> None:
        """Let go of the encoded samples: those in memory (the files and writers they were handed to hold what they
        still need; the last chunk would otherwise keep its rows, a big row's text among them, until the export
        ends), and the part files; with `keep_tables` the Arrow files stay, for the workers that write the shards
        from them (`shardwork.py` removes each once its shards are written)."""
        self.items, self.lines, self.batches = {}, {}, []
        if self.folder is None:
            return
        if not keep_tables:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        for split in self.samples:
            self.json_part(split).unlink(missing_ok=True)
            self.jsonl_part(split).unlink(missing_ok=True)


HELD_ROW_BYTES = 1 << 20  # a row whose JSONL line is bigger is kept as the row until it is written (`InMemory`)


def conversation_chars(row: dict) -> int:
    """The characters of a row's `full_conversation` texts: its JSONL line has at least as many bytes (a character
    is one byte or more in UTF-8 and in an escape). A row whose conversation alone is over `HELD_ROW_BYTES` is held
    without making its line whole first: that line (the turns are in the trajectory too) and orjson's buffer growing
    to it were 1x the record more at the peak of an export without Parquet (docs/performance.md, "Big records")."""
    chars = 0
    conversation = row.get("full_conversation")
    if isinstance(conversation, list):
        for message in conversation:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
    return chars


class InMemory:
    """A sink that keeps a chunk's encoded samples in its `ChunkResult`: JSON items and JSONL lines, or for a big
    row the row itself."""

    def __init__(self, result: ChunkResult, split_names: tuple[str, ...]):
        self.result = result
        result.items = {split: [] for split in split_names}
        result.lines = {split: [] for split in split_names}

    def row(self, split: str, row: dict) -> None:
        line = None if conversation_chars(row) >= HELD_ROW_BYTES else dumps_line_within(row, HELD_ROW_BYTES)
        if line is None:
            # A big row is held as itself (its strings are the sample's, no copy) and written a piece at a time
            # (`files.item_pieces`, `line_pieces`): neither its JSON item nor its JSONL line is ever whole in memory
            # (but in `dumps_line_within`, for a row whose size only the whole line tells).
            self.result.items[split].append(row)
            self.result.lines[split].append(row)
            return
        self.result.items[split].append(pretty_item(row))
        self.result.lines[split].append(line)

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
    hold("chunk")  # the signal tests hold the run here (write/folder.py)
    part_files = job.outputs == "files" and not in_memory
    if part_files and task.folder is None:
        raise ValueError(f"chunk {task.index}: part files need a folder (plan_tasks with a staging folder)")
    result = ChunkResult(task.index, Path(task.folder) if part_files else None)
    names = job.encoder.split_names
    if job.outputs == "files":
        sink: Sink = PartFiles(result, names) if part_files else InMemory(result, names)
    else:
        sink = Rows() if job.outputs == "rows" else KeySink() if job.outputs == "keys" else NoOutput()
    records = iter_chunk(job.files, task.chunk)
    try:
        result.encoded = encode(
            records, job.encoder, job.convert, sink, skip=job.skip, earlier=earlier, statistics=job.outputs != "keys"
        )
    finally:
        if isinstance(sink, (InMemory, PartFiles)):
            sink.close()
    if isinstance(sink, Rows):
        result.rows = sink.rows
    if isinstance(sink, KeySink):
        result.keys = sink.counts
    return result
