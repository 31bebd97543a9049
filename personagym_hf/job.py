"""The whole export of an interaction store: read -> collect -> split -> every output.

This is what `personagym-hf export` runs: one streaming pass over the store (memory does not grow
with its size), a progress bar over its files, the bad-record policy with a `rejected.jsonl` report,
and merged token usage. With `on_bad_records: error` the first bad record stops the run and no sample,
statistics or dataset file is written (earlier ones stay as they were).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .config import ExportConfig
from .export import Exporter, ExportResult
from .samples import Convert, Rejections, iter_samples
from .store import BadRecord, Record, discover_files, iter_file, token_usage_files
from .token_usage import merge_token_usage
from .writers import write_json_atomic

logger = logging.getLogger(__name__)

REJECTED_FILE = "rejected.jsonl"


@dataclass
class StoreExport:
    result: ExportResult
    rejections: Rejections
    files_read: int
    rejected_report: Path | None


def progress(iterable: Iterable, *, total: int | None, desc: str, enabled: bool, unit: str = "file") -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


def iter_store(paths: str | Path | Iterable[str | Path], *, show_progress: bool = False) -> Iterator[Record | BadRecord]:
    files = discover_files(paths)
    for path in progress(files, total=len(files), desc="Reading interactions", enabled=show_progress):
        yield from iter_file(path)


def write_rejected_report(output_dir: Path, rejections: Rejections) -> Path | None:
    """`rejected.jsonl`: one line per bad record; an earlier report is removed when there is none now."""
    path = output_dir / REJECTED_FILE
    if not rejections.bad:
        path.unlink(missing_ok=True)
        return None
    from .writers import JsonlWriter

    report = JsonlWriter(path)
    for bad in rejections.bad:
        report.add(bad.to_dict())
    return report.commit()


def export_store(
    interactions: str | Path | Iterable[str | Path],
    output_dir: str | Path,
    cfg: ExportConfig,
    convert: Convert,
    *,
    split: bool = True,
    use_timestamp: bool = False,
    append: bool = False,
    hf_dataset: bool = True,
    show_progress: bool = False,
) -> StoreExport:
    output_dir = Path(output_dir)
    files = discover_files(interactions)
    rejections = Rejections(cfg.on_bad_records)
    exporter = Exporter(cfg, output_dir, split=split, use_timestamp=use_timestamp, append=append, hf_dataset=hf_dataset)
    try:
        records = (
            record
            for path in progress(files, total=len(files), desc="Exporting", enabled=show_progress)
            for record in iter_file(path)
        )
        for sample, _record in iter_samples(records, convert, rejections):
            exporter.add(sample)
        usage, bad_usage = merge_token_usage(token_usage_files(interactions))
        for bad in bad_usage:
            rejections.reject(bad)
        result = exporter.finish(token_usage=usage)
    except BaseException:
        exporter.abort()
        write_rejected_report(output_dir, rejections)
        raise
    report = write_rejected_report(output_dir, rejections)
    return StoreExport(result, rejections, len(files), report)


__all__ = ["StoreExport", "export_store", "iter_store", "write_json_atomic"]
