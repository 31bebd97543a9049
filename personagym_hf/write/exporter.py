"""The outputs of one export: samples -> split -> every file, in one pass.

Each sample is converted once and fanned out to the JSON and JSONL files of its split, the statistics
accumulator and (for a store export) the Parquet shards of every config in `hf_dataset/`. Samples arrive
one at a time (`add`, the seed's API) or as chunks already encoded by workers (`add_chunk`, see
`chunks.py`). Everything is written into the staging folder of an `OutputFolder` (transaction.py) and
swapped in at the end, so a reader sees the complete old export or the complete new one, never a mix.

An append (`append=True`) carries the earlier export over from its own files — JSON rows from its JSONL,
Parquet rows from its shards, statistics from its manifest's exact state — after `manifest.check_append`
has made sure it was made the same way; new samples follow. So an append that adds nothing writes the
same bytes as the export it read.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import orjson

from ..config import FILE_PREFIX, SPLIT_NAMES, ExportConfig, RunOptions
from ..measure.stats import StatsAccumulator
from ..schema import TrainingSample
from ..transform.split import skew_warnings
from .files import JsonArrayWriter, JsonlWriter, OutputSet, dumps_line, pretty_item, write_json_atomic
from .folder import OutputFolder
from .manifest import MANIFEST_FILE, AppendError, Layout, check_append, manifest, read_earlier

if TYPE_CHECKING:
    from ..measure.tokens import Tokenizer

logger = logging.getLogger(__name__)

HF_FOLDER = "hf_dataset"
REJECTED_FILE = "rejected.jsonl"
ITEMS_PER_WRITE = 256  # samples' JSON items (and JSONL lines) written with one call
SAMPLE_FILES = frozenset(f"{FILE_PREFIX[s]}_samples{suffix}" for s in SPLIT_NAMES for suffix in (".json", ".jsonl"))
EXPORT_FILES = SAMPLE_FILES | {"statistics.json", "token_usage.json", REJECTED_FILE, HF_FOLDER, MANIFEST_FILE}


def is_export_file(name: str) -> bool:
    """Whether a top-level name of an output folder belongs to the current export (replaced as a whole by the
    next export without a timestamp): its files, and what earlier versions of this tool left on failure.
    Everything else — timestamped versions, the user's own files — is kept."""
    return name in EXPORT_FILES or name.startswith(".chunks-") or (name.startswith(".") and name.endswith(".tmp"))


def is_sample_export_file(name: str) -> bool:
    """`is_export_file` for the seed's `export_samples`, which writes statistics in a call of their own."""
    return is_export_file(name) and name not in ("statistics.json", "token_usage.json")


def is_nothing(name: str) -> bool:
    """A timestamped export is a version added beside the current export: it replaces nothing."""
    return False


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
    warnings: list[str] = field(default_factory=list)  # about the export as a whole (e.g. lumpy splits)


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
        from ..read.store import BadRecord, iter_file

        for record in iter_file(path):
            if isinstance(record, BadRecord):
                raise ValueError(f"{record.describe()}: cannot append to a damaged export")
            yield record.data


def _without_valid_bitmaps(table):
    """`table` as a fresh export builds it: Parquet readers give some nested columns validity bitmaps with no null
    in them, which would change the card's `num_bytes`. An Arrow IPC round trip drops them."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


class SplitFiles:
    """The JSON + JSONL files of each split, with append: earlier rows first, in their split, then new rows."""

    def __init__(self, output_dir: Path, outputs: OutputSet, split: bool, stamp: str | None):
        self.names = SPLIT_NAMES if split else ("train",)
        self.json = {s: outputs.open(JsonArrayWriter(output_dir / split_file_name(s, stamp))) for s in self.names}
        self.jsonl = {
            s: outputs.open(JsonlWriter(output_dir / split_file_name(s, stamp, ".jsonl"))) for s in self.names
        }
        self.exported: set[str] = set()

    def carry_over(self, output_dir: Path, split_files: dict[str, str]) -> Iterator[tuple[dict, str]]:
        """Rows of the export already in `output_dir`, kept in the split file they are in."""
        for name, file_name in split_files.items():
            for row in _read_rows(output_dir / file_name):
                if row.get("sample_id") in self.exported:
                    raise AppendError(
                        f"{output_dir / file_name}: cannot append: sample {row.get('sample_id')!r} is in the export "
                        "twice; rebuild with --no-append"
                    )
                self.exported.add(row.get("sample_id"))
                self.add_row(row, name)
                yield row, name

    def add_row(self, row: dict, split: str) -> None:
        self.json[split].add(row)
        self.jsonl[split].add(row)

    def add_items(self, split: str, items: list[bytes], lines: list[bytes]) -> None:
        self.json[split].add_items(items)
        self.jsonl[split].add_lines(lines)


class Exporter:
    """One export run. `add()` samples (or encoded chunks), then `finish()`; on any error call `abort()`.

    `split` and `hf_dataset` None mean: as the earlier export when appending, else `default_layout`'s.
    """

    def __init__(
        self,
        cfg: ExportConfig,
        output_dir: str | Path,
        *,
        split: bool | None = True,
        use_timestamp: bool = False,
        append: bool = False,
        hf_dataset: bool | None = False,
        default_layout: Layout = Layout(split=True, hf_dataset=False),
        collector: str | None = None,
        statistics_file: bool = True,
        wait: bool = False,
        audit: str | None = None,
        options: RunOptions | None = None,
        tokenizer: "Tokenizer | None" = None,
        max_length: int | None = None,
    ):
        from ..measure.leakage import resolve_mode

        if max_length is not None and max_length < 1:  # before the folder is locked
            raise ValueError(f"Exporter: expected a max_length of at least 1, got {max_length!r}")
        self.cfg, self.output_dir = cfg, Path(output_dir)
        self.tokenizer, self.max_length = tokenizer, max_length  # a loaded `tokens.Tokenizer`, or None
        self.options = options or RunOptions()  # how it runs: batch, row group and shard sizes, the split cache
        self.audit_mode = resolve_mode(audit)
        self.collector = collector
        stamped = use_timestamp and not append  # timestamps are not applied when appending
        managed = is_nothing if stamped else is_export_file if statistics_file else is_sample_export_file
        self.folder = OutputFolder(self.output_dir, managed, wait=wait).open()
        try:
            earlier = read_earlier(self.folder.path) if append else None
            if earlier is not None:
                layout = check_append(self.output_dir, earlier, cfg, split, hf_dataset, collector)
            else:
                layout = Layout(
                    default_layout.split if split is None else split,
                    default_layout.hf_dataset if hf_dataset is None else hf_dataset,
                )
            self.stamp = timestamp() if stamped else None
            # A version beside the current export has no hf_dataset/ of its own (that folder is the current one's).
            self.layout = Layout(layout.split, layout.hf_dataset and not stamped, self.stamp)
            self._open(earlier)
        except BaseException:
            self.abort()
            raise

    def _open(self, earlier) -> None:
        from ..transform.encode import Encoder, Step

        cfg, staging, options = self.cfg, self.folder.staging, self.options
        self.work = staging / ".chunks"  # workers' part files: inside the transaction, removed before it commits
        self.outputs = OutputSet()
        self.files = SplitFiles(staging, self.outputs, self.layout.split, self.stamp)
        self.encoder = Encoder(
            cfg,
            self.layout.split,
            self.layout.hf_dataset,
            self.audit_mode,
            split_cache=options.split_cache,
            batch_rows=options.batch_rows,
        )
        self.stats = StatsAccumulator()
        self.audit = None
        if self.audit_mode is not None:
            from ..measure.leakage import LeakageAudit

            self.audit = LeakageAudit(near=self.audit_mode == "near")
        self.audit_earlier: dict[str, str] | None = None  # split -> file of earlier rows not audited yet
        # Token budgets are counted here, from the rows as written, one budget per split, merged in split order at
        # the end: the order `personagym-hf tokens --data` reads the export in, and the same for any num_proc and
        # for rows carried over by an append.
        self.tokens = None
        if self.tokenizer is not None:
            from ..measure.tokens import TokenBudget

            self.tokens = {name: TokenBudget(self.tokenizer, self.max_length) for name in self.files.names}
        self.groups = None  # split_by persona_and_query: the store's groups, given by the caller's pre-pass
        if cfg.split_by == "persona_and_query" and self.layout.split:
            from ..transform.groups import SplitGroups

            self.groups = SplitGroups(cfg.seed, cfg.ratios)
        self.result = ExportResult()
        self.items: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # JSON items not yet written
        self.lines: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # and their JSONL lines
        # Samples added one at a time (`add`) go through the per-sample step of `encode`, into this exporter (a sink).
        self.step = Step(self.encoder, self, self.stats, self.audit)
        self.parquet = None
        if self.layout.hf_dataset:
            self.specs = self.encoder.specs
            self.parquet = {
                config: {name: self._split_writer(config, name, specs) for name in self.files.names}
                for config, specs in self.specs.items()
            }
        if earlier is not None:
            self._carry_over(earlier)

    def _split_writer(self, config: str, split: str, specs: dict):
        """Shards written here as rows arrive (one process), or planned here and written by workers (`shardwork.py`:
        with `--num-proc` or Ray; `write_shards_with` gives the workers, else this process writes each shard)."""
        options = self.options
        folder = self.folder.staging / HF_FOLDER / "data" / config
        if options.num_proc <= 1 and options.engine == "local":
            from .parquet import ParquetSplitWriter

            return ParquetSplitWriter(folder, split, specs, options.max_shard_bytes, options.row_group_rows)
        from .planned_shards import InProcess, PlannedSplitWriter

        return PlannedSplitWriter(
            folder,
            split,
            config,
            specs,
            InProcess(self.encoder.specs),
            self.work / "tables",
            options.max_shard_bytes,
            options.row_group_rows,
        )

    def write_shards_with(self, runner) -> None:
        """Have `runner`'s workers (`chunks.LocalRunner`, `ray_engine.RayRunner`) write the Parquet shards."""
        for writers in (self.parquet or {}).values():
            for writer in writers.values():
                if hasattr(writer, "runner"):
                    writer.runner = runner

    def _carry_over(self, earlier) -> None:
        """The earlier export's rows, each output from its own file (see the module docstring)."""
        from ..transform.collect import sample_id_for

        counts: dict[str, int] = {}
        if self.audit is not None:
            self.audit_earlier = earlier.split_files  # read again by `_audit_earlier`, after any worker has forked
        for row, split_name in self.files.carry_over(self.folder.path, earlier.split_files):
            counts[split_name] = counts.get(split_name, 0) + 1
            record_id = (row.get("metadata") or {}).get("interaction_id")
            if (
                earlier.schema_version is None
                and isinstance(record_id, str)
                and sample_id_for(record_id) != row["sample_id"]
            ):
                # An export of an earlier version named this interaction otherwise: appending would add it twice.
                raise AppendError(
                    f"{self.output_dir}: cannot append: the export there names interaction {record_id!r} "
                    f"{row['sample_id']!r}, this version {sample_id_for(record_id)!r}; rebuild with --no-append"
                )
            if earlier.statistics_state is None:  # an export made before the manifest: recount from its rows
                self.stats.add(row, split_name)
            if self.tokens is not None:
                self.tokens[split_name].add(row)
            if self.groups is not None:  # an append never moves a row: the groups start from where they are
                self.groups.add(row, earlier=split_name)
            if self.parquet is not None and earlier.statistics_state is None:
                self.step.batches.add(TrainingSample.from_dict(row).to_dict(), split_name)
            self.result.kept_samples += 1
        if earlier.statistics_state is not None:
            self.stats = self.step.stats = StatsAccumulator.from_state(earlier.statistics_state)
            if self.parquet is not None:
                self._carry_parquet(counts)
        else:
            self.step.flush()

    def _carry_parquet(self, counts: dict[str, int]) -> None:
        import pyarrow.parquet as pq

        data = self.folder.path / HF_FOLDER / "data"
        for config, writers in self.parquet.items():
            for split_name, writer in writers.items():
                shards = sorted((data / config).glob(f"{split_name}-*-of-*.parquet"))
                rows = 0
                for shard in shards:
                    parquet = pq.ParquetFile(shard)
                    if not parquet.schema_arrow.remove_metadata().equals(writer.schema.remove_metadata()):
                        raise AppendError(
                            f"{shard}: cannot append: its columns are not those this version writes for "
                            f"{config!r}; rebuild with --no-append"
                        )
                    for index in range(parquet.num_row_groups):
                        table = _without_valid_bitmaps(parquet.read_row_group(index))
                        rows += table.num_rows
                        writer.add_table(table.replace_schema_metadata(writer.schema.metadata))
                if config in ("full", "minimal", "messages") and rows != counts.get(split_name, 0):
                    raise AppendError(
                        f"{data / config}: cannot append: {split_name} has {rows} rows in its shards and "
                        f"{counts.get(split_name, 0)} in its JSON; rebuild with --no-append"
                    )

    def _audit_earlier(self) -> None:
        """Audit the earlier export's rows (an append), before any new one. Not while they are carried over: that
        runs before the worker processes of `--num-proc` fork, and rensa's MinHash threads, started in a parent
        that signed texts, do not exist in a forked child, where its next batch then waits for them forever. Here,
        at the first sample or chunk added, the workers run already. The rows as written: what a fresh export of
        them audited."""
        if self.audit_earlier is None:
            return
        split_files, self.audit_earlier = self.audit_earlier, None
        for name, file_name in split_files.items():
            for row in _read_rows(self.folder.path / file_name):
                self.audit.add(row, name)

    def add(self, sample: TrainingSample) -> str | None:
        """Write one sample; returns its split, or None when an earlier export already holds it."""
        self._audit_earlier()
        if sample.sample_id in self.files.exported:
            return None
        self.files.exported.add(sample.sample_id)
        split = self.step.add(sample.to_dict())
        self.result.new_samples += 1
        return split

    # The sink of `self.step` (`encode.Sink`): a row to the JSON files and the token budgets, a table to the shards.
    def row(self, split: str, row: dict) -> None:
        self.item(split, pretty_item(row), dumps_line(row))
        if self.tokens is not None:
            self.tokens[split].add(row)

    def table(self, config: str, split: str, table) -> None:
        self.parquet[config][split].add_table(table)

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
        hold no sample an earlier export or chunk holds (`ChunkJob.skip` and `job.encode_store` see to that)."""
        self._audit_earlier()
        self._flush_items()
        self.step.flush()  # samples added one at a time come first
        for split, items in chunk.items.items():
            self.files.add_items(split, items, chunk.lines[split])
        for config, split, table in chunk.batches:
            self.table(config, split, table)
        for split, count in chunk.samples.items():
            self.files.json[split].add_fragment(chunk.json_part(split), count)
            self.files.jsonl[split].add_file(chunk.jsonl_part(split), count, chunk.line_digests[split])
        # Part files come only with workers, whose shards `shardwork.PlannedSplitWriter` plans (it removes each file).
        for (config, split), path in sorted(chunk.tables.items()):
            self.parquet[config][split].add_file(path, chunk.table_sizes[(config, split)])
        if self.tokens is not None:
            self._count_tokens(chunk)
        chunk.discard(keep_tables=True)
        self.stats.merge(chunk.encoded.stats)
        if self.audit is not None:
            self.audit.merge(chunk.encoded.audit)
        # Not added to `files.exported`: the caller (job.py) tracks a chunk's ids, to find duplicates.
        self.result.new_samples += len(chunk.encoded.kept)

    def _count_tokens(self, chunk) -> None:
        """The token budgets of a chunk's rows, read back from its JSONL lines (in memory or in its part files)."""
        for split, lines in chunk.lines.items():
            for line in lines:
                self.tokens[split].add(orjson.loads(line))
        for split in chunk.samples:
            with chunk.jsonl_part(split).open("rb") as f:
                for line in f:
                    self.tokens[split].add(orjson.loads(line))

    def token_budgets(self) -> dict:
        """The `tokens` section of `statistics.json`: the splits' budgets merged in split order."""
        from ..measure.tokens import TokenBudget

        merged = TokenBudget(self.tokenizer, self.max_length)
        for name in self.files.names:
            merged.merge(self.tokens[name])
        return {self.tokenizer.key: merged.to_dict()}

    def add_all(self, samples: Iterable[TrainingSample]) -> "Exporter":
        for sample in samples:
            self.add(sample)
        return self

    def finish(
        self, *, statistics: bool = True, token_usage: dict | None = None, rejected: list[dict] | None = None
    ) -> ExportResult:
        """Close every file in the staging folder, then swap it in as the output folder."""
        self._flush_items()
        self._audit_earlier()
        result = self.result
        result.statistics = self.stats.to_dict()
        if self.layout.split:
            stats = result.statistics
            result.warnings = skew_warnings(
                stats["samples_by_split"], stats["total_personas"], self.cfg.ratios, self.cfg.split_by
            )
        if self.audit is not None:
            result.statistics["leakage"] = self.audit.to_dict()
        if self.tokens is not None:
            result.statistics["tokens"] = self.token_budgets()
        if self.groups is not None:
            result.statistics["split_groups"] = self.groups.to_dict()
        for name in self.files.names:
            result.json_files[name] = self.output_dir / self.files.json[name].path.name
            result.jsonl_files[name] = self.output_dir / self.files.jsonl[name].path.name
        small = {}  # kind -> JSON document
        if statistics:
            small["statistics"] = result.statistics
        if token_usage is not None:
            small["token_usage"] = token_usage
        staging = self.folder.staging
        if self.parquet is not None:
            card = self._close_hf_dataset(result.statistics)
            for writers in self.parquet.values():
                for writer in writers.values():
                    writer.commit()
            folder = staging / HF_FOLDER
            write_json_atomic(folder / "statistics.json", result.statistics)
            write_json_atomic(folder / "provenance.json", self.provenance())
            (folder / "README.md").write_text(card, encoding="utf-8")
            result.hf_dataset = self.output_dir / HF_FOLDER
        self.outputs.commit()
        for kind, document in small.items():
            name = stamped_name(kind, self.stamp)
            write_json_atomic(staging / name, document)
            result.other_files[kind] = self.output_dir / name
        if rejected:
            report = JsonlWriter(staging / stamped_name("rejected", self.stamp, ".jsonl"))
            for line in rejected:
                report.add(line)
            report.commit()
        if self.stamp is None:  # the manifest describes the current export, which a version leaves alone
            split_files = {name: self.files.json[name].path.name for name in self.files.names}
            document = manifest(
                self.layout, self.cfg, self.collector, self.fingerprint(), split_files, self.stats.to_state()
            )
            write_json_atomic(staging / MANIFEST_FILE, document)
        shutil.rmtree(self.work, ignore_errors=True)  # every shard is written: the chunks' part files are not needed
        self.folder.commit()
        return result

    def _close_hf_dataset(self, statistics: dict) -> str:
        """Close the shards (still under temporary names) and render the card that describes them."""
        from ..card.render import dataset_infos, languages_of, render_card

        self.step.flush()
        # Every split's last shard handed out before waiting for any: they are written at once, the biggest first.
        writers = [writer for split_writers in self.parquet.values() for writer in split_writers.values()]
        for writer in sorted(writers, key=lambda writer: -writer.plan.rows):
            writer.plan_last()
        splits = {}
        for config, writers in self.parquet.items():
            splits[config] = {}
            for name, writer in writers.items():
                paths = writer.close()
                splits[config][name] = (writer.num_examples, writer.num_bytes, paths)
        readme = self.folder.path / HF_FOLDER / "README.md"  # the earlier card: text its user added is kept
        existing = readme.read_text(encoding="utf-8") if readme.exists() else None
        infos = dataset_infos(self.specs, splits)
        languages = languages_of(({"language": value}, rows) for value, rows in self.stats.languages.items())
        settings = self.provenance()["settings"]
        return str(render_card(infos, statistics, settings, existing=existing, languages=languages or None))

    def provenance(self) -> dict:
        """Where the data came from: package version, settings (nothing secret is ever in them) and a
        fingerprint of the exported rows — no wall-clock time, so unchanged data gives an unchanged file."""
        from ..version import __version__

        return {
            "generator": "personagym-hf",
            "version": __version__,
            "fingerprint": self.fingerprint(),
            "settings": {
                "seed": self.cfg.seed,
                "split_by": self.cfg.split_by,
                "ratios": self.cfg.ratios,
                "format": self.cfg.format,
            },
        }

    def fingerprint(self) -> str:
        """A digest of the exported rows: each split's JSONL, line by line (see `JsonlWriter.fingerprint`)."""
        digest = hashlib.sha256()
        for name in self.files.names:
            digest.update(f"{name}:{self.files.jsonl[name].fingerprint()}\n".encode())
        return f"sha256:{digest.hexdigest()}"

    def abort(self) -> None:
        """Drop everything this run wrote; the output folder stays as it was."""
        for writers in (getattr(self, "parquet", None) or {}).values():
            for writer in writers.values():
                writer.abort()
        if hasattr(self, "outputs"):
            self.outputs.abort()
        self.folder.abort()
