"""The dataset configs: which columns each has (specs in the notation of `schema.py`).

- `full`: the sample's fields allowed by the format flags (the seed's JSON format);
- `minimal`: the seed's "Minimal Format";
- `messages`: TRL's conversational format (a `messages` column of `{role, content}`);
- `query_rewrite` ("ppopt"): one row per query variant the user typed, with `original_query` as target.

The columns of every config come from the format flags, here and nowhere else (`config_specs`): `full` keeps
the fields the flags allow, and `include_persona: false` also takes its fields (`persona_id`, `persona_features`,
`original_query`) out of every other config, since that flag is how a dataset is published without its
personas. The other flags shape the seed's format (`full`) only: the other configs are views of their own (a
`messages` config without messages would be no config).

`tables.py` builds every config's Arrow table from a batch of samples; `query_rewrite_rows` is the same
view row by row, for the ppopt JSONL.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from ..schema import FEATURE_SPECS, MESSAGE_SPEC

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


SOURCE_FIELD = {"messages": "full_conversation"}  # a config column taken from a differently named sample field
QUERY_VARIANT_COLUMNS = ("variant", "query", "noise_type", "applied_strategies")  # made by the view, per variant
EVERY_CONFIG_FLAGS = ("include_persona",)  # flags whose fields leave every config, not only `full`


def full_fields(flags: dict[str, bool]) -> tuple[str, ...]:
    excluded = {name for flag, names in FLAG_FIELDS.items() if not flags[flag] for name in names}
    return tuple(name for name in FEATURE_SPECS if name not in excluded)


def config_specs(flags: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Column specs of every config, `full` first (the default config)."""
    left_out = {name for flag in EVERY_CONFIG_FLAGS if not flags[flag] for name in FLAG_FIELDS[flag]}

    def kept(specs: dict[str, Any]) -> dict[str, Any]:
        return {name: spec for name, spec in specs.items() if SOURCE_FIELD.get(name, name) not in left_out}

    return {
        "full": {name: FEATURE_SPECS[name] for name in full_fields(flags)},
        "minimal": kept({name: FEATURE_SPECS[name] for name in MINIMAL_FIELDS}),
        "messages": kept(MESSAGES_SPECS),
        "query_rewrite": kept(QUERY_REWRITE_SPECS),
    }


def query_rewrite_rows(sample: dict, columns: Iterable[str] = tuple(QUERY_REWRITE_SPECS)) -> Iterator[dict]:
    """The styled query (variant "styled", noise_type "none") and then each noisy version ("noisy_<i>"), with the
    `columns` of the config (`config_specs(flags)["query_rewrite"]`)."""
    columns = tuple(columns)
    variants = [("styled", sample["initial_query"], "none", [])]
    for index, noisy in enumerate(sample["noisy_initial_queries"]):
        variants.append((f"noisy_{index}", noisy["noisy_text"], noisy["noise_type"], noisy["applied_strategies"]))
    for variant in variants:
        row = {**sample, **dict(zip(QUERY_VARIANT_COLUMNS, variant))}
        yield {name: row[name] for name in columns}


CONFIG_NAMES = ("full", "minimal", "messages", "query_rewrite")
