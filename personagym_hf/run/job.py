"""Runs over a whole interaction store: read -> collect -> split -> every output.

- `encode_store`: the store's chunks encoded (`encode.encode`) by a runner (`runner.py`: this process, worker
  processes, Ray tasks) and taken in store order, with the keep-the-first rule for ids repeated across chunks and
  every rejection reported in order: the one loop the runs below go through.
- `export_store`: what `personagym-hf export` runs: one streaming pass over the store (memory does not grow with its
  size), a progress bar over its files, the bad-record policy with a `rejected.jsonl` report, and merged token
  usage. With `on_bad_records: error` the first bad record stops the run; a run that fails in any way (a bad record
  under `error`, a full disk, a kill) leaves the output folder as it was.
- `scan_store`: the same run without outputs (validate, stats, the audits of a store); `assign_store`: the splits'
  pre-pass (each group's split before any sample's, `transform/assign.py`).
"""

from __future__ import annotations

import errno
import logging
import math
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from ..config import ExportConfig, RunOptions
from ..read.plan import chunk_files_count
from ..read.store import BadRecord, Record, discover_paths, iter_file, token_usage_files
from ..read.token_usage import merge_token_usage
from ..request import ExportRequest
from ..transform.policy import BadInputError, Convert, Rejections, place
from ..write.exporter import Exporter, ExportResult, open_destination, stamped_name
from ..write.folder import OutputError
from ..write.manifest import collector_name

if TYPE_CHECKING:
    from ..transform.assign import Assignment
    from .runner import Runner

logger = logging.getLogger(__name__)

INTERACTION_LAYOUTS = (
    "upstream InteractionStorage files (*.json, one interaction each), JSON Lines (*.jsonl), JSON arrays (*.json), "
    "or .gz of any of them, in the folder and its subfolders"
)


class NoInteractionsError(FileNotFoundError):
    """A store with nothing to export."""


class AllRejected(BadInputError):
    """Every record of a store was bad: `summary` says how many and the first reason; the message adds the command
    that lists them (the command line gives its own, with the options it ran with)."""

    def __init__(self, stores: Sequence[str | Path], bad: Sequence[BadRecord]):
        where = ", ".join(map(str, stores))
        self.summary = f"all {len(bad)} records of {where} were rejected (the first: {bad[0].describe()})"
        validate = f"personagym-hf validate --interactions {shlex.quote(str(stores[0]))}" if len(stores) == 1 else None
        super().__init__(f"{self.summary}; run `{validate}` to list them" if validate else self.summary)


@dataclass
class StoreExport:
    result: ExportResult
    rejections: Rejections
    files_read: int
    rejected_report: Path | None


def progress(iterable: Iterable | None, *, total: int | None, desc: str, enabled: bool, unit: str = "file"):
    """A progress bar over `iterable` (or one to `update()` by hand when it is None); off: the iterable itself."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def iter_store(
    paths: str | Path | Iterable[str | Path], *, show_progress: bool = False
) -> Iterator[Record | BadRecord]:
    files = discover_paths(paths)
    for path in progress(files, total=len(files), desc="Reading interactions", enabled=show_progress):
        yield from iter_file(path)


def assign_store(
    files: Sequence[str],
    cfg: ExportConfig,
    convert: Convert,
    runner: "Runner",
    options: RunOptions,
    earlier: dict | None = None,
) -> "Assignment | None":
    """The splits' pre-pass: every kept sample's group keys (`assign.KeyCounts`, the same samples as the export's
    pass: bad records and repeated ids left out), then each group's split (`assign.resolve`); `earlier`: the
    assignment of the export appended to (the manifest's), whose groups stay where they are. None for a mode that
    splits sample by sample (`encode.needs_assignment`). Bad records are left to the normal pass, which reports
    them."""
    from ..transform.assign import KEY_FIELDS, KeyCounts, resolve
    from ..transform.encode import Encoder, needs_assignment
    from .chunks import ChunkJob, plan_tasks

    if not needs_assignment(cfg):
        return None
    # Bad records do not stop the pre-pass, even under "error": the normal pass reports them in store order.
    encoder = Encoder(replace(cfg, on_bad_records="skip"), split=False, views=False, fields=KEY_FIELDS)
    job = ChunkJob(files, encoder, convert, outputs="keys")
    counts = KeyCounts()
    bar = progress(None, total=len(files), desc="Grouping", enabled=options.show_progress)
    try:
        for task, chunk in encode_store(job, plan_tasks(files, options), runner, Rejections("skip")):
            counts.merge(chunk.keys)
            if bar is not None:
                bar.update(chunk_files_count(task.chunk))
    finally:
        if bar is not None:
            bar.close()
    return resolve(counts, cfg.split_by, cfg.split_assignment, cfg.ratios, cfg.seed, earlier)


def encode_store(job, tasks, runner: "Runner", rejections: Rejections) -> Iterator:
    """The chunks' results, by `runner`, with the keep-the-first rule across chunks: (task, chunk result) in store
    order, every chunk free of the ids an earlier chunk kept (`ChunkResult.firsts` says where those were first
    read), and every chunk's bad records, duplicates and warnings given to `rejections` in store order. The one
    loop every run over a whole store goes through: the export, validate and stats, the pre-passes."""
    import numpy as np

    from ..measure.seen import digests, pack_location, unpack_location
    from .chunks import encode_chunk

    files = job.files
    # Where each kept sample_id was first read, across chunks: the only per-record state of a run (packed; on Ray,
    # in actors of the cluster). A chunk's ids go to the index as soon as the chunk is in; an index that answers
    # later (Ray's) is asked for the answer once the next chunk is in, so that its round trip overlaps that wait.
    index = runner.id_index()

    def finish(task, chunk, kept, answer):
        firsts = {sample.sample_id: first for sample, first in zip(kept, answer().tolist()) if first >= 0}
        if firsts:  # ids an earlier chunk had (the index added only the others): encode the chunk without them
            chunk.discard()
            chunk = encode_chunk(job, task, in_memory=True, earlier=firsts.keys())
            if len(chunk.encoded.kept) != len(kept) - len(firsts):
                raise RuntimeError(f"chunk {task.index} kept other samples when encoded again: a bug, please report")
        encoded = chunk.encoded
        for duplicate in encoded.duplicates:
            file, where = unpack_location(firsts[duplicate.sample_id])
            chunk.firsts[duplicate.sample_id] = place(files[file], where)
        encoded.report(rejections, chunk.firsts)
        return task, chunk

    waiting = None
    for task, chunk in runner.chunks(job, tasks):
        kept = chunk.encoded.kept
        position = {files[number]: number for number in task.files()}
        locations = np.array([pack_location(position[sample.source], sample.where) for sample in kept], np.int64)
        answer = index.ask(*digests(sample.sample_id for sample in kept), locations)
        if waiting is not None:
            yield finish(*waiting)
        waiting = task, chunk, kept, answer
        if not index.answers_later:
            yield finish(*waiting)
            waiting = None
    if waiting is not None:
        yield finish(*waiting)


def scan_store(
    interactions: str | Path | Iterable[str | Path],
    cfg: ExportConfig,
    convert: Convert,
    rejections: Rejections,
    *,
    rows: bool = False,
    options: RunOptions = RunOptions(),
) -> Iterator:
    """The export's run over a store without its outputs (validate, stats, the audits of a store): chunk results
    in store order, each with its `encoded` statistics and, with `rows`, its rows as an export writes them, with
    their split (`ChunkResult.rows`); the same samples, splits (after the grouping pre-pass of `split_by:
    persona_and_query`) and rejections as the export."""
    from ..transform.encode import Encoder
    from .chunks import ChunkJob, plan_tasks
    from .runner import open_runner

    files = store_files(interactions)
    tasks = plan_tasks(files, options)
    bar = None
    try:
        with open_runner(options, len(tasks)) as runner:
            assignment = assign_store(files, cfg, convert, runner, options)
            encoder = Encoder(cfg, split=True, views=False, assignment=assignment, options=options)
            job = ChunkJob(files, encoder, convert, outputs="rows" if rows else "none")
            bar = progress(None, total=len(files), desc="Reading interactions", enabled=options.show_progress)
            for task, chunk in encode_store(job, tasks, runner, rejections):
                yield chunk
                if bar is not None:
                    bar.update(chunk_files_count(task.chunk))
    finally:
        if bar is not None:
            bar.close()


def store_files(interactions: str | Path | Iterable[str | Path]) -> Sequence[str]:
    """The store's files (`store.discover_paths`), or `NoInteractionsError` saying what was looked for."""
    files = discover_paths(interactions)
    if not len(files):
        raise NoInteractionsError(
            f"no interaction files found in {_store_name(interactions)}; looked for {INTERACTION_LAYOUTS}"
        )
    return files


def _store_name(interactions: str | Path | Iterable[str | Path]) -> str:
    if isinstance(interactions, (str, Path)):
        return str(interactions)
    return ", ".join(map(str, interactions))


def _disk_full(output_dir: Path, staged: int, done: float) -> OutputError:
    needed = staged / max(done, 0.01) if done < 1 else staged
    return OutputError(
        f"no space left on device writing {output_dir} (needed ~{max(1, math.ceil(needed / 1e6))} MB); free some "
        "space or choose another --output (the earlier export there is unchanged)",
        errno.ENOSPC,
    )


def export_store(request: ExportRequest, convert: Convert) -> StoreExport:
    """Export a whole store as `request` says (`request.ExportRequest`), converting records with `convert`. Chunks
    of files are encoded by the runner the request's `run` options choose (this process, worker processes, Ray
    tasks): the outputs are the same bytes whichever runs. Either the whole export is written, or the output folder
    is left as it was."""
    import gc

    from ..measure.leakage import resolve_mode
    from ..transform.encode import Encoder
    from .chunks import ChunkJob, plan_tasks
    from .runner import open_runner

    options, cfg, output_dir = request.run, request.settings, request.output
    files = store_files(request.stores)  # packed: this list has an entry per file of the store
    tokenizer = None
    if request.measures.tokenizer is not None:  # loaded before the output folder is locked: errors cost nothing
        from ..measure.tokens import Tokenizer, load_tokenizer

        tokenizer = request.measures.tokenizer
        if not isinstance(tokenizer, Tokenizer):
            tokenizer = load_tokenizer(tokenizer, request.measures.chat_template)
    audit = resolve_mode(request.measures.audit)
    rejections = Rejections(cfg.on_bad_records)
    destination = open_destination(request, collector_name(convert))
    folder, layout, exporter = destination.folder, destination.layout, None
    staging = folder.staging / ".chunks"  # workers' part files: inside the transaction, never beside it
    bar = progress(None, total=len(files), desc="Exporting", enabled=options.show_progress)
    done = 0.0  # share of the chunks written, for the space a full disk needed

    # What is alive now (imported modules: pyarrow, pandas, huggingface_hub; ~10^5 objects) stays alive for the
    # whole run. Frozen, the garbage collector stops rescanning it in every full collection; forked workers
    # inherit the frozen state.
    gc.freeze()
    try:
        tasks = plan_tasks(files, options, staging)
        # Made here, not by the workers: a Ray node that cannot see it has no shared folder, and a task still running
        # after the export stopped (and removed it) fails instead of making it again.
        staging.mkdir(parents=True, exist_ok=True)
        # The runner lives until the export is finished: its workers write the last shards in `finish`.
        with open_runner(options, len(tasks)) as runner:
            assignment = None
            if layout.split:  # every group's split before any sample's (a pre-pass, for most modes)
                earlier = destination.earlier.manifest.assignment if destination.earlier is not None else None
                assignment = assign_store(files, cfg, convert, runner, options, earlier)
            encoder = Encoder(cfg, layout.split, layout.hf_dataset, audit, assignment=assignment, options=options)
            exporter = Exporter(destination, request, encoder, runner, tokenizer)
            job = ChunkJob(files, encoder, convert, exporter.skip)
            for task, chunk in encode_store(job, tasks, runner, rejections):
                exporter.add_chunk(chunk)
                done = (task.index + 1) / len(tasks)
                if bar is not None:
                    bar.update(chunk_files_count(task.chunk))
            if rejections.bad and not exporter.result.new_samples and not exporter.result.kept_samples:
                raise AllRejected(request.stores, rejections.bad)
            usage, bad_usage = merge_token_usage(token_usage_files(request.stores))
            for bad in bad_usage:
                rejections.reject(bad)
            rejected = [bad.to_dict() for bad in rejections.bad]
            result = exporter.finish(token_usage=usage, rejected=rejected)
            folder.commit()
    except OSError as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        staged = folder.staged_bytes() if full else 0
        _abort(exporter, folder)
        if full:
            raise _disk_full(output_dir, staged, done) from None
        ours = str(error.filename or "").startswith((str(folder.staging), str(folder.path)))
        if isinstance(error, OutputError) or not (ours or error.errno == errno.EROFS):
            raise
        raise OutputError(
            f"cannot write {error.filename or output_dir}: {error.strerror}; the earlier export is unchanged",
            error.errno,
        ) from None
    except BaseException:
        _abort(exporter, folder)
        raise
    finally:
        if bar is not None:
            bar.close()
        gc.unfreeze()
    report = output_dir / stamped_name("rejected", layout.stamp, ".jsonl") if rejections.bad else None
    return StoreExport(result, rejections, len(files), report)


def _abort(exporter: Exporter | None, folder) -> None:
    """Drop what the run wrote: the exporter's files (when it was made), then the folder's staging. Neither raises
    (each writer's `abort` never does): the error being handled is the one to report."""
    if exporter is not None:
        exporter.abort()
    folder.abort()


__all__ = [
    "AllRejected",
    "NoInteractionsError",
    "StoreExport",
    "encode_store",
    "export_store",
    "iter_store",
    "scan_store",
]
