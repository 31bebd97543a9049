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

from ..config import ConfigError, OnBadRecords
from ..read.records import DUPLICATE, BadRecord, Record
from ..schema import TrainingSample
from .collect import CHECKS_ITSELF, InvalidInteraction, record_warnings, validate_sample

logger = logging.getLogger(__name__)

Convert = Callable[[dict], TrainingSample]


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
    as it converts (a test holds it to that), so its samples are not validated twice."""
    # A marker, not a comparison with `TrainingDataCollector`'s method: that class is a face above this layer. A
    # subclass that overrides the method has a function of its own, unmarked, whatever it calls.
    return getattr(convert, CHECKS_ITSELF, False) is True


def checked(record: Record, convert: Convert, validate: bool) -> TrainingSample | BadRecord:
    """A record's sample, or the BadRecord saying why it has none (duplicates aside: see `iter_samples`)."""
    try:
        sample = convert(record.data)
    except InvalidInteraction as e:
        return BadRecord(record.source, record.where, str(e), record_id(record))
    if not isinstance(sample, TrainingSample):  # a custom collector's mistake, not the record's: stop with it
        where = BadRecord(record.source, record.where, "", record_id(record)).location()
        raise ConfigError(
            f"the collector {getattr(convert, '__qualname__', convert)!r} returned {type(sample).__name__} for "
            f"{where}; it must return a TrainingSample"
        )
    issues = validate_sample(sample) if validate else None
    if issues:
        return BadRecord(record.source, record.where, "; ".join(issues), record_id(record))
    return sample


def record_id(record: Record) -> str | None:
    """The record's own interaction_id, as its reports name it (None when it has none, or not a string)."""
    value = record.data.get("interaction_id")
    return value if isinstance(value, str) else None


def place(source: str, where: str) -> str:
    """Where a record was read, as a duplicate's report names its first copy."""
    return source + (f" {where}" if where else "")


def duplicate(source: str, where: str, first: str, interaction_id: str | None) -> BadRecord:
    """The report of a record whose id a record read before it (at `first`, see `place`) has."""
    reason = f"duplicate interaction_id (already read from {first}); kept the first"
    return BadRecord(source, where, reason, interaction_id, kind=DUPLICATE)


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
        sample = checked(record, convert, validate)
        if isinstance(sample, BadRecord):
            rejections.reject(sample)
            continue
        first = seen.get(sample.sample_id)
        if first is not None:
            rejections.reject(duplicate(record.source, record.where, first, record_id(record)))
            continue
        seen[sample.sample_id] = place(record.source, record.where)
        for message in record_warnings(record.data, sample):
            rejections.warn(record, message)
        yield sample, record
