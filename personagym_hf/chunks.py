"""Encoding a store in fixed chunks of files, in this process or in worker processes.

The store's files are cut into chunks of `CHUNK_FILES` — a fixed count, so the cut does not depend on
`num_proc`. `encode_chunk` reads, converts, validates, splits and encodes one chunk into part files: per
split a JSON fragment and a JSONL part, and per config and split an Arrow IPC file. The parent takes the
chunks in order and appends their parts to the outputs (`Exporter.add_chunk`), so an export writes the
same bytes with one process or many, and memory holds about one batch per config and split per worker.

A record whose interaction_id an earlier chunk already had is found by the parent, which then encodes that
chunk again without it: rare, and it keeps the workers independent of each other.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from .config import SPLIT_NAMES, ExportConfig
from .samples import Convert, Rejections, iter_samples
from .split import split_of
from .stats import StatsAccumulator
from .store import BadRecord, iter_file
from .writers import ITEM_SEPARATOR, dumps_line, pretty_item

CHUNK_FILES = 1000


class Encoder:
    """A sample -> its split and its row in the JSON files, under one export's settings."""

    def __init__(self, cfg: ExportConfig, split: bool, views: bool):
        from .views import config_specs, full_fields

        self.cfg, self.split = cfg, split
        self.split_names = SPLIT_NAMES if split else ("train",)
        self.fields = full_fields(cfg.format)
        self.specs = config_specs(cfg.format) if views else {}  # dataset configs to build (none: no Parquet)

    def split_of(self, data: dict) -> str:
        return split_of(data, self.cfg.seed, self.cfg.ratios, self.cfg.split_by) if self.split else "train"

    def row(self, data: dict) -> dict:
        return {name: data[name] for name in self.fields}


@dataclass(frozen=True)
class Kept:
    """A sample a chunk kept, and where its record was read (`file`: index in the store's file list)."""

    sample_id: str
    file: int
    where: str
    interaction_id: str | None


@dataclass
class ChunkTask:
    index: int
    start: int  # index of `files[0]` in the store's file list
    files: list[str]
    folder: str
    exclude: frozenset[str] = frozenset()


@dataclass
class ChunkResult:
    index: int
    folder: Path
    kept: list[Kept] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: StatsAccumulator = field(default_factory=StatsAccumulator)
    samples: dict[str, int] = field(default_factory=dict)  # split -> samples in its parts
    jsonl_sha256: dict[str, str] = field(default_factory=dict)  # split -> sha256 of its JSONL part
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)  # (config, split) -> Arrow IPC file

    def json_part(self, split: str) -> Path:
        return self.folder / f"{split}.json.part"

    def jsonl_part(self, split: str) -> Path:
        return self.folder / f"{split}.jsonl.part"

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _ArrowParts:
    """Each split's samples, turned into every config's Arrow table a batch at a time, in IPC files."""

    def __init__(self, encoder: Encoder, folder: Path, batch_rows: int):
        from .tables import ViewTables

        self.tables, self.folder, self.batch_rows = ViewTables(encoder.cfg.format), folder, batch_rows
        self.samples: dict[str, list[dict]] = {}
        self.writers: dict[tuple[str, str], Any] = {}
        self.paths: dict[tuple[str, str], Path] = {}

    def add(self, data: dict, split: str) -> None:
        batch = self.samples.setdefault(split, [])
        batch.append(data)
        if len(batch) >= self.batch_rows:
            self._flush(split)

    def _flush(self, split: str) -> None:
        if not self.samples.get(split):
            return
        for config, table in self.tables.build(self.samples[split]).items():
            key = (config, split)
            if key not in self.writers:
                self.paths[key] = self.folder / f"{config}.{split}.arrow"
                self.writers[key] = pa.ipc.new_file(self.paths[key], table.schema)
            self.writers[key].write_table(table)
        self.samples[split] = []

    def close(self) -> dict[tuple[str, str], Path]:
        for split in list(self.samples):
            self._flush(split)
        for writer in self.writers.values():
            writer.close()
        return self.paths


# Set by `run_chunks` before workers start (fork inherits it): what every chunk needs besides its files.
_JOB: dict[str, Any] = {}


def encode_chunk(task: ChunkTask) -> ChunkResult:
    encoder: Encoder = _JOB["encoder"]
    convert: Convert = _JOB["convert"]
    skip: frozenset[str] = _JOB["skip"]  # sample ids an earlier export already holds (append)
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = ChunkResult(task.index, folder)
    # Bad records are collected here and reported by the parent, in store order; "error" still stops at once.
    rejections = Rejections("error" if encoder.cfg.on_bad_records == "error" else "skip")
    json_parts = {s: result.json_part(s).open("wb") for s in encoder.split_names}
    jsonl_parts = {s: result.jsonl_part(s).open("wb") for s in encoder.split_names}
    digests = {s: hashlib.sha256() for s in encoder.split_names}
    arrow = _ArrowParts(encoder, folder, _JOB["batch_rows"]) if encoder.specs else None
    try:
        current = [task.start]

        def records():
            for offset, path in enumerate(task.files):
                current[0] = task.start + offset
                yield from iter_file(path)

        for sample, record in iter_samples(records(), convert, rejections):
            if sample.sample_id in skip or sample.sample_id in task.exclude:
                continue
            data = sample.to_dict()
            split = encoder.split_of(data)
            row = encoder.row(data)
            count = result.samples.get(split, 0)
            json_parts[split].write((ITEM_SEPARATOR if count else b"") + pretty_item(row))
            line = dumps_line(row)
            jsonl_parts[split].write(line)
            digests[split].update(line)
            result.samples[split] = count + 1
            result.stats.add(data, split)
            if arrow is not None:
                arrow.add(data, split)
            record_id = record.data.get("interaction_id")
            result.kept.append(
                Kept(sample.sample_id, current[0], record.where, record_id if isinstance(record_id, str) else None)
            )
    finally:
        for part in (*json_parts.values(), *jsonl_parts.values()):
            part.close()
        if arrow is not None:
            result.tables = arrow.close()
    result.bad, result.warnings = rejections.bad, rejections.warnings
    result.jsonl_sha256 = {split: digest.hexdigest() for split, digest in digests.items()}
    return result


def run_chunks(
    files: list[str],
    staging: Path,
    encoder: Encoder,
    convert: Convert,
    *,
    skip: frozenset[str],
    num_proc: int = 1,
    batch_rows: int | None = None,
) -> Iterator[tuple[ChunkTask, ChunkResult]]:
    """Chunk results in store order. Workers are forked, so a custom collector need not be importable."""
    from . import shards

    _JOB.update(encoder=encoder, convert=convert, skip=skip, batch_rows=batch_rows or shards.BATCH_ROWS)
    tasks = [
        ChunkTask(index, start, files[start : start + CHUNK_FILES], str(staging / f"{index:06d}"))
        for index, start in enumerate(range(0, len(files), CHUNK_FILES))
    ]
    if num_proc <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, encode_chunk(task)
        return
    with multiprocessing.get_context("fork").Pool(min(num_proc, len(tasks))) as pool:
        yield from zip(tasks, pool.imap(encode_chunk, tasks))
