"""A record read from a store, or one that could not be used: the types every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One interaction dict and where it came from (`where` is "line 3" / "item 3" / "")."""

    source: str
    where: str
    data: dict


@dataclass(frozen=True)
class BadRecord:
    """A record (or a whole file) that could not be used, and why."""

    source: str
    where: str
    reason: str
    record_id: str | None = None

    def location(self) -> str:
        parts = [self.source]
        if self.where:
            parts.append(self.where)
        if self.record_id:
            parts.append(f"interaction_id={self.record_id!r}")
        return ", ".join(parts)

    def describe(self) -> str:
        return f"{self.location()}: {self.reason}"

    def to_dict(self) -> dict:
        return {"file": self.source, "where": self.where, "interaction_id": self.record_id, "reason": self.reason}
