"""A record read from a store, or one that could not be used: the types every layer passes around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One interaction dict and where it came from (`where` is "line 3" / "item 3" / "")."""

    source: str
    where: str
    data: dict


# What kind of bad record it is: a field, so that nothing has to read it out of the reason's text.
UNREADABLE = "unreadable"  # the file cannot be read (or changed while it was)
INVALID_JSON = "invalid_json"  # not JSON, or not UTF-8
NOT_AN_OBJECT = "not_an_object"  # JSON, but no object
INVALID = "invalid"  # an object that makes no valid sample
DUPLICATE = "duplicate"  # an interaction_id read before
TOKEN_USAGE = "token_usage"  # a token usage export that cannot be merged
KINDS = {
    UNREADABLE: "unreadable",
    INVALID_JSON: "invalid JSON",
    NOT_AN_OBJECT: "not an object",
    INVALID: "invalid",
    DUPLICATE: "duplicate",
    TOKEN_USAGE: "bad token usage",
}  # kind -> how a count of them is worded


@dataclass(frozen=True)
class BadRecord:
    """A record (or a whole file) that could not be used, why, and what kind of bad record it is (`KINDS`)."""

    source: str
    where: str
    reason: str
    record_id: str | None = None
    kind: str = INVALID

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
