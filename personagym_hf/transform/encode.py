"""The per-record pipeline, written once: records -> samples -> split -> rows, Arrow tables, statistics, audit.

`encode` takes records (from any reader) and the settings of one export (`Encoder`), converts and validates them
(`samples.iter_samples`: the bad-record policy and the duplicates within the records), gives each kept sample its
split, and hands its row and (a batch at a time) every config's Arrow table to a `Sink`. It returns what the
caller needs to merge batches of records in store order (`Encoded`): the kept samples and where they were read,
the duplicates of ids an earlier batch had, the bad records, the warnings, the statistics and the audit.

No globals and no file I/O: everything it needs is in its arguments, and every argument pickles (a custom
collector must be importable to), so the in-process export, worker processes of any start method, the
`datasets` builder, `validate`/`stats`, the benchmark and a distributed engine all run this same code. What the
rows become (JSON bytes, part files, a builder's tables, nothing) is the sink's business: sinks are edges.

The seed's `Exporter.add` gives samples one at a time; it runs the same per-sample `Step`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Container, Iterable, Iterator, Mapping, Protocol

import pyarrow as pa

from ..config import ExportConfig, RunOptions, split_names
from ..measure.stats import StatsAccumulator
from ..read.records import BadRecord, Record
from .policy import Convert, Rejections, duplicate, iter_samples, record_id
from .redact import redact_sample, redacted_in_batches
from .split import assign_split, split_key
from .tables import ViewTables
from .views import config_specs, full_fields


def needs_assignment(cfg: ExportConfig) -> bool:
    """Whether a mode gives splits to groups of the whole store (a pre-pass, `assign.py`), or to each sample by a
    hash of its own key (`split_by: sample`, and `persona` with `split_assignment: hashed`)."""
    return cfg.split_by != "sample" and not (cfg.split_by == "persona" and cfg.split_assignment == "hashed")


class Encoder:
    """One export's settings for every record: which split a sample goes to, its row in the JSON files, the
    dataset configs whose Arrow tables are built, the audit. Picklable: worker processes get a copy.

    `views`: build Arrow tables (for `hf_dataset/`); `audit`: the leakage audit of the rows, "near", "exact" or None
    (`measure.leakage.resolve_mode`); `assignment`: the split of each group of the store (`assign.Assignment`, from
    its pre-pass), which every mode but `sample` and hashed `persona` needs (`needs_assignment`). `configs`: of these
    dataset configs only (default: all). `only_split`: samples of other
    splits are passed over (the `datasets` builder generates one split at a time). `fields`: a row's fields
    (default: those the format flags export). `options`: the sizes of Arrow batches and of the split cache.
    """

    def __init__(
        self,
        cfg: ExportConfig,
        split: bool,
        views: bool,
        audit: str | None = None,
        *,
        assignment: Any = None,
        configs: Iterable[str] | None = None,
        only_split: str | None = None,
        fields: Iterable[str] | None = None,
        options: RunOptions = RunOptions(),
    ):
        self.cfg, self.split = cfg, split
        self.audit = audit
        self.split_names = split_names(cfg.split_by) if split else ("train",)
        self.fields = tuple(fields) if fields is not None else full_fields(cfg.format)  # a row's fields
        specs = config_specs(cfg.format) if views else {}
        if configs is not None:
            wanted = set(configs)
            specs = {name: spec for name, spec in specs.items() if name in wanted}
        self.specs = specs  # dataset configs to build (none: no Parquet)
        self.only_split = only_split
        self.batch_rows = options.batch_rows  # samples per Arrow batch
        self.splits: dict[str, str] = {}  # split key -> split
        self.split_cache = options.split_cache
        self.assignment = assignment
        if split and assignment is None and needs_assignment(cfg):
            from .split import NeedsGroupsError

            raise NeedsGroupsError(
                f"split_by {cfg.split_by} with split_assignment {cfg.split_assignment} gives splits to groups of the "
                "whole store, so it reads the store before any split is given: export it with `personagym-hf "
                "export` or `export_store`, or set split_assignment: hashed (split_by persona or sample) here"
            )

    def split_of(self, data: dict) -> str | None:
        """The sample's split (None: held out, under `split_by: grid`): its group's, or `split.split_of` remembered
        per key (a persona has many samples, and a salted sha256 for each would be one of the per-record step's
        larger costs; bounded, for stores whose keys are all different: `split_by: sample`)."""
        if not self.split:
            return "train"
        if self.assignment is not None:  # the groups' splits, from the pre-pass (assign.py)
            return self.assignment.split_of(data)
        key = split_key(data, self.cfg.split_by)
        split = self.splits.get(key)
        if split is None:
            if len(self.splits) >= self.split_cache:
                self.splits.clear()
            split = self.splits[key] = assign_split(key, self.cfg.seed, self.cfg.ratios)
        return split

    def row(self, data: dict) -> dict:
        return {name: data[name] for name in self.fields}

    @property
    def redacted_fields(self) -> tuple[str, ...] | None:
        """What `--redact-secrets` looks at: every field when Arrow tables are built (a config may show a field the
        rows leave out), else the rows' fields, all such a pass writes (the splits' pre-pass reads four)."""
        return None if self.specs else self.fields

    def new_audit(self, spill_dir: Any = None) -> Any:
        """An empty `audit.LeakageAudit` for this export's audit mode, or None when it does not audit. `spill_dir`:
        where its rows go past a few thousand (see `LeakageAudit`)."""
        if self.audit is None:
            return None
        from ..measure.leakage import LeakageAudit

        return LeakageAudit(near=self.audit == "near", spill_dir=spill_dir)


class Sink(Protocol):
    """Where encoded samples go."""

    def row(self, split: str, row: dict) -> None:
        """One kept sample's row of the JSON files (`Encoder.row`), in store order."""

    def table(self, config: str, split: str, table: pa.Table) -> None:
        """A batch of one config's rows."""


class NoOutput:
    """A sink that drops everything: for a run that needs only the samples kept, the statistics and the reports
    (validate, stats, the builder's pre-pass)."""

    def row(self, split: str, row: dict) -> None:
        pass

    def table(self, config: str, split: str, table: pa.Table) -> None:
        pass


class Rows:
    """A sink that keeps the rows, in store order, as (split, row): for a caller that needs every kept sample's
    fields, such as the grouping pre-pass of `split_by: persona_and_query`."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict]] = []

    def row(self, split: str, row: dict) -> None:
        self.rows.append((split, row))

    def table(self, config: str, split: str, table: pa.Table) -> None:
        pass


class Batches:
    """Each split's samples, turned into every config's Arrow table a batch at a time and handed to the sink."""

    def __init__(self, encoder: Encoder, sink: Sink):
        self.tables, self.sink = ViewTables(encoder.cfg.format, encoder.specs, encoder.cfg.prompts), sink
        self.batch_rows = encoder.batch_rows
        self.samples: dict[str, list[dict]] = {}

    def add(self, data: dict, split: str) -> None:
        batch = self.samples.setdefault(split, [])
        batch.append(data)
        if len(batch) >= self.batch_rows:
            self.flush(split)

    def flush(self, split: str) -> None:
        if self.samples.get(split):
            for config, table in self.tables.build(self.samples[split]).items():
                self.sink.table(config, split, table)
            self.samples[split] = []

    def flush_all(self) -> None:
        for split in list(self.samples):
            self.flush(split)


class Step:
    """The per-sample step: a sample's split, then its row, statistics, audit and Arrow batch.

    `stats` and `audit` are the accumulators it adds to (an export's own, or a batch's in `encode`); None: none."""

    def __init__(self, encoder: Encoder, sink: Sink, stats: StatsAccumulator | None, audit: Any = None):
        self.encoder, self.sink, self.stats, self.audit = encoder, sink, stats, audit
        self.batches = Batches(encoder, sink) if encoder.specs else None
        self.held_out: list[str] = []  # ids of the samples in no split, for the manifest (an append skips them)

    def add(self, data: dict, redacted: Counter | None = None) -> str | None:
        """Add one sample (`TrainingSample.to_dict()`); returns its split, or None when it is held out (counted in the
        statistics only) or `only_split` passes it over. `redacted`: the counts of a sample `redact.py` redacted
        already (None: redact it here if the export does)."""
        encoder = self.encoder
        if redacted is None and encoder.cfg.redact_secrets:  # before anything sees the sample (redact.py)
            data, redacted = redact_sample(data, fields=encoder.redacted_fields)
        split = encoder.split_of(data)
        if split is None:
            if self.stats is not None:
                self.stats.hold_out(data)
            self.held_out.append(data["sample_id"])
            return None
        if encoder.only_split is not None and split != encoder.only_split:
            return None
        row = encoder.row(data)
        self.sink.row(split, row)
        if self.stats is not None:
            self.stats.add(data, split)
            if redacted:
                self.stats.redactions.update(redacted)
        if self.audit is not None:  # the rows as written: what an append reads back (export.py)
            self.audit.add(row, split)
        if self.batches is not None:
            self.batches.add(data, split)
        return split

    def flush(self) -> None:
        """Hand over the Arrow batches not yet full."""
        if self.batches is not None:
            self.batches.flush_all()


@dataclass(frozen=True)
class Kept:
    """A sample that `encode` kept, and where its record was read."""

    sample_id: str
    source: str
    where: str
    interaction_id: str | None


@dataclass
class Encoded:
    """What `encode` gives back besides what went to the sink."""

    kept: list[Kept] = field(default_factory=list)  # not bad, no duplicate (of any split, under `only_split`)
    duplicates: list[Kept] = field(default_factory=list)  # dropped: an earlier batch had their id (`earlier`)
    bad: list[BadRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: StatsAccumulator = field(default_factory=StatsAccumulator)
    audit: Any = None  # the batch's `audit.LeakageAudit`, when the export audits
    held_out: list[str] = field(default_factory=list)  # ids of kept samples in no split

    def report(self, rejections: Rejections, firsts: Mapping[str, str]) -> None:
        """Give `rejections` this batch's bad records, then its duplicates (`firsts`: where each duplicate's id was
        first read, as `samples.place` names it), then its warnings: a run's reports, in store order."""
        for bad in self.bad:
            rejections.reject(bad)
        for kept in self.duplicates:
            rejections.reject(duplicate(kept.source, kept.where, firsts[kept.sample_id], kept.interaction_id))
        for warning in self.warnings:
            rejections.add_warning(warning)


def encode(
    records: Iterable[Record | BadRecord],
    encoder: Encoder,
    convert: Convert,
    sink: Sink,
    *,
    skip: Container[str] = frozenset(),
    earlier: Container[str] = frozenset(),
    statistics: bool = True,
) -> Encoded:
    """Encode `records` into `sink`. Samples whose id is in `skip` (an earlier export holds them: append) are left
    out unreported; those in `earlier` (ids an earlier batch of the same run kept) are left out and listed as
    duplicates. Bad records are collected in store order, for the caller to report; under `on_bad_records: error`
    the first one raises `samples.BadInputError` at once. `statistics=False` (the splits' pre-pass, which needs the
    group keys only): `Encoded.stats` stays empty."""
    result = Encoded(audit=encoder.new_audit())
    step = Step(encoder, sink, result.stats if statistics else None, result.audit)
    rejections = Rejections("error" if encoder.cfg.on_bad_records == "error" else "skip")

    def to_add() -> Iterator[tuple[dict, Kept]]:
        for sample, record in iter_samples(records, convert, rejections):
            sample_id = sample.sample_id
            if sample_id in skip:
                continue
            kept = Kept(sample_id, record.source, record.where, record_id(record))
            if sample_id in earlier:
                result.duplicates.append(kept)
                continue
            yield sample.to_dict(), kept

    for data, redacted, kept in redacted_in_batches(to_add(), encoder.cfg.redact_secrets, encoder.redacted_fields):
        step.add(data, redacted)
        result.kept.append(kept)  # under `only_split` too: what is kept does not depend on the split
    step.flush()
    result.bad, result.warnings, result.held_out = rejections.bad, rejections.warnings, step.held_out
    return result
