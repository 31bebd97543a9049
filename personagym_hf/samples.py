"""Records -> valid samples, with the bad-record policy applied.

Every bad record (unreadable file, invalid JSON, wrong shape, failed validation, duplicate
interaction_id) becomes a `BadRecord` naming file, position, id and reason. `on_bad_records`:
`error` stops at the first, `warn` logs each and goes on, `skip` goes on quietly; every good record is
kept either way, and all bad ones are listed in the run's `rejected.jsonl`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .collect import InvalidInteraction, interaction_to_sample, record_warnings, validate_sample
from .config import OnBadRecords
from .schema import TrainingSample
from .store import BadRecord, Record

logger = logging.getLogger(__name__)

Convert = Callable[[dict], TrainingSample]


DUPLICATE = "duplicate interaction_id"  # how a repeated id's report starts (the builder looks for it)


class BadInputError(ValueError):
    """A bad record under `on_bad_records: error`."""


@dataclass
class Rejections:
    """Bad records and warnings seen in a run."""

    policy: OnBadRecords = "warn"
    bad: list[BadRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # "<location>: <message>"

    def reject(self, bad: BadRecord) -> None:
        if self.policy == "error":
            raise BadInputError(
                f"{bad.describe()} (fix the record, or rerun with --on-bad-records warn to skip bad records)"
            )
        self.bad.append(bad)
        if self.policy == "warn":
            logger.warning("skipped bad record: %s", bad.describe())

    def warn(self, record: Record, message: str) -> None:
        self.add_warning(f"{BadRecord(record.source, record.where, '').location()}: {message}")

    def add_warning(self, warning: str) -> None:
        self.warnings.append(warning)
        if self.policy != "skip":
            logger.warning("%s", warning)


def checks_itself(convert: Convert) -> bool:
    """Whether `convert` is the built-in conversion, which already makes every check of `validate_sample`
    as it converts (a test holds it to that), so its samples are not validated twice (4% of an export)."""
    from .training_data import TrainingDataCollector

    builtin = (interaction_to_sample, TrainingDataCollector.interaction_to_training_sample)
    return getattr(convert, "__func__", convert) in builtin


def iter_samples(
    records: Iterable[Record | BadRecord], convert: Convert, rejections: Rejections
) -> Iterator[tuple[TrainingSample, Record]]:
    """Valid samples in store order. Of two records with one interaction_id, the first read (the one
    whose path sorts first) is kept."""
    seen: dict[str, str] = {}
    validate = not checks_itself(convert)
    for record in records:
        if isinstance(record, BadRecord):
            rejections.reject(record)
            continue
        record_id = record.data.get("interaction_id")
        record_id = record_id if isinstance(record_id, str) else None
        try:
            sample = convert(record.data)
        except InvalidInteraction as e:
            rejections.reject(BadRecord(record.source, record.where, str(e), record_id))
            continue
        issues = validate_sample(sample) if validate else None
        if issues:
            rejections.reject(BadRecord(record.source, record.where, "; ".join(issues), record_id))
            continue
        first = seen.get(sample.sample_id)
        if first is not None:
            rejections.reject(
                BadRecord(
                    record.source,
                    record.where,
                    f"{DUPLICATE} (already read from {first}); kept the first",
                    record_id,
                )
            )
            continue
        here = record.source + (f" {record.where}" if record.where else "")
        seen[sample.sample_id] = here
        for message in record_warnings(record.data, sample):
            rejections.warn(record, message)
        yield sample, record
