"""Parquet shards of one config's split, written from Arrow tables (see `tables.py`) with pyarrow.

The Arrow schema is the one the config's `datasets.Features` give (`schema.arrow_schema`), so the shards
carry the `huggingface` schema metadata and `load_dataset`, pandas, polars and duckdb all read the same
types. Tables arrive in batches of any size; they are cut into row groups of exactly `row_group_rows` rows
(the last one shorter, `RowGroups`), so a shard's bytes depend only on its rows — not on how they were batched
(chunks of a store, worker processes, rows carried over by an append) — and an append that adds nothing
rewrites the same files.

Where a shard ends is decided from the sizes of its rows alone (`row_sizes`, `ShardPlan`): a new shard starts
after the row group that takes it past `max_shard_bytes`. So the cuts can be planned from each chunk's sizes
before any shard is written, and a shard can be written by any process: `ParquetSplitWriter` writes a split's
shards as its rows arrive (one process), `write_shard` writes one planned shard from the chunks' Arrow files (a
worker process or a Ray task, see `chunks.ShardWork`). Shards are renamed to `<split>-<i>-of-<n>.parquet` at commit.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import RunOptions
from ..schema import arrow_schema
from .background import Background

# Min/max statistics only where they can prune a row group: ids, enums and numbers. pyarrow writes them for every
# column by default (as `Dataset.to_parquet` does); for free text they are whole messages, repeated in every page
# header and in the footer. Measured on the `full` config of 20k interactions: footers 62% smaller (84 -> 32 KB
# per 20 row groups; the writer holds them in memory until a shard closes), files 3% (train) to 14% (test) smaller.
STATISTICS_COLUMNS = ("sample_id", "persona_id", "num_turns", "variant", "noise_type")
# Content-defined chunking of data pages, with the parameters `datasets` writes Parquet with (datasets 5:
# `config.DEFAULT_CDC_OPTIONS`, used by `arrow_writer.ParquetWriter` and `io/parquet.py`), and its page index:
# page cuts then follow the content, so after an append the Hub's Xet storage finds the unchanged pages of a
# shard and uploads only the rest. The options go into the file's metadata under the same key as `datasets`'.
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def temp_name(split: str, index: int) -> str:
    return f".{split}-{index:05d}.parquet.tmp"


def row_sizes(table: pa.Table) -> np.ndarray:
    """Each row's bytes as Arrow lays its values out (value bytes, 4 per offset of a string or list; validity
    bitmaps left out): a function of the row's values only, so a row has the same size however the rows were
    batched and wherever they were read back from (a chunk's Arrow file, an earlier export's Parquet shard).
    Summed over a table it is within its bitmaps of `table.nbytes`."""
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        sizes += np.concatenate([_value_sizes(chunk) for chunk in column.chunks]) if column.num_chunks else 0
    return sizes


def _value_sizes(array: pa.Array) -> np.ndarray:
    kind = array.type
    if isinstance(kind, pa.BaseExtensionType):  # arrow.json (datasets' Json) and the like: their storage
        return _value_sizes(array.storage)
    if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind):
        lengths = pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return lengths + 4
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        values = _value_sizes(array.flatten())
        return np.bincount(parents, weights=values, minlength=len(array)).astype(np.int64) + 4
    if pa.types.is_struct(kind):
        sizes = np.zeros(len(array), dtype=np.int64)
        for field_values in array.flatten():
            sizes += _value_sizes(field_values)
        return sizes
    if pa.types.is_null(kind):
        return np.zeros(len(array), dtype=np.int64)
    if not pa.types.is_primitive(kind):
        raise TypeError(f"row_sizes: no size for Arrow type {kind}")
    return np.full(len(array), max(1, kind.bit_width // 8), dtype=np.int64)  # fixed width: numbers, booleans


class ShardPlan:
    """Where one (config, split)'s shards end, from its rows' sizes in order: a shard closes after the row group
    (of `row_group_rows` rows) that takes it to `max_shard_bytes`; the last one at `finish`."""

    def __init__(self, max_shard_bytes: int | None = None, row_group_rows: int | None = None):
        self.max_shard_bytes = max_shard_bytes or RunOptions.max_shard_bytes
        self.row_group_rows = row_group_rows or RunOptions.row_group_rows
        self.rows = 0  # rows planned
        self.start = 0  # the first row of the open shard
        self.shard_bytes = 0  # of its complete row groups
        self.group_bytes = 0  # of the rows of its open row group

    def add(self, sizes: np.ndarray) -> list[tuple[int, int]]:
        """Plan the next rows (their sizes); returns the shards this closes, as (first row, row after the last)."""
        closed = []
        position, group = 0, self.row_group_rows
        while position < len(sizes):
            take = min(group - self.rows % group, len(sizes) - position)
            self.group_bytes += int(sizes[position : position + take].sum())
            self.rows += take
            position += take
            if self.rows % group == 0:
                self.shard_bytes += self.group_bytes
                self.group_bytes = 0
                if self.shard_bytes >= self.max_shard_bytes:
                    closed.append((self.start, self.rows))
                    self.start, self.shard_bytes = self.rows, 0
        return closed

    def finish(self) -> list[tuple[int, int]]:
        """The last shard (none when every row is in a closed one)."""
        if self.rows == self.start:
            return []
        closed, self.start = [(self.start, self.rows)], self.rows
        return closed


class RowGroups:
    """Tables of any size in, row groups of exactly `rows` rows out (the last one shorter), as slices of the tables
    (a group made of pieces of several tables is combined by `ShardFile.write`, where it is written)."""

    def __init__(self, rows: int):
        self.rows = rows
        self.pending: list[pa.Table] = []  # rows not yet in a row group (fewer than `rows`)
        self.pending_rows = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        """The row groups `table` completes."""
        if not table.num_rows:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.rows:
            yield self._take(self.rows)

    def rest(self) -> Iterator[pa.Table]:
        """The last, shorter group, if rows are left."""
        if self.pending_rows:
            yield self._take(self.pending_rows)

    def _take(self, rows: int) -> pa.Table:
        pending = pa.concat_tables(self.pending)
        group, rest = pending.slice(0, rows), pending.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        return group


class ShardFile:
    """One Parquet shard, under its temporary name until `ParquetSplitWriter.commit` renames it."""

    def __init__(self, folder: Path, split: str, index: int, schema: pa.Schema, parents: bool = True):
        folder.mkdir(parents=parents, exist_ok=True)
        self.path = folder / temp_name(split, index)
        statistics = [name for name in schema.names if name in STATISTICS_COLUMNS]
        self.writer = pq.ParquetWriter(
            self.path,
            schema,
            write_statistics=statistics,
            use_content_defined_chunking=CDC_OPTIONS,
            write_page_index=True,
        )
        self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
        self.rows = 0
        self.nbytes = 0  # Arrow bytes, as `dataset_info` reports them

    def write(self, group: pa.Table) -> None:
        """Write a row group. One made of pieces of several tables is combined into one array per column first: the
        writer's page cuts follow the arrays' chunks, so a group's bytes depend on its rows only. Combined here, on
        the writes thread when there is one (`write.background`; pyarrow copies without the GIL), not by the
        caller, whose thread is the export's critical path (docs/performance.md, "Row groups combined")."""
        if any(column.num_chunks > 1 for column in group.columns):
            group = group.combine_chunks()
        self.writer.write_table(group)
        self.rows += group.num_rows
        self.nbytes += group.nbytes

    def close(self) -> None:
        self.writer.close()


class ParquetSplitWriter:
    """All shards of one (config, split) in `folder`, written in this process as the rows arrive: inline, or on the
    thread of `background` (shared by a run's writers; the same calls in the same order, so the same bytes)."""

    def __init__(
        self,
        folder: Path,
        split: str,
        specs: dict[str, Any],
        max_shard_bytes: int | None = None,
        row_group_rows: int | None = None,
        background: Background | None = None,
    ):
        self.folder, self.split, self.background = folder, split, background
        self.schema = arrow_schema(specs)
        self.plan = ShardPlan(max_shard_bytes, row_group_rows)
        self.groups = RowGroups(self.plan.row_group_rows)
        self.ends: list[int] = []  # rows after which a planned shard ends, not yet reached
        self.shards: list[ShardFile] = []  # every shard begun, under its temporary name
        self.shard: ShardFile | None = None
        self.num_examples = 0
        self.final: list[Path] | None = None

    @property
    def num_bytes(self) -> int:
        """Arrow bytes, as `dataset_info` reports them: of the row groups as the shards wrote them (combined), so
        final once `close` has returned."""
        return sum(shard.nbytes for shard in self.shards)

    def add_table(self, table: pa.Table) -> None:
        """Add a table of this config's schema; full row groups are written as they fill up."""
        if not table.num_rows:
            return
        self.ends += [stop for _start, stop in self.plan.add(row_sizes(table))]
        for group in self.groups.add(table):
            self._write(group)

    def _write(self, group: pa.Table) -> None:
        if self.shard is None:
            self.shard = ShardFile(self.folder, self.split, len(self.shards), self.schema)
            self.shards.append(self.shard)
        self._run(self.shard.write, group, nbytes=group.nbytes)
        self.num_examples += group.num_rows
        if self.ends and self.num_examples == self.ends[0]:
            self.ends.pop(0)
            self._close_shard()

    def _close_shard(self) -> None:
        if self.shard is not None:
            self._run(self.shard.close)
            self.shard = None

    def _run(self, write, *args, nbytes: int = 0) -> None:
        if self.background is None:
            write(*args)
        else:
            self.background.submit(write, *args, nbytes=nbytes)

    def plan_last(self) -> None:
        """Nothing to do here (`shardwork.PlannedSplitWriter` hands its last shard to a worker)."""

    def close(self) -> list[Path]:
        """Finish writing (the shards keep their temporary names); returns the names `commit()` will give.

        An empty split gets no shard at all: `datasets` cannot read a Parquet file without rows, so the
        folder's card leaves that split out.
        """
        if self.final is None:
            self.ends += [stop for _start, stop in self.plan.finish()]
            for group in self.groups.rest():
                self._write(group)
            self._close_shard()
            if self.background is not None:
                self.background.wait()
            self.final = final_names(self.folder, self.split, len(self.shards))
        return self.final

    def commit(self) -> list[Path]:
        """Rename the shards into place; shards of an earlier run that this run does not rewrite are removed."""
        return commit_shards(self.folder, self.split, [shard.path for shard in self.shards], self.close())

    def abort(self) -> None:
        """Drop the shards. Never raises: closing a shard writes its footer, which a full disk refuses."""
        self.groups = RowGroups(self.plan.row_group_rows)
        if self.background is not None:  # its writes to these files finished (or failed) before they are removed
            with contextlib.suppress(Exception):
                self.background.wait()
            self.background = None
        with contextlib.suppress(OSError):
            self._close_shard()
        self.shard = None
        for shard in self.shards:
            with contextlib.suppress(OSError):
                shard.path.unlink(missing_ok=True)


def final_names(folder: Path, split: str, count: int) -> list[Path]:
    return [folder / shard_name(split, index, count) for index in range(count)]


def commit_shards(folder: Path, split: str, temps: list[Path], final: list[Path]) -> list[Path]:
    for temp, path in zip(temps, final):
        os.replace(temp, path)
    for old in folder.glob(f"{split}-*-of-*.parquet"):
        if old not in final:
            old.unlink()
    return final


@dataclass(frozen=True)
class ShardPiece:
    """Rows [start, stop) of a chunk's Arrow IPC file (`chunks.PartFiles`)."""

    path: str
    start: int
    stop: int


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: its config, split and index, the folder it goes to, and its rows, piece by piece."""

    config: str
    split: str
    index: int
    folder: str
    pieces: tuple[ShardPiece, ...]
    row_group_rows: int


@dataclass(frozen=True)
class ShardWritten:
    path: str  # its temporary name
    rows: int
    nbytes: int


def iter_pieces(pieces: Iterable[ShardPiece]) -> Iterator[pa.Table]:
    """The rows of the pieces, as the record batches of their files (sliced at the pieces' ends)."""
    for piece in pieces:
        with pa.memory_map(piece.path) as source:
            reader = pa.ipc.open_file(source)
            first = 0
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                last = first + batch.num_rows
                if last > piece.start and first < piece.stop:
                    low, high = max(piece.start, first) - first, min(piece.stop, last) - first
                    yield pa.Table.from_batches([batch.slice(low, high - low)])
                first = last


def write_shard(spec: ShardSpec, specs: dict[str, Any]) -> ShardWritten:
    """Write one planned shard (any process that sees the staging folder): the same row groups, and so the same
    bytes, as `ParquetSplitWriter` writes for those rows. A second run (a retried task) rewrites the same file.
    The folder's parent must exist (the parent process made it): a task still running after its export was stopped
    and its staging folder removed fails, instead of making the folder again."""
    schema = arrow_schema(specs)
    groups = RowGroups(spec.row_group_rows)
    shard = ShardFile(Path(spec.folder), spec.split, spec.index, schema, parents=False)
    try:
        for table in iter_pieces(spec.pieces):
            for group in groups.add(table):
                shard.write(group)
        for group in groups.rest():
            shard.write(group)
    finally:
        shard.close()
    return ShardWritten(str(shard.path), shard.rows, shard.nbytes)
