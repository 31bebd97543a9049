"""Redaction at export (`--redact-secrets`): every secret in a sample replaced by a typed placeholder.

`encode.Step.add` runs `redact_sample` on each sample dict before anything else sees it, so every output made from
the sample (the JSON and JSONL rows, every Parquet config, the statistics, the audit, the ppopt lines made from the
export later) holds the placeholder and never the secret: clean by construction, with the same bytes for any
`--num-proc` or engine, since workers run the same step. A finding becomes `<REDACTED:kind>` (`measure/secrets.py`
names the kinds); the text around it is kept, so `postgres://app:<REDACTED:url_password>@db:5432` still reads as
a connection string.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator, Mapping, TypeVar

import orjson

from ..measure.secrets import PREFILTER, find_secrets, json_holds_secrets, may_hold_secrets, split_prefilter
from ..wording import plural

MAX_PASSES = 3  # a text is scanned again after its findings are replaced, until none is left
BATCH = 1024  # samples whose JSON one RE2 search covers (`redact_samples`)
T = TypeVar("T")


def placeholder(kind: str) -> str:
    return f"<REDACTED:{kind}>"


def redact_text(text: str, counts: Counter) -> str:
    """`text` with each secret replaced by its placeholder (counted in `counts`, by kind). Scanned again after the
    replacements, so what comes out has no finding left even where two findings overlapped."""
    for _ in range(MAX_PASSES):
        found = find_secrets(text)
        if not found:
            break
        parts, last = [], 0
        for secret in found:
            parts += (text[last : secret.start], placeholder(secret.kind))
            last = secret.end
            counts[secret.kind] += 1
        parts.append(text[last:])
        text = "".join(parts)
    return text


def _redacted(value: Any, counts: Counter) -> Any:
    if isinstance(value, str):
        return redact_text(value, counts) if may_hold_secrets(value) else value
    if isinstance(value, dict):
        return {_redacted(key, counts): _redacted(item, counts) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item, counts) for item in value]
    return value


def _part(data: dict, fields: tuple[str, ...] | None) -> dict:
    return data if fields is None else {name: data[name] for name in fields if name in data}


def redact_sample(
    data: dict, dump: bytes | None = None, rules: list[int] | None = None, fields: tuple[str, ...] | None = None
) -> tuple[dict, Counter]:
    """The sample dict with every secret in its strings (keys too) replaced, and the count of each kind replaced.
    A sample whose JSON (`dump`, made here when not given) holds no secret (most of them) is returned as it is.
    `rules`: the only rules its JSON may match (`secrets.split_prefilter`). `fields`: only these (a pass whose only
    output is rows of these fields, such as the splits' pre-pass, need not look at the rest); None: every field."""
    counts: Counter = Counter()
    part = _part(data, fields)
    try:
        if not json_holds_secrets(orjson.dumps(part) if dump is None else dump, rules):
            return data, counts
    except TypeError:  # a custom collector's value orjson cannot write: walk the strings instead
        pass
    redacted = _redacted(part, counts)
    return (redacted if fields is None else {**data, **redacted}), counts


def redact_samples(samples: list[dict], fields: tuple[str, ...] | None = None) -> list[tuple[dict, Counter]]:
    """`redact_sample` of each sample, a batch at a time: one RE2 search (Arrow's) over the JSON of every sample finds
    the few that match a rule's prefilter, and only those are looked at in Python (a Python search for every rule's
    keywords in every sample would cost several times as much)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        dumps = [orjson.dumps(_part(data, fields)) for data in samples]
    except TypeError:
        return [redact_sample(data, fields=fields) for data in samples]
    array = pa.array(dumps, pa.string())
    mask = pc.match_substring_regex(array, PREFILTER)
    done = [(data, Counter()) for data in samples]
    for position, rules in zip(pc.indices_nonzero(mask).to_pylist(), split_prefilter(array, mask)):
        done[position] = redact_sample(samples[position], dumps[position], rules, fields)
    return done


def redacted_in_batches(
    items: Iterable[tuple[dict, T]], redact: bool, fields: tuple[str, ...] | None = None, batch: int = BATCH
) -> Iterator[tuple[dict, Counter | None, T]]:
    """(sample dict, its redaction counts, what goes with it) for each of `items`, the dicts (their `fields`, None:
    all) redacted `batch` at a time when `redact` (counts None when not: the sample is as it came)."""
    if not redact:
        for data, other in items:
            yield data, None, other
        return
    pending: list[tuple[dict, T]] = []
    for item in items:
        pending.append(item)
        if len(pending) >= batch:
            yield from _redacted_batch(pending, fields)
            pending = []
    yield from _redacted_batch(pending, fields)


def _redacted_batch(
    pending: list[tuple[dict, T]], fields: tuple[str, ...] | None
) -> Iterator[tuple[dict, Counter, T]]:
    if pending:
        for (data, counts), (_original, other) in zip(redact_samples([data for data, _ in pending], fields), pending):
            yield data, counts, other


def redaction_summary(counts: Mapping[str, int]) -> dict[str, Any]:
    """The `redacted_secrets` section of `statistics.json`: the total and the count of each kind, most first."""
    ranked = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return {"total": sum(ranked.values()), "by_kind": ranked}


def summary_line(summary: Mapping[str, Any]) -> str:
    """The export's summary line for `redacted_secrets`."""
    if not summary["total"]:
        return "redacted no secrets (none found)"
    kinds = ", ".join(f"{count} {kind}" for kind, count in summary["by_kind"].items())
    return f"redacted {plural(summary['total'], 'secret')} ({kinds})"
