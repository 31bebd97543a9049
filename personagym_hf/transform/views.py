"""The dataset configs: which columns each has (specs in the notation of `schema.py`), and the chat configs' rows.

- `full`: the sample's fields allowed by the format flags (the seed's JSON format);
- `minimal`: the seed's "Minimal Format";
- `messages`: TRL's conversational language-modeling format (a `messages` column of `{role, content}`);
- `last_turn`: TRL's conversational prompt-completion format: `prompt` the conversation up to its last user turn,
  `completion` the assistant turn after it;
- `query_rewrite` ("ppopt"): one row per query variant the user typed, with `original_query` as target;
- `rewrite`: the same rows in TRL's conversational prompt-completion format: `prompt` a system message (the
  instruction and the persona's features, `config.Prompts`) and the query, `completion` the `original_query`.

The columns of every config come from the format flags, here and nowhere else (`config_specs`): `full` keeps
the fields the flags allow, and `include_persona: false` also takes its fields (`persona_id`, `persona_features`,
`original_query`) out of every other config, since that flag is how a dataset is published without its
personas: `rewrite` then has no persona in its prompt and no `completion` (a prompt-only dataset). The other flags
shape the seed's format (`full`) only: the other configs are views of their own (a `messages` config without
messages would be no config).

Two configs leave samples out, and `config_rows` counts them for the statistics: `last_turn` a sample whose
conversation does not end with assistant messages after a user message (`last_turn_cut`), `rewrite` (when it has a
completion) a sample whose `original_query` is empty (a custom collector's: the built-in conversion falls back to
`initial_query`).

`tables.py` builds every config's Arrow table from a batch of samples; `query_rewrite_rows` and `ChatViews.rows`
are the same views row by row (the ppopt JSONL, the token budgets, the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator

import orjson

from ..config import ExportConfig, Prompts
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
LAST_TURN_SPECS = {
    "sample_id": "string",
    "persona_id": "string",
    "persona_features": "json",
    "prompt": [MESSAGE_SPEC],
    "completion": [MESSAGE_SPEC],
}
REWRITE_SPECS = {
    "sample_id": "string",
    "persona_id": "string",
    "variant": "string",
    "noise_type": "string",
    "prompt": [MESSAGE_SPEC],
    "completion": [MESSAGE_SPEC],
}

SOURCE_FIELD = {"messages": "full_conversation"}  # a config column taken from a differently named sample field
QUERY_VARIANT_COLUMNS = ("variant", "query", "noise_type", "applied_strategies")  # made by the view, per variant
EVERY_CONFIG_FLAGS = ("include_persona",)  # flags whose fields leave every config, not only `full`
CHAT_CONFIGS = ("last_turn", "rewrite")  # the prompt-completion configs (`ChatViews`)


def full_fields(flags: dict[str, bool]) -> tuple[str, ...]:
    excluded = {name for flag, names in FLAG_FIELDS.items() if not flags[flag] for name in names}
    return tuple(name for name in FEATURE_SPECS if name not in excluded)


def config_specs(flags: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Column specs of every config, `full` first (the default config)."""
    left_out = {name for flag in EVERY_CONFIG_FLAGS if not flags[flag] for name in FLAG_FIELDS[flag]}

    def kept(specs: dict[str, Any], source: dict[str, str] = SOURCE_FIELD) -> dict[str, Any]:
        return {name: spec for name, spec in specs.items() if source.get(name, name) not in left_out}

    return {
        "full": {name: FEATURE_SPECS[name] for name in full_fields(flags)},
        "minimal": kept({name: FEATURE_SPECS[name] for name in MINIMAL_FIELDS}),
        "messages": kept(MESSAGES_SPECS),
        "last_turn": kept(LAST_TURN_SPECS),
        "query_rewrite": kept(QUERY_REWRITE_SPECS),
        "rewrite": kept(REWRITE_SPECS, {"completion": "original_query"}),
    }


def query_rewrite_rows(sample: dict, columns: Iterable[str] = tuple(QUERY_REWRITE_SPECS)) -> Iterator[dict]:
    """The styled query (variant "styled", noise_type "none") and then each noisy version ("noisy_<i>"), with the
    `columns` of the config (`config_specs(flags)["query_rewrite"]`)."""
    columns = tuple(columns)
    for variant in query_variants(sample):
        row = {**sample, **dict(zip(QUERY_VARIANT_COLUMNS, variant))}
        yield {name: row[name] for name in columns}


def query_variants(sample: dict) -> list[tuple[str, str, str, list[str]]]:
    """(variant, query, noise_type, applied_strategies) of each query the user typed: the styled one, then each
    noisy version. A row without `noisy_initial_queries` (a format flag left them out) has the styled one only."""
    variants = [("styled", sample["initial_query"], "none", [])]
    for index, noisy in enumerate(sample.get("noisy_initial_queries") or ()):
        variants.append((f"noisy_{index}", noisy["noisy_text"], noisy["noise_type"], noisy["applied_strategies"]))
    return variants


def last_turn_cut(messages: list[dict]) -> int | None:
    """Where a conversation splits into the `last_turn` prompt and completion: after its last user message, when
    assistant messages (one or more) follow it and nothing else. None: the sample is left out of `last_turn` (its
    conversation ends with a user turn, a cut-short dialogue, or it has no user or no assistant turn)."""
    for index in range(len(messages) - 1, -1, -1):
        role = messages[index].get("role")
        if role == "user":
            return index + 1 if index + 1 < len(messages) else None
        if role != "assistant":
            return None
    return None


def feature_value(value: Any) -> str:
    """A persona feature's value as text: a string with its whitespace runs made single spaces, a list's items
    joined by ", ", anything else as compact JSON (sorted keys); "" for a null or empty value."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, (list, tuple)):
        return ", ".join(text for text in map(feature_value, value) if text)
    if value is None or value == {}:
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def persona_text(features: dict | None, intro: str) -> str:
    """The persona as the `rewrite` prompt shows it: `intro`, then a `- key: value` line per feature, keys sorted
    and their underscores made spaces, empty values left out; "" when no feature has a value."""
    lines = []
    for key in sorted(features or {}, key=str):
        value = feature_value(features[key])
        if value:
            lines.append(f"- {str(key).replace('_', ' ')}: {value}")
    if not lines:
        return ""
    return "\n".join([intro, *lines] if intro else lines)


@dataclass(frozen=True)
class ChatViews:
    """The rows of the prompt-completion configs, from a sample (or an exported row: fields the format flags left
    out are missing). `include_persona`: the format flag; without it no persona and no completion in `rewrite`."""

    prompts: Prompts = field(default_factory=Prompts)
    include_persona: bool = True
    configs: ClassVar[tuple[str, ...]] = CHAT_CONFIGS  # the configs whose rows `rows` gives

    def rewrite_system(self, sample: dict) -> str:
        """The `rewrite` prompt's system text: the instruction, a blank line, the persona ("" when both are empty)."""
        parts = [self.prompts.rewrite_instruction]
        if self.include_persona and self.prompts.persona == "system":
            parts.append(persona_text(sample.get("persona_features"), self.prompts.persona_intro))
        return "\n\n".join(part for part in parts if part)

    def rewrite_target(self, sample: dict) -> str | None:
        """The `rewrite` completion's text; None when the config has no completion (no `include_persona`)."""
        return (sample.get("original_query") or "") if self.include_persona else None

    def has_rewrite(self, sample: dict) -> bool:
        """Whether the sample has rows in `rewrite`: not when the completion it would have is empty."""
        target = self.rewrite_target(sample)
        return target is None or bool(target.strip())

    def rewrite(self, sample: dict) -> Iterator[tuple[str, str, list[dict], list[dict] | None]]:
        """(variant, noise_type, prompt, completion) of each of the sample's `rewrite` rows."""
        if not self.has_rewrite(sample):
            return
        system, target = self.rewrite_system(sample), self.rewrite_target(sample)
        head = [{"role": "system", "content": system}] if system else []
        completion = None if target is None else [{"role": "assistant", "content": target}]
        for variant, query, noise_type, _strategies in query_variants(sample):
            yield variant, noise_type, [*head, {"role": "user", "content": query}], completion

    @staticmethod
    def last_turn(sample: dict) -> tuple[list[dict], list[dict]] | None:
        """(prompt, completion) of the sample's `last_turn` row, or None (see `last_turn_cut`)."""
        messages = sample.get("full_conversation") or sample.get("messages") or []
        cut = last_turn_cut(messages)
        if cut is None:
            return None
        return messages[:cut], messages[cut:]

    def rows(self, sample: dict) -> Iterator[tuple[str, str, list[dict], list[dict] | None]]:
        """(config, row id, prompt, completion) of every chat-config row of the sample: what the token budgets
        render. A row id is the sample id, and `/variant` for `rewrite`."""
        sample_id = str(sample.get("sample_id") or "")
        if sample.get("full_conversation") or sample.get("messages"):
            turn = self.last_turn(sample)
            if turn is not None:
                yield "last_turn", sample_id, turn[0], turn[1]
        if isinstance(sample.get("initial_query"), str):
            for variant, _noise, prompt, completion in self.rewrite(sample):
                yield "rewrite", f"{sample_id}/{variant}", prompt, completion

    def config_rows(self, config: str, sample: dict, columns: Iterable[str]) -> Iterator[dict]:
        """The sample's rows of `config` ("last_turn" or "rewrite") with its `columns`, as `tables.py` builds them."""
        columns = tuple(columns)
        if config == "last_turn":
            turn = self.last_turn(sample)
            rows = [] if turn is None else [{**sample, "prompt": turn[0], "completion": turn[1]}]
        else:
            rows = [
                {**sample, "variant": variant, "noise_type": noise, "prompt": prompt, "completion": completion}
                for variant, noise, prompt, completion in self.rewrite(sample)
            ]
        for row in rows:
            yield {name: row[name] for name in columns}


def chat_views(cfg: ExportConfig) -> ChatViews:
    return ChatViews(cfg.prompts, cfg.format["include_persona"])


def config_rows(rows: dict[str, dict[str, int]], samples: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The `configs` section of `statistics.json`: each config's rows per split, and what the configs that leave
    samples out left out, from the rows written (`rows`: config -> split -> rows; `samples`: split -> samples).
    `last_turn` leaves out samples, `rewrite` the query variants (`query_rewrite` rows) of the samples it leaves
    out."""
    section: dict[str, dict[str, Any]] = {}
    for config, splits in rows.items():
        entry: dict[str, Any] = {"rows": dict(splits)}
        if config == "last_turn":
            entry["left_out_samples"] = sum(samples.get(split, 0) - count for split, count in splits.items())
        elif config == "rewrite" and "query_rewrite" in rows:
            entry["left_out_variants"] = sum(rows["query_rewrite"].values()) - sum(splits.values())
        section[config] = entry
    return section


CONFIG_NAMES = ("full", "minimal", "messages", "last_turn", "query_rewrite", "rewrite")
