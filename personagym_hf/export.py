"""The outputs of one export: samples -> split -> every file, in one pass.

Each sample is converted once and fanned out to the JSON and JSONL files of its split, the statistics
accumulator and (for a store export) the Parquet shards of every config in `hf_dataset/`. Samples arrive
one at a time (`add`, the seed's API) or as chunks already encoded by workers (`add_chunk`, see
`chunks.py`). Nothing is renamed into place until the pass has finished, so a failed run leaves the
previous export untouched.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from .config import SPLIT_NAMES, ExportConfig
from .schema import TrainingSample
from .split import FILE_PREFIX
from .stats import StatsAccumulator
from .writers import JsonArrayWriter, JsonlWriter, OutputSet, dumps_line, pretty_item, write_json_atomic

logger = logging.getLogger(__name__)

HF_FOLDER = "hf_dataset"
ITEMS_PER_WRITE = 256  # samples' JSON items (and JSONL lines) written with one call


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d_%H%M%S")


def stamped_name(base: str, stamp: str | None = None, suffix: str = ".json") -> str:
    """`base.json`, or `base_<YYYYmmdd_HHMMSS>.json` when a timestamp was asked for."""
    return f"{base}_{stamp}{suffix}" if stamp else f"{base}{suffix}"


def split_file_name(split: str, stamp: str | None = None, suffix: str = ".json") -> str:
    return stamped_name(f"{FILE_PREFIX[split]}_samples", stamp, suffix)


@dataclass
class ExportResult:
    json_files: dict[str, Path] = field(default_factory=dict)
    jsonl_files: dict[str, Path] = field(default_factory=dict)
    statistics: dict = field(default_factory=dict)
    new_samples: int = 0
    kept_samples: int = 0
    hf_dataset: Path | None = None
    other_files: dict[str, Path] = field(default_factory=dict)


def _read_rows(path: Path) -> Iterator[dict]:
    """Rows of an earlier export: its JSONL, line by line (or its JSON array when no JSONL is beside it)."""
    jsonl = path.with_suffix(".jsonl")
    if jsonl.exists():
        with jsonl.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as e:
                        raise ValueError(f"{jsonl}, line {number}: cannot append to a damaged export ({e})") from None
    elif path.exists():
        from .store import BadRecord, iter_file

        for record in iter_file(path):
            if isinstance(record, BadRecord):
                raise ValueError(f"{record.describe()}: cannot append to a damaged export")
            yield record.data


class SplitFiles:
    """The JSON + JSONL files of each split, with append: earlier rows first, in their split, then new rows."""

    def __init__(self, output_dir: Path, outputs: OutputSet, split: bool, stamp: str | None):
        self.names = SPLIT_NAMES if split else ("train",)
        self.json = {s: outputs.open(JsonArrayWriter(output_dir / split_file_name(s, stamp))) for s in self.names}
        self.jsonl = {
            s: outputs.open(JsonlWriter(output_dir / split_file_name(s, stamp, ".jsonl"))) for s in self.names
        }
        self.exported: set[str] = set()

    def carry_over(self, output_dir: Path) -> Iterator[tuple[dict, str]]:
        """Rows of the export already in `output_dir`, kept in the split file they are in."""
        for name in SPLIT_NAMES:
            for row in _read_rows(output_dir / split_file_name(name)):
                target = name if name in self.names else "train"
                if row.get("sample_id") in self.exported:
                    continue
                self.exported.add(row.get("sample_id"))
                self.add_row(row, target)
                yield row, target

    def end_parts(self) -> None:
        for writer in self.jsonl.values():
            writer.end_part()

    def add_row(self, row: dict, split: str) -> None:
        self.json[split].add(row)
        self.jsonl[split].add(row)

    def add_items(self, split: str, items: list[bytes], lines: list[bytes]) -> None:
        self.json[split].add_items(items)
        self.jsonl[split].add_lines(lines)


class Exporter:
    """One export run. `add()` samples (or encoded chunks), then `finish()`; on any error call `abort()`."""

    def __init__(
        self,
        cfg: ExportConfig,
        output_dir: str | Path,
        *,
        split: bool = True,
        use_timestamp: bool = False,
        append: bool = False,
        hf_dataset: bool = False,
    ):
        from .chunks import Encoder

        self.cfg, self.output_dir = cfg, Path(output_dir)
        self.stamp = timestamp() if use_timestamp and not append else None
        self.outputs = OutputSet()
        self.files = SplitFiles(self.output_dir, self.outputs, split, self.stamp)
        self.encoder = Encoder(cfg, split, views=hf_dataset)
        self.stats = StatsAccumulator()
        self.result = ExportResult()
        self.items: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # JSON items not yet written
        self.lines: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # and their JSONL lines
        self.parquet = None
        if hf_dataset:
            from .chunks import Batches
            from .shards import BATCH_ROWS, ParquetSplitWriter

            folder = self.output_dir / HF_FOLDER / "data"
            self.specs = self.encoder.specs
            self.pending = Batches(cfg.format, self._write_table, BATCH_ROWS)  # samples added one at a time
            self.parquet = {
                config: {
                    s: ParquetSplitWriter(folder if config == "full" else folder / config, s, specs)
                    for s in self.files.names
                }
                for config, specs in self.specs.items()
            }
        if append:
            for row, split_name in self.files.carry_over(self.output_dir):
                self.stats.add(row, split_name)
                self._add_parquet(TrainingSample.from_dict(row).to_dict(), split_name)
                self.result.kept_samples += 1
            self.files.end_parts()  # the rows kept are a part of their own (see `JsonlWriter`)

    def _add_parquet(self, sample: dict, split: str) -> None:
        if self.parquet is not None:
            self.pending.add(sample, split)

    def _write_table(self, config: str, split: str, table) -> None:
        self.parquet[config][split].add_table(table)

    def add(self, sample: TrainingSample) -> str | None:
        """Write one sample; returns its split, or None when an earlier export already holds it."""
        if sample.sample_id in self.files.exported:
            return None
        self.files.exported.add(sample.sample_id)
        data = sample.to_dict()
        split = self.encoder.split_of(data)
        row = self.encoder.row(data)
        self.item(split, pretty_item(row), dumps_line(row))
        self.stats.add(data, split)
        self._add_parquet(data, split)
        self.result.new_samples += 1
        return split

    def item(self, split: str, pretty: bytes, line: bytes) -> None:
        items = self.items[split]
        items.append(pretty)
        self.lines[split].append(line)
        if len(items) >= ITEMS_PER_WRITE:
            self._flush_items(split)

    def _flush_items(self, *splits: str) -> None:
        for split in splits or self.files.names:
            if self.items[split]:
                self.files.add_items(split, self.items[split], self.lines[split])
                self.items[split], self.lines[split] = [], []

    def add_chunk(self, chunk) -> None:
        """Append an encoded chunk (see `chunks.py`), in memory or in part files, to the outputs. The chunk must
        hold no sample an earlier export or chunk holds (`run_chunks(skip=...)` and job.py see to that)."""
        self._flush_items()
        if self.parquet is not None:
            self.pending.flush_all()  # samples added one at a time come first
        for split, items in chunk.items.items():
            self.files.add_items(split, items, chunk.lines[split])
        for config, split, table in chunk.batches:
            self._write_table(config, split, table)
        for split, count in chunk.samples.items():
            self.files.json[split].add_fragment(chunk.json_part(split), count)
            self.files.jsonl[split].add_file(chunk.jsonl_part(split), count, chunk.jsonl_sha256[split])
        for (config, split), path in sorted(chunk.tables.items()):
            self._add_arrow_file(config, split, path)
        self.files.end_parts()  # a chunk held in memory is a part too
        chunk.discard()
        self.stats.merge(chunk.stats)
        # Not added to `files.exported`: the caller (job.py) tracks a chunk's ids, to find duplicates.
        self.result.new_samples += len(chunk.kept)

    def _add_arrow_file(self, config: str, split: str, path: Path) -> None:
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                self.parquet[config][split].add_table(pa.Table.from_batches([reader.get_batch(index)]))

    def add_all(self, samples: Iterable[TrainingSample]) -> "Exporter":
        for sample in samples:
            self.add(sample)
        return self

    def finish(self, *, statistics: bool = True, token_usage: dict | None = None) -> ExportResult:
        """Close every file, then rename them all into place (nothing is renamed if anything failed)."""
        self._flush_items()
        result = self.result
        result.statistics = self.stats.to_dict()
        for name in self.files.names:
            result.json_files[name] = self.files.json[name].path
            result.jsonl_files[name] = self.files.jsonl[name].path
        small = {}  # kind -> JSON document, written after the big files
        if statistics:
            small["statistics"] = result.statistics
        if token_usage is not None:
            small["token_usage"] = token_usage
        card = self._close_hf_dataset(result.statistics) if self.parquet is not None else None
        if card is not None:
            for writers in self.parquet.values():
                for writer in writers.values():
                    writer.commit()
            folder = self.output_dir / HF_FOLDER
            write_json_atomic(folder / "statistics.json", result.statistics)
            write_json_atomic(folder / "provenance.json", self.provenance())
            (folder / ".README.md.tmp").write_text(card, encoding="utf-8")
            (folder / ".README.md.tmp").replace(folder / "README.md")
            result.hf_dataset = folder
        self.outputs.commit()
        for kind, document in small.items():
            result.other_files[kind] = write_json_atomic(self.output_dir / stamped_name(kind, self.stamp), document)
        return result

    def _close_hf_dataset(self, statistics: dict) -> str:
        """Close the shards (still under temporary names) and render the card that describes them."""
        from .card import dataset_infos, render_card

        self.pending.flush_all()
        splits = {}
        for config, writers in self.parquet.items():
            splits[config] = {}
            for name, writer in writers.items():
                paths = writer.close()
                splits[config][name] = (writer.num_examples, writer.num_bytes, paths)
        readme = self.output_dir / HF_FOLDER / "README.md"
        existing = readme.read_text(encoding="utf-8") if readme.exists() else None
        infos = dataset_infos(self.specs, splits)
        return str(render_card(infos, statistics, self.provenance()["settings"], existing=existing))

    def provenance(self) -> dict:
        """Where the data came from: package version, settings (nothing secret is ever in them) and a
        fingerprint of the exported rows — no wall-clock time, so unchanged data gives an unchanged file."""
        from . import __version__

        digest = hashlib.sha256()
        for name in self.files.names:
            digest.update(f"{name}:{self.files.jsonl[name].fingerprint()}\n".encode())
        return {
            "generator": "personagym-hf",
            "version": __version__,
            "fingerprint": f"sha256:{digest.hexdigest()}",
            "settings": {
                "seed": self.cfg.seed,
                "split_by": self.cfg.split_by,
                "ratios": self.cfg.ratios,
                "format": self.cfg.format,
            },
        }

    def _abort_parquet(self) -> None:
        for writers in (self.parquet or {}).values():
            for writer in writers.values():
                writer.abort()

    def abort(self) -> None:
        self.outputs.abort()
        self._abort_parquet()
