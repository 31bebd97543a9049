"""What runs a job's chunks and an export's Parquet shards: the `Runner` protocol, the in-process runner, and the
choice between them and the others (`local.LocalRunner`'s worker processes, `ray_runner.RayRunner`'s Ray tasks).

Every runner gives the same chunk results in store order and the same shards, so the outputs do not depend on which
one ran: only the time and the memory do. A run always has a runner: one with no worker is `InProcess`, not a
special case of the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..config import RunOptions
from ..measure.seen import SeenIds
from ..write.background import Background
from ..write.parquet import ParquetSplitWriter
from .chunks import ChunkJob, ChunkResult, ChunkTask, encode_chunk


class IdIndex(Protocol):
    """The sample ids kept so far, and where each was first read (`measure.seen.SeenIds`, or Ray's actors)."""

    answers_later: bool  # True: take an answer once the next chunk is in, so that its round trip overlaps that wait

    def ask(self, high: np.ndarray, low: np.ndarray, locations: np.ndarray) -> Callable[[], np.ndarray]: ...


class SplitWriter(Protocol):
    """The Parquet shards of one (config, split): `write.parquet.ParquetSplitWriter` or
    `write.planned_shards.PlannedSplitWriter`."""

    def add_table(self, table: Any) -> None: ...

    def add_file(self, path: Path, sizes: np.ndarray) -> None: ...

    def plan_last(self) -> None: ...

    def close(self) -> list[Path]: ...

    def commit(self) -> list[Path]: ...

    def abort(self) -> None: ...


class Runner(Protocol):
    """Runs the chunks of a job, in store order, and writes an export's shards. A context manager: leaving it on an
    error stops whatever still runs."""

    def __enter__(self) -> "Runner": ...

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None: ...

    def chunks(self, job: ChunkJob, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, ChunkResult]]:
        """(task, its result) for every task, in the order given."""

    def id_index(self) -> IdIndex:
        """An empty index of kept sample ids, where this runner keeps it."""

    def split_writer(self, folder: Path, split: str, config: str, specs: dict[str, Any], spill: Path) -> SplitWriter:
        """The writer of one (config, split)'s shards in `folder`; rows that arrive as tables may wait in `spill`."""

    background: Background | None  # the thread this process's writes run on, in order (None: they run inline)


class InProcess:
    """A runner without workers: each chunk encoded here, in memory, when its turn comes; each shard written here as
    its rows arrive, on a thread of its own (`write.background`) so that the writing overlaps the encoding (the
    export's JSON files are written there too: `write.exporter.SplitFiles`). Use it as a context manager: leaving it
    ends that thread."""

    def __init__(self, options: RunOptions):
        self.options = options
        self.background = Background()

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self.background.close(raise_error=kind is None)

    def chunks(self, job: ChunkJob, tasks: Sequence[ChunkTask]) -> Iterator[tuple[ChunkTask, ChunkResult]]:
        return ((task, encode_chunk(job, task, in_memory=True)) for task in tasks)

    def id_index(self) -> SeenIds:
        return SeenIds()

    def split_writer(
        self, folder: Path, split: str, config: str, specs: dict[str, Any], spill: Path
    ) -> ParquetSplitWriter:
        options = self.options
        return ParquetSplitWriter(
            folder, split, specs, options.max_shard_bytes, options.row_group_rows, background=self.background
        )


def open_runner(options: RunOptions, tasks: int) -> Runner:
    """The runner of a run of `tasks` chunks: Ray tasks (`engine` "ray"), worker processes (`num_proc` > 1 and more
    than one chunk), or this process."""
    if options.engine == "ray":
        from .ray_runner import RayRunner

        return RayRunner(options)
    if options.num_proc > 1 and tasks > 1:
        from .local import LocalRunner

        return LocalRunner(options, min(options.num_proc, tasks))
    return InProcess(options)


__all__ = ["IdIndex", "InProcess", "Runner", "SplitWriter", "open_runner"]
