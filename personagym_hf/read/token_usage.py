"""Merging upstream TokenTracker exports (`token_usage*.json`) into one file of the same shape.

A record found in two exports (the same call exported twice) is counted once: records are keyed by
their full content. Totals are recomputed from the merged records. An export without `records` (only
totals) is added as it is, once per distinct content.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import orjson

from .records import TOKEN_USAGE, BadRecord

_COUNTS = ("input_tokens", "output_tokens", "total_tokens")
SUMMARY_KEYS = {
    "input_tokens": "total_input_tokens",
    "output_tokens": "total_output_tokens",
    "total_tokens": "total_tokens",
}


def _bucket() -> dict[str, int]:
    return {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "call_count": 0}


def _model_key(record: dict) -> str:
    provider, model = record.get("provider"), record.get("model") or "unknown"
    return f"{provider}/{model}" if provider else str(model)


def merge_token_usage(paths: Iterable[Path]) -> tuple[dict[str, Any] | None, list[BadRecord]]:
    """The merged usage (None when no file holds any) and the files that could not be used."""
    records: dict[bytes, dict] = {}
    summaries_only: dict[bytes, dict] = {}
    bad: list[BadRecord] = []
    for path in paths:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            bad.append(BadRecord(path.as_posix(), "", f"unreadable token usage file ({e})", kind=TOKEN_USAGE))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("records", []), list):
            bad.append(
                BadRecord(
                    path.as_posix(), "", "expected a TokenTracker export with a 'records' list", kind=TOKEN_USAGE
                )
            )
            continue
        if data.get("records"):
            for record in data["records"]:
                if isinstance(record, dict):
                    records.setdefault(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), record)
        elif data.get("summary"):
            summaries_only.setdefault(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), data)
    if not records and not summaries_only:
        return None, bad

    ordered = sorted(
        records.values(),
        key=lambda r: (
            orjson.dumps(
                [r.get("timestamp") or "", r.get("module") or "", r.get("operation") or ""],
                option=orjson.OPT_SORT_KEYS,
            )
            + orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
        ),
    )
    by_module: dict[str, dict[str, int]] = defaultdict(_bucket)
    by_model: dict[str, dict[str, int]] = defaultdict(_bucket)
    for record in ordered:
        for bucket in (by_module[record.get("module") or "unknown"], by_model[_model_key(record)]):
            for key in _COUNTS:
                bucket[key] += int(record.get(key) or 0)
            bucket["call_count"] += 1
    for export in summaries_only.values():
        for section, target in (("by_module", by_module), ("by_model", by_model)):
            for name, values in (export.get(section) or {}).items():
                for key in (*_COUNTS, "call_count"):
                    target[name][key] += int((values or {}).get(key) or 0)
    summary = {
        "total_calls": len(ordered) + sum(int(e["summary"].get("total_calls") or 0) for e in summaries_only.values())
    }
    for key, total_key in SUMMARY_KEYS.items():
        summary[total_key] = sum(int(r.get(key) or 0) for r in ordered) + sum(
            int(e["summary"].get(total_key) or 0) for e in summaries_only.values()
        )
    return {
        "summary": summary,
        "by_module": dict(sorted(by_module.items())),
        "by_model": dict(sorted(by_model.items())),
        "records": ordered,
    }, bad
