"""Parquet shards written by workers: the parent plans, the workers write.

With worker processes (`chunks.LocalRunner`) or Ray tasks (`ray_engine.RayRunner`) each chunk leaves one Arrow IPC
file per config and split, and the sizes of its rows (`shards.row_sizes`, computed in the worker). The parent
takes the chunks in store order and, for each (config, split), runs the same shard plan as `ParquetSplitWriter`
does (`shards.ShardPlan`): when a shard's rows are all known, it hands the shard — which rows of which files — to
the runner, and a worker writes it (`shards.write_shard`). So the parent never encodes Parquet, the cuts and the
bytes are those of a one-process export, and several shards are written at once.

A chunk's Arrow file is removed once every shard that reads it is written, so the staging folder holds about
one shard's rows per config and split (plus the chunks in flight), not the store's. Rows that arrive as tables
(an append's earlier rows, samples added one at a time) are first written to an Arrow file of their own.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ..schema import arrow_schema
from .parquet import (
    ShardPiece,
    ShardPlan,
    ShardSpec,
    ShardWritten,
    commit_shards,
    final_names,
    row_sizes,
)


class ShardRunner(Protocol):
    """What writes the planned shards: `run.local.LocalRunner` or `run.ray_runner.RayRunner`."""

    def submit_shard(self, spec: ShardSpec) -> Any: ...

    def ready(self, handle: Any) -> bool: ...

    def result(self, handle: Any, what: str) -> Any: ...


class PlannedSplitWriter:
    """All shards of one (config, split) in `folder`, planned here and written by `runner`'s workers; the same
    interface and outputs as `shards.ParquetSplitWriter`."""

    def __init__(
        self,
        folder: Path,
        split: str,
        config: str,
        specs: dict[str, Any],
        runner: ShardRunner,
        spill: Path,
        max_shard_bytes: int | None = None,
        row_group_rows: int | None = None,
    ):
        self.folder, self.split, self.config, self.runner = folder, split, config, runner
        folder.parent.mkdir(parents=True, exist_ok=True)  # here: a worker makes only the config's folder in it
        self.schema = arrow_schema(specs)
        self.plan = ShardPlan(max_shard_bytes, row_group_rows)
        self.spill_folder = spill  # for rows that arrive as tables
        self.spill: pa.ipc.RecordBatchFileWriter | None = None
        self.spill_path: Path | None = None
        self.spill_sizes: list[np.ndarray] = []
        self.spills = 0
        self.rows = 0  # rows added
        self.open: list[tuple[str, int, int]] = []  # files with rows of the open shard: (path, first row, stop row)
        self.readers: dict[str, int] = {}  # file -> shards not yet written that read it
        self.pending: list[tuple[ShardSpec, Any]] = []  # shards handed to the runner, not yet written
        self.written: dict[int, ShardWritten] = {}
        self.shards = 0  # planned
        self.final: list[Path] | None = None

    @property
    def num_examples(self) -> int:
        return sum(shard.rows for shard in self.written.values())

    @property
    def num_bytes(self) -> int:
        return sum(shard.nbytes for shard in self.written.values())

    @property
    def temps(self) -> list[Path]:
        return [Path(self.written[index].path) for index in range(self.shards)]

    def add_table(self, table: pa.Table) -> None:
        """Rows in memory: into this split's spill file, planned when the next file comes (or at `close`)."""
        if not table.num_rows:
            return
        if self.spill is None:
            self.spill_folder.mkdir(parents=True, exist_ok=True)
            self.spill_path = self.spill_folder / f"{self.config}.{self.split}.{self.spills:06d}.arrow"
            self.spills += 1
            self.spill = pa.ipc.new_file(self.spill_path, table.schema)
        self.spill.write_table(table)
        self.spill_sizes.append(row_sizes(table))

    def _end_spill(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None
            self._add(str(self.spill_path), np.concatenate(self.spill_sizes))
            self.spill_sizes = []

    def add_file(self, path: Path, sizes: np.ndarray) -> None:
        """A chunk's Arrow file of this split's rows, with their sizes; this writer removes it when done with it."""
        self._end_spill()
        self._add(str(path), sizes)

    def _add(self, path: str, sizes: np.ndarray) -> None:
        if not len(sizes):
            Path(path).unlink(missing_ok=True)
            return
        self.open.append((path, self.rows, self.rows + len(sizes)))
        self.readers[path] = self.readers.get(path, 0) + 1  # the open shard reads it
        self.rows += len(sizes)
        for start, stop in self.plan.add(sizes):
            self._submit(start, stop)
        self.collect(wait=False)

    def _submit(self, start: int, stop: int) -> None:
        pieces = tuple(
            ShardPiece(path, max(start, first) - first, min(stop, last) - first)
            for path, first, last in self.open
            if first < stop and last > start
        )
        spec = ShardSpec(self.config, self.split, self.shards, str(self.folder), pieces, self.plan.row_group_rows)
        self.shards += 1
        for piece in pieces:
            self.readers[piece.path] += 1  # the shard reads it ...
        still_open = []
        for path, first, last in self.open:
            if last > stop:
                still_open.append((path, first, last))
            else:
                self._release(path)  # ... and the open shard no longer does
        self.open = still_open
        self.pending.append((spec, self.runner.submit_shard(spec)))

    def _release(self, path: str) -> None:
        self.readers[path] -= 1
        if not self.readers[path]:
            del self.readers[path]
            Path(path).unlink(missing_ok=True)

    def collect(self, wait: bool) -> None:
        """Take the shards written (with `wait`, all of them), and remove the files no shard still needs."""
        still = []
        for spec, handle in self.pending:
            if wait or self.runner.ready(handle):
                written = self.runner.result(handle, f"shard {spec.index} of {self.config}/{self.split}")
                self.written[spec.index] = written
                for piece in spec.pieces:
                    self._release(piece.path)
            else:
                still.append((spec, handle))
        self.pending = still

    def plan_last(self) -> None:
        """Hand the last shard to the runner (without waiting for it: the last shards of every split are then
        written at once)."""
        self._end_spill()
        for start, stop in self.plan.finish():
            self._submit(start, stop)
        for path, _first, _last in self.open:
            self._release(path)
        self.open = []

    def close(self) -> list[Path]:
        """Plan the last shard, wait for every shard to be written; the names `commit()` will give."""
        if self.final is None:
            self.plan_last()
            self.collect(wait=True)
            if self.num_examples != self.rows:  # the plan and the workers disagree: never commit that
                raise RuntimeError(
                    f"{self.config}/{self.split}: {self.rows} rows planned, {self.num_examples} written to shards"
                )
            self.final = final_names(self.folder, self.split, self.shards)
        return self.final

    def commit(self) -> list[Path]:
        return commit_shards(self.folder, self.split, self.temps, self.close())

    def abort(self) -> None:
        """The shards stay in the staging folder, which the export's abort removes; the runner stops the workers."""
        if self.spill is not None:
            with contextlib.suppress(OSError):  # its footer, which a full disk refuses: never raise here
                self.spill.close()
            self.spill = None
        self.pending = []

