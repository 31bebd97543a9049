"""The dataset configs: which columns each has (specs in the notation of `schema.py`).

- `full`: the sample's fields allowed by the format flags (the seed's JSON format);
- `minimal`: the seed's "Minimal Format";
- `messages`: TRL's conversational format (a `messages` column of `{role, content}`);
- `query_rewrite` ("ppopt"): one row per query variant the user typed, with `original_query` as target.

`tables.py` builds every config's Arrow table from a batch of samples; `query_rewrite_rows` is the same
view row by row, for the ppopt JSONL.
"""

from __future__ import annotations

from typing import Any, Iterator

from .schema import FEATURE_SPECS, MESSAGE_SPEC

FLAG_FIELDS = {
    "include_persona": ("persona_id", "persona_features", "original_query"),
    "include_trajectory": ("prompt_trajectory",),
    "include_distractor_versions": ("noisy_initial_queries",),
    "include_full_conversation": ("full_conversation",),
    "include_metadata": ("metadata",),
}
MINIMAL_FIELDS = ("sample_id", "initial_query", "prompt_trajectory", "num_turns")
QUERY_REWRITE_SPECS = {
    "sample_id": "string",
    "persona_id": "string",
    "persona_features": "json",
    "variant": "string",
    "query": "string",
    "noise_type": "string",
    "applied_strategies": ["string"],
    "original_query": "string",
}
MESSAGES_SPECS = {
    "sample_id": "string",
    "persona_id": "string",
    "persona_features": "json",
    "messages": [MESSAGE_SPEC],
}


def full_fields(flags: dict[str, bool]) -> tuple[str, ...]:
    excluded = {name for flag, names in FLAG_FIELDS.items() if not flags[flag] for name in names}
    return tuple(name for name in FEATURE_SPECS if name not in excluded)


def query_rewrite_rows(sample: dict) -> Iterator[dict]:
    """The styled query (variant "styled", noise_type "none") and then each noisy version ("noisy_<i>")."""
    base = {
        "sample_id": sample["sample_id"],
        "persona_id": sample["persona_id"],
        "persona_features": sample["persona_features"],
    }
    yield {
        **base,
        "variant": "styled",
        "query": sample["initial_query"],
        "noise_type": "none",
        "applied_strategies": [],
        "original_query": sample["original_query"],
    }
    for index, noisy in enumerate(sample["noisy_initial_queries"]):
        yield {
            **base,
            "variant": f"noisy_{index}",
            "query": noisy["noisy_text"],
            "noise_type": noisy["noise_type"],
            "applied_strategies": noisy["applied_strategies"],
            "original_query": sample["original_query"],
        }


def config_specs(flags: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Column specs of every config, `full` first (the default config)."""
    return {
        "full": {name: FEATURE_SPECS[name] for name in full_fields(flags)},
        "minimal": {name: FEATURE_SPECS[name] for name in MINIMAL_FIELDS},
        "messages": MESSAGES_SPECS,
        "query_rewrite": QUERY_REWRITE_SPECS,
    }


CONFIG_NAMES = ("full", "minimal", "messages", "query_rewrite")
