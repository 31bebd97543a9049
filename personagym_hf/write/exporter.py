"""The outputs of one export: samples -> split -> every file, in one pass.

Each sample is converted once and fanned out to the JSON and JSONL files of its split, the statistics
accumulator and (for a store export) the Parquet shards of every config in `hf_dataset/`. Samples arrive
one at a time (`add`, the seed's API) or as chunks already encoded by workers (`add_chunk`, see
`run/chunks.py`). Everything is written into the staging folder of an `OutputFolder` (`folder.py`), which the caller
swaps in at the end, so a reader sees the complete old export or the complete new one, never a mix.

An append carries the earlier export over from its own files (`append.py`), after `manifest.check_append` has made
sure it was made the same way; new samples follow. So an append that adds nothing writes the same bytes as the
export it read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import orjson

from ..config import FILE_PREFIX, SPLIT_NAMES
from ..measure.stats import StatsAccumulator
from ..memory import trim_heap
from ..request import ExportRequest, Layout, Outputs
from ..schema import TrainingSample
from ..transform.split import skew_warnings
from .append import EarlierExport, export_layout
from .background import Background
from .files import JsonArrayWriter, JsonlWriter, OutputSet, dumps_line, pretty_item, write_json_atomic
from .folder import OutputFolder
from .manifest import MANIFEST_FILE, AppendError, manifest, settings_of

if TYPE_CHECKING:
    from ..measure.tokens import Tokenizer
    from ..transform.encode import Encoder

logger = logging.getLogger(__name__)

HF_FOLDER = "hf_dataset"
REJECTED_FILE = "rejected.jsonl"
ITEMS_PER_WRITE = 256  # samples' JSON items (and JSONL lines) written with one call
SAMPLE_FILES = frozenset(
    f"{prefix}_samples{suffix}" for prefix in FILE_PREFIX.values() for suffix in (".json", ".jsonl")
)
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


class SplitFiles:
    """The JSON + JSONL files of each split, with append: earlier rows first, in their split, then new rows.

    With `background` (an in-process export's `write.background` thread, which its Parquet shards share), a batch's
    items and lines are counted and digested here and written on that thread, in the order they were handed over:
    the same bytes, while the export goes on encoding. One `os.writev` a file and batch, which holds no GIL while the
    kernel copies (docs/performance.md: a few percent at 100k; the main thread's system time 4.3 s → 2.5 s)."""

    def __init__(
        self,
        output_dir: Path,
        outputs: OutputSet,
        names: tuple[str, ...],
        stamp: str | None,
        background: Background | None = None,
    ):
        self.names = names
        self.json = {s: outputs.open(JsonArrayWriter(output_dir / split_file_name(s, stamp))) for s in self.names}
        self.jsonl = {
            s: outputs.open(JsonlWriter(output_dir / split_file_name(s, stamp, ".jsonl"))) for s in self.names
        }
        self.background = background

    def add_row(self, row: dict, split: str) -> None:
        self.add_items(split, [pretty_item(row)], [dumps_line(row)])

    def add_items(self, split: str, items: list[bytes | dict], lines: list[bytes | dict]) -> None:
        json, jsonl = self.json[split], self.jsonl[split]
        held = any(isinstance(item, dict) for item in items) or any(isinstance(line, dict) for line in lines)
        if self.background is None or held:
            self.wait()  # a big row (a dict: `chunks.InMemory`) is written a piece at a time, here, after the others
            json.add_items(items)
            jsonl.add_lines(lines)
            return
        # Counted and digested here, in the order they come; written on the thread, in the same order.
        json_parts = json.parts_of(items)
        jsonl.note_lines(lines)
        self.background.submit(json.write_parts, json_parts, nbytes=sum(map(len, items)))
        self.background.submit(jsonl.write_parts, list(lines), nbytes=sum(map(len, lines)))

    def add_parts(self, split: str, json_part: Path, jsonl_part: Path, count: int, digests: bytes) -> None:
        """Append a split's part files that a worker wrote (`chunks.PartFiles`), here and now: its caller removes
        them next."""
        self.wait()
        self.json[split].add_fragment(json_part, count)
        self.jsonl[split].add_file(jsonl_part, count, digests)

    def wait(self) -> None:
        """Return once every write handed to the thread has run (raising the first error one of them raised)."""
        if self.background is not None:
            self.background.wait()


class ShardWriting(Protocol):
    """What writes the Parquet shards (a `run.runner.Runner`): here as rows arrive, or by workers. Its `background`
    thread, if it has one, writes the JSON files too (`SplitFiles`)."""

    background: Background | None

    def split_writer(self, folder: Path, split: str, config: str, specs: dict[str, Any], spill: Path) -> Any: ...


@dataclass
class Destination:
    """An export's output folder, locked, with its staging folder open (`folder.OutputFolder`), the export already
    there when appending (`append.EarlierExport`), the layout of this run's files, and the collector's name (which the
    manifest records). `open_destination` makes it; the caller commits or aborts the folder."""

    folder: OutputFolder
    earlier: EarlierExport | None
    layout: Layout
    collector: str | None
    shown: Path  # the folder as the user named it, for messages and results


def managed_names(outputs: Outputs) -> Callable[[str], bool]:
    """Which top-level names of the output folder this run replaces (`folder.OutputFolder`'s `managed`)."""
    if outputs.timestamp:
        return is_nothing
    return is_export_file if outputs.statistics else is_sample_export_file


def open_destination(request: ExportRequest, collector: str | None) -> Destination:
    """Lock the output folder, open its staging folder and read the export there when appending; on any error the
    folder is left as it was."""
    folder = OutputFolder(request.output, managed_names(request.outputs), wait=request.run.wait).open()
    try:
        earlier = None
        if request.outputs.append:
            earlier = EarlierExport.read(folder.path, request.settings, request.outputs, collector, request.output)
        stamp = timestamp() if request.outputs.timestamp else None
        return Destination(folder, earlier, export_layout(request.outputs, earlier, stamp), collector, request.output)
    except BaseException:
        folder.abort()
        raise


class Exporter:
    """The outputs of one export, in the staging folder of `destination`: `add()` samples or `add_chunk()` encoded
    chunks, then `finish()`; on any error `abort()`. A fan-out: each sample's row to its split's JSON and JSONL
    files, its tables to each config's Parquet shards (written as `shards` says), and the statistics, the audit and
    the token budgets; the earlier export's rows first, when appending.

    `encoder` is the run's (`transform.encode.Encoder`, made for `destination.layout`); `tokenizer` a loaded
    `measure.tokens.Tokenizer` (`request.measures.tokenizer` loaded by the caller) or None."""

    def __init__(
        self,
        destination: Destination,
        request: ExportRequest,
        encoder: "Encoder",
        shards: ShardWriting,
        tokenizer: "Tokenizer | None" = None,
    ):
        from ..transform.encode import Step

        self.destination, self.folder, self.layout = destination, destination.folder, destination.layout
        self.cfg, self.output_dir, self.options = request.settings, destination.shown, request.run
        self.stamp, self.collector, self.encoder = self.layout.stamp, destination.collector, encoder
        self.tokenizer, self.max_length = tokenizer, request.measures.max_length
        self.write_statistics = request.outputs.statistics
        staging = self.folder.staging
        self.work = staging / ".chunks"  # workers' part files: inside the transaction, removed before it commits
        self.outputs = OutputSet()
        self.files = SplitFiles(staging, self.outputs, encoder.split_names, self.stamp, shards.background)
        self.exported: set[str] = set()  # sample ids written: the earlier export's, then those added one at a time
        self.held_out: list[str] = []  # sample ids in no split, this run's and the earlier export's
        # The statistics list every split of the mode, those left empty too (a file without a row is written too).
        self.stats = StatsAccumulator.of_splits(encoder.split_names if self.layout.split else SPLIT_NAMES)
        # Its rows past a few thousand per split go to a folder in the staging folder (removed before the commit).
        self.audit = encoder.new_audit(spill_dir=self.work / "leakage")
        self.audit_earlier: EarlierExport | None = None  # earlier rows not audited yet
        # Token budgets are counted here, from the rows as written, one budget per split, merged in split order at
        # the end: the order `personagym-hf tokens --data` reads the export in, and the same for any num_proc and
        # for rows carried over by an append.
        self.tokens = None
        if tokenizer is not None:
            from ..measure.tokens import TokenBudget
            from ..transform.views import chat_views

            self.tokens = {
                name: TokenBudget(tokenizer, self.max_length, chat_views(self.cfg)) for name in self.files.names
            }
        self.result = ExportResult()
        self.items: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # JSON items not yet written
        self.lines: dict[str, list[bytes]] = {name: [] for name in self.files.names}  # and their JSONL lines
        # Samples added one at a time (`add`) go through the per-sample step of `encode`, into this exporter (a sink).
        self.step = Step(encoder, self, self.stats, self.audit)
        self.specs = encoder.specs
        self.parquet = None
        if self.layout.hf_dataset:
            data = staging / HF_FOLDER / "data"
            self.parquet = {
                config: {
                    name: shards.split_writer(data / config, name, config, specs, self.work / "tables")
                    for name in self.files.names
                }
                for config, specs in self.specs.items()
            }
        if destination.earlier is not None:
            self._carry_over(destination.earlier)

    @property
    def skip(self) -> frozenset[str]:
        """The sample ids an earlier export holds: a chunk leaves them out (`run.chunks.ChunkJob.skip`)."""
        return frozenset(self.exported)

    def _carry_over(self, earlier: EarlierExport) -> None:
        """The earlier export's rows, each output from its own file (see `append.py`)."""
        from ..transform.collect import sample_id_for

        counts: dict[str, int] = {}
        if self.audit is not None:
            self.audit_earlier = earlier  # read again by `_audit_earlier`, after any worker has forked
        schema_version = earlier.manifest.schema_version
        for row, split_name in earlier.rows():
            sample_id = row.get("sample_id")
            if sample_id in self.exported:
                raise AppendError(
                    f"{self.output_dir / earlier.split_files[split_name]}: cannot append: sample {sample_id!r} is in "
                    "the export twice; rebuild with --no-append"
                )
            self.exported.add(sample_id)
            self.files.add_row(row, split_name)
            counts[split_name] = counts.get(split_name, 0) + 1
            record_id = (row.get("metadata") or {}).get("interaction_id")
            if schema_version is None and isinstance(record_id, str) and sample_id_for(record_id) != row["sample_id"]:
                # An export of an earlier version named this interaction otherwise: appending would add it twice.
                raise AppendError(
                    f"{self.output_dir}: cannot append: the export there names interaction {record_id!r} "
                    f"{row['sample_id']!r}, this version {sample_id_for(record_id)!r}; rebuild with --no-append"
                )
            if earlier.statistics_state is None:  # an export made before the manifest: recount from its rows
                self.stats.add(row, split_name)
            if self.tokens is not None:
                self.tokens[split_name].add(row)
            if self.parquet is not None and earlier.statistics_state is None:
                self.step.batches.add(TrainingSample.from_dict(row).to_dict(), split_name)
            self.result.kept_samples += 1
        for sample_id in earlier.manifest.held_out:  # in no file, but exported: a chunk leaves them out too
            self.exported.add(sample_id)
            self.held_out.append(sample_id)
        if earlier.statistics_state is not None:
            self.stats = self.step.stats = StatsAccumulator.from_state(earlier.statistics_state)
            if self.parquet is not None:
                self._carry_parquet(earlier, counts)
        else:
            self.step.flush()

    def _carry_parquet(self, earlier: EarlierExport, counts: dict[str, int]) -> None:
        data = self.folder.path / HF_FOLDER / "data"
        for config, writers in self.parquet.items():
            for split_name, writer in writers.items():
                rows = 0
                for table in earlier.tables(config, split_name, writer.schema):
                    rows += table.num_rows
                    writer.add_table(table)
                if config in ("full", "minimal", "messages") and rows != counts.get(split_name, 0):
                    raise AppendError(
                        f"{data / config}: cannot append: {split_name} has {rows} rows in its shards and "
                        f"{counts.get(split_name, 0)} in its JSON; rebuild with --no-append"
                    )

    def _audit_earlier(self) -> None:
        """Audit the earlier export's rows (an append), before any new one, at the first sample or chunk added. The
        rows as written: what a fresh export of them audited."""
        if self.audit_earlier is None:
            return
        earlier, self.audit_earlier = self.audit_earlier, None
        for row, name in earlier.rows():
            self.audit.add(row, name)

    def add(self, sample: TrainingSample) -> str | None:
        """Write one sample; returns its split, or None when an earlier export already holds it."""
        self._audit_earlier()
        if sample.sample_id in self.exported:
            return None
        self.exported.add(sample.sample_id)
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
            self.files.add_parts(
                split, chunk.json_part(split), chunk.jsonl_part(split), count, chunk.line_digests[split]
            )
        # Part files come only with workers, whose shards `shardwork.PlannedSplitWriter` plans (it removes each file).
        for (config, split), path in sorted(chunk.tables.items()):
            self.parquet[config][split].add_file(path, chunk.table_sizes[(config, split)])
        if self.tokens is not None:
            self._count_tokens(chunk)
        chunk.discard(keep_tables=True)
        self.stats.merge(chunk.encoded.stats)
        self.held_out.extend(chunk.encoded.held_out)
        if self.audit is not None:
            self.audit.merge(chunk.encoded.audit)
        # Not added to `self.exported`: the caller (job.py) tracks a chunk's ids, to find duplicates.
        self.result.new_samples += len(chunk.encoded.kept)

    def _count_tokens(self, chunk) -> None:
        """The token budgets of a chunk's rows, read back from its JSONL lines (in memory or in its part files)."""
        for split, lines in chunk.lines.items():
            for line in lines:
                self.tokens[split].add(line if isinstance(line, dict) else orjson.loads(line))
        for split in chunk.samples:
            with chunk.jsonl_part(split).open("rb") as f:
                for line in f:
                    self.tokens[split].add(orjson.loads(line))

    def token_budgets(self) -> dict:
        """The `tokens` section of `statistics.json`: the splits' budgets merged in split order."""
        from ..measure.tokens import TokenBudget
        from ..transform.views import chat_views

        merged = TokenBudget(self.tokenizer, self.max_length, chat_views(self.cfg))
        for name in self.files.names:
            merged.merge(self.tokens[name])
        return {self.tokenizer.key: merged.to_dict()}

    def add_all(self, samples: Iterable[TrainingSample]) -> "Exporter":
        for sample in samples:
            self.add(sample)
        return self

    def finish(self, *, token_usage: dict | None = None, rejected: list[dict] | None = None) -> ExportResult:
        """Close every file in the staging folder; the caller then commits the folder (`Destination.folder`)."""
        self._flush_items()
        self._audit_earlier()
        result = self.result
        result.statistics = self.stats.to_dict()
        assignment = self.encoder.assignment
        if assignment is not None:
            result.statistics["split_assignment"] = dict(assignment.section)
        if self.layout.split:
            stats = result.statistics
            result.warnings = skew_warnings(stats, self.cfg.ratios, self.cfg.split_by, self.cfg.split_assignment)
        trim_heap()  # what the pass freed back to the system before the end's work: its peak is there
        if self.audit is not None:
            result.statistics["leakage"] = self.audit.to_dict()
        if self.tokens is not None:
            result.statistics["tokens"] = self.token_budgets()
        if self.cfg.redact_secrets:
            from ..transform.redact import redaction_summary

            result.statistics["redacted_secrets"] = redaction_summary(self.stats.redactions)
        for name in self.files.names:
            result.json_files[name] = self.output_dir / self.files.json[name].path.name
            result.jsonl_files[name] = self.output_dir / self.files.jsonl[name].path.name
        small = {}  # kind -> JSON document
        if self.write_statistics:
            small["statistics"] = result.statistics
        if token_usage is not None:
            small["token_usage"] = token_usage
        staging = self.folder.staging
        self.files.wait()  # the JSON files' last writes ran on the thread while the audit compared its splits
        if self.parquet is not None:
            card = self._close_hf_dataset(result.statistics)
            for writers in self.parquet.values():
                for writer in writers.values():
                    writer.commit()
            folder = staging / HF_FOLDER
            write_json_atomic(folder / "statistics.json", result.statistics)
            write_json_atomic(folder / "provenance.json", self.provenance())
            (folder / "README.md").write_text(card, encoding="utf-8")
            self._keep_secrets_baseline(folder)
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
            state = assignment.to_state() if assignment is not None else None
            document = manifest(
                self.layout, self.cfg, self.collector, self.fingerprint(), split_files, self.stats.to_state(), state
            )
            if self.held_out or self.step.held_out:
                document["held_out"] = sorted({*self.held_out, *self.step.held_out})
            write_json_atomic(staging / MANIFEST_FILE, document)
        shutil.rmtree(self.work, ignore_errors=True)  # every shard is written: the chunks' part files are not needed
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
        from ..transform.views import config_rows

        rows = {config: {name: counts[0] for name, counts in by_split.items()} for config, by_split in splits.items()}
        statistics["configs"] = config_rows(rows, statistics["samples_by_split"])
        readme = self.folder.path / HF_FOLDER / "README.md"  # the earlier card: text its user added is kept
        existing = readme.read_text(encoding="utf-8") if readme.exists() else None
        infos = dataset_infos(self.specs, splits)
        languages = languages_of(({"language": value}, rows) for value, rows in self.stats.languages.items())
        settings = self.provenance()["settings"]
        return str(render_card(infos, statistics, settings, existing=existing, languages=languages or None))

    def _keep_secrets_baseline(self, folder: Path) -> None:
        """The reviewed exceptions of the earlier `hf_dataset/` (`hub/safety.py`) stay with the new one: they name
        findings by sample id, which an export does not change."""
        from ..measure.secrets import BASELINE_FILE

        earlier = self.folder.path / HF_FOLDER / BASELINE_FILE
        if earlier.is_file():
            shutil.copyfile(earlier, folder / BASELINE_FILE)

    def provenance(self) -> dict:
        """Where the data came from: package version, settings (nothing secret is ever in them) and a
        fingerprint of the exported rows — no wall-clock time, so unchanged data gives an unchanged file."""
        from ..version import __version__

        return {
            "generator": "personagym-hf",
            "version": __version__,
            "fingerprint": self.fingerprint(),
            "settings": settings_of(self.cfg),
        }

    def fingerprint(self) -> str:
        """A digest of the exported rows: each split's JSONL, line by line (see `JsonlWriter.fingerprint`)."""
        digest = hashlib.sha256()
        for name in self.files.names:
            digest.update(f"{name}:{self.files.jsonl[name].fingerprint()}\n".encode())
        return f"sha256:{digest.hexdigest()}"

    def abort(self) -> None:
        """Drop the files this run wrote; the caller then aborts the folder, which stays as it was."""
        for writers in (self.parquet or {}).values():
            for writer in writers.values():
                writer.abort()
        with contextlib.suppress(Exception):  # the writes handed to the thread end (or fail) before their files go
            self.files.wait()
        self.outputs.abort()
