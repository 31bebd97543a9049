"""Parquet shards of one config's split, written from Arrow tables (see `tables.py`) with pyarrow.

The Arrow schema is the one the config's `datasets.Features` give (`schema.arrow_schema`), so the shards
carry the `huggingface` schema metadata and `load_dataset`, pandas, polars and duckdb all read the same
types. Tables arrive in batches of any size; they are cut into row groups of exactly `row_group_rows` rows
(the last one shorter), so a shard's bytes depend only on its rows — not on how they were batched (chunks
of a store, worker processes, rows carried over by an append) — and an append that adds nothing rewrites
the same files. A new shard starts past `max_shard_bytes`, so memory stays flat and big stores give
several shards. Shards are renamed to `<split>-<i>-of-<n>.parquet` at commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .config import RunOptions
from .schema import arrow_schema

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


class ParquetSplitWriter:
    """All shards of one (config, split) in `folder`."""

    def __init__(
        self,
        folder: Path,
        split: str,
        specs: dict[str, Any],
        max_shard_bytes: int | None = None,
        row_group_rows: int | None = None,
    ):
        self.folder, self.split = folder, split
        self.schema = arrow_schema(specs)
        self.max_shard_bytes = max_shard_bytes or RunOptions.max_shard_bytes
        self.row_group_rows = row_group_rows or RunOptions.row_group_rows
        self.temps: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.shard_bytes = 0
        self.num_examples = 0
        self.num_bytes = 0  # Arrow bytes, as `dataset_info` reports them
        self.final: list[Path] | None = None
        self.pending: list[pa.Table] = []  # rows not yet in a row group (fewer than row_group_rows)
        self.pending_rows = 0

    def add_table(self, table: pa.Table) -> None:
        """Add a table of this config's schema; full row groups are written as they fill up."""
        if not table.num_rows:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.row_group_rows:
            self._write_pending(self.row_group_rows)

    def _write_pending(self, rows: int) -> None:
        pending = pa.concat_tables(self.pending)
        group, rest = pending.slice(0, rows), pending.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if any(column.num_chunks > 1 for column in group.columns):
            # Pieces of several batches: the writer's page cuts follow the arrays' chunks, so make it one.
            group = group.combine_chunks()
        self._write(group)

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.folder / f".{self.split}-{len(self.temps):05d}.parquet.tmp"
        self.temps.append(temp)
        statistics = [name for name in self.schema.names if name in STATISTICS_COLUMNS]
        self.writer = pq.ParquetWriter(
            temp,
            self.schema,
            write_statistics=statistics,
            use_content_defined_chunking=CDC_OPTIONS,
            write_page_index=True,
        )
        self.writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
        self.shard_bytes = 0

    def _write(self, table: pa.Table) -> None:
        if self.writer is None or self.shard_bytes >= self.max_shard_bytes:
            self._close_shard()
            self._open()
        self.writer.write_table(table)
        self.shard_bytes += table.nbytes
        self.num_examples += table.num_rows
        self.num_bytes += table.nbytes

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> list[Path]:
        """Finish writing (the shards keep their temporary names); returns the names `commit()` will give.

        An empty split gets no shard at all: `datasets` cannot read a Parquet file without rows, so the
        folder's card leaves that split out.
        """
        if self.final is None:
            if self.pending_rows:
                self._write_pending(self.pending_rows)
            self._close_shard()
            self.final = [self.folder / shard_name(self.split, i, len(self.temps)) for i in range(len(self.temps))]
        return self.final

    def commit(self) -> list[Path]:
        """Rename the shards into place; shards of an earlier run that this run does not rewrite are removed."""
        final = self.close()
        for temp, path in zip(self.temps, final):
            os.replace(temp, path)
        for old in self.folder.glob(f"{self.split}-*-of-*.parquet"):
            if old not in final:
                old.unlink()
        return final

    def abort(self) -> None:
        self.pending, self.pending_rows = [], 0
        self._close_shard()
        for temp in self.temps:
            temp.unlink(missing_ok=True)
