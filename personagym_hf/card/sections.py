"""Markdown for the dataset card from the `leakage`, `tokens` and `redacted_secrets` sections of `statistics.json`,
and how TRL trains each chat config (`training_markdown`).

The token histogram is drawn as bars of block characters in a Markdown table, like the card's statistics
tables: it renders wherever the card does (the Hub, GitHub, an editor), needs no file beside the card and no
plotting library, and is the same bytes for the same data. Not an image: a PNG or SVG would be a second file
in every commit, drawn by a plotting library (matplotlib is heavy) or by hand, and shown only where the Hub
resolves the card's relative paths. Not a Mermaid `xychart-beta` block: it is a beta chart type, and whether
the Hub renders Mermaid in cards could not be confirmed (one Hub repo replaced its Mermaid block by an SVG).
"""

from __future__ import annotations

from typing import Any

from ..measure.leakage import FIELDS
from ..measure.tokens import pair_configs, template_phrase, training_line

BAR_WIDTH = 20  # as the card's statistics tables
HEADERS = {"original_query": "`original_query`", "initial_query": "`initial_query`", "conversation": "conversation"}


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _bar(share: float) -> str:
    return "█" * round(share * BAR_WIDTH) or "▏"


def leakage_markdown(leakage: dict[str, Any]) -> str:
    """A section for the card: one table row per pair of splits."""
    method = leakage["method"]
    near = "threshold" in method
    lines = ["## Leakage between splits", ""]
    if not leakage["pairs"]:
        lines.append("One split only: nothing to compare.")
        return "\n".join(lines) + "\n"
    kinds = "exact / exact or near" if near else "exact"
    lines += [
        f"| splits | personas shared | {' | '.join(f'{HEADERS[name]} ({kinds})' for name in FIELDS)} |",
        "|---|---|" + "---|" * len(FIELDS),
    ]
    for key, pair in leakage["pairs"].items():
        a, b = key.split("-", 1)
        cells = []
        for name in FIELDS:
            f = pair[name]
            cells.append(f"{_pct(f['exact_share'])} / {_pct(f['near_share'])}" if near else _pct(f["exact_share"]))
        lines.append(f"| {a} ↔ {b} | {pair['personas']['shared']} | {' | '.join(cells)} |")
    smaller = list(dict.fromkeys(pair["smaller"] for pair in leakage["pairs"].values()))
    lines += [
        "",
        "A share is of the rows of the smaller split of the pair "
        f"({', '.join(smaller)}): those whose text has a duplicate in the other split, after normalising case, "
        "whitespace and punctuation. An exact duplicate is the same whole text"
        + (
            f"; a near duplicate has an estimated Jaccard similarity of at least {method['threshold']} over "
            f"{method['shingles']} (MinHash with LSH: {method['lsh']})."
            if near
            else "."
        )
        + " `conversation` is a sample's user turns. `statistics.json` (`leakage`) holds the counts, example "
        "sample ids and the method.",
        "",
    ]
    for key, pair in leakage["pairs"].items():
        a, b = key.split("-", 1)
        small = pair["smaller"]
        big = b if small == a else a
        f = pair["original_query"]
        share, kind = (f["near_share"], "an exact or near") if near else (f["exact_share"], "an exact")
        if share or pair["personas"]["shared"]:
            lines.append(
                f"- {a} ↔ {b}: {pair['personas']['shared']} personas shared, {_pct(share)} of {small} "
                f"`original_query` values have {kind} duplicate in {big}."
            )
    return "\n".join(lines).rstrip("\n") + "\n"


def tokens_markdown(tokens: dict[str, dict[str, Any]]) -> str:
    """A section for the card: per tokenizer a table of the `messages` budgets, the histogram, and the queries."""
    lines = ["## Token budgets", ""]
    for key, budget in tokens.items():
        m, q = budget["messages"], budget["query_rewrite"]
        t, limit = m["tokens"], budget["max_length"]
        lines += [
            f"### `{budget['tokenizer']}` ({template_phrase(budget['chat_template'])}, sha256 "
            f"`{budget['chat_template_sha256'][:12]}`)",
            "",
            "`messages` rows rendered with the chat template as TRL's `SFTTrainer` renders them.",
            "",
            "| rows | p50 | p95 | max | mean | "
            + (f"over {limit} | " if limit is not None else "")
            + "rejected by the template | without assistant tokens |"
            + (" assistant share of tokens |" if "assistant_token_share" in m else ""),
            "|---" * (7 + (limit is not None) + ("assistant_token_share" in m)) + "|",
            f"| {m['rows']} | {t['p50']} | {t['p95']} | {t['max']} | {t['mean']} | "
            + (f"{m['over_max_length']} ({_pct(m['truncation_rate'])}) | " if limit is not None else "")
            + f"{m['rejected']} | {m['no_assistant_tokens']} |"
            + (f" {_pct(m['assistant_token_share'])} |" if "assistant_token_share" in m else ""),
            "",
        ]
        edges, rows = m["histogram"]["edges"], m["histogram"]["rows"]
        if len(edges) > 1:
            total = sum(rows)
            lines += ["| tokens per row | rows | share |", "|---|---|---|"]
            for i, count in enumerate(rows):
                low, high = edges[i] + 1, edges[i + 1]
                over = ""
                if limit is not None and high > limit:
                    over = " (over max length)" if low > limit else " (partly over max length)"
                share = count / total if total else 0.0
                lines.append(f"| {low}–{high}{over} | {count} | `{_bar(share)}` {_pct(share)} |")
            lines.append("")
        pairs = pair_configs(budget)
        if pairs:
            lines += [
                " and ".join(f"`{config}`" for config in pairs) + " rows rendered as TRL's `SFTTrainer` renders "
                "prompt-completion rows: the prompt with the generation prompt, then prompt and completion together.",
                "",
                "| config | rows | p50 | p95 | max | completion p50 | completion max | "
                + (f"over {limit} | completion past {limit} (TRL drops the row) | " if limit is not None else "")
                + "rejected by the template |",
                "|---" * (8 + 2 * (limit is not None)) + "|",
            ]
            for config in pairs:
                pair = budget[config]
                t, c = pair["tokens"], pair["completion_tokens"]
                cells = [pair["rows"], t["p50"], t["p95"], t["max"], c["p50"], c["max"]]
                if limit is not None:
                    cells += [pair["over_max_length"], pair["completion_past_max_length"]]
                lines.append(f"| `{config}` | " + " | ".join(map(str, [*cells, pair["rejected"]])) + " |")
            lines.append("")
        warning = training_line(budget)
        if warning is not None:
            lines += [f"**Before training:** {warning.removeprefix('before training: ')}.", ""]
        qq, qo = q["query"], q["original_query"]
        lines += [
            f"`query_rewrite` ({q['rows']} rows), tokens without special tokens:",
            "",
            "| text | p50 | p95 | max |",
            "|---|---|---|---|",
            f"| `query` | {qq['p50']} | {qq['p95']} | {qq['max']} |",
            f"| `original_query` | {qo['p50']} | {qo['p95']} | {qo['max']} |",
            "",
            f"`statistics.json` holds these figures under `tokens` → `{key}`.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


# config -> (TRL's name of its format, what the loss covers, the arguments that train it as is)
TRAINING = {
    "messages": (
        "conversational language modeling",
        "the assistant turns",
        "`SFTConfig(assistant_only_loss=True)`: the chat template must mark them with `{% generation %}` (TRL swaps "
        "in a marked copy of the templates it knows)",
    ),
    "last_turn": (
        "conversational prompt-completion",
        "the last assistant turn",
        "`SFTConfig()`: a prompt-completion row trains on its completion",
    ),
    "rewrite": ("conversational prompt-completion", "`original_query`", "`SFTConfig()`"),
}
PROMPT_ONLY = (
    "conversational prompt-only (`include_persona: false` leaves the target out)",
    "your reward",
    "an online trainer with a reward function of yours, e.g. `GRPOTrainer(reward_funcs=...)`",
)
EXAMPLE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def training_markdown(
    columns: dict[str, list[str]], splits: dict[str, list[str]], prompts: dict[str, str] | None, repo_id: str
) -> str:
    """A section for the card: how TRL trains each chat config as exported (`columns`: config -> its columns;
    `splits`: config -> its split names; `prompts`: the export's `training_data.prompts`)."""
    chat = [config for config in TRAINING if config in columns]
    if not chat:
        return ""
    lines = [
        "## Training with TRL",
        "",
        "The chat configs are in formats TRL's `SFTTrainer` takes as they are: no formatting function, no column "
        "mapping.",
        "",
        "| config | TRL format | the loss covers | arguments |",
        "|---|---|---|---|",
    ]
    for config in chat:
        kind, loss, arguments = TRAINING[config]
        if config == "rewrite" and "completion" not in columns[config]:
            kind, loss, arguments = PROMPT_ONLY
        lines.append(f"| `{config}` | {kind} | {loss} | {arguments} |")
    example = next((config for config in ("rewrite", "last_turn") if "completion" in columns.get(config, ())), None)
    if example is not None:
        names = splits.get(example) or ["train"]
        train = "train" if "train" in names else names[0]
        evaluate = f', eval_dataset={example}["validation"]' if "validation" in names else ""
        lines += [
            "",
            "```python",
            "from datasets import load_dataset",
            "from trl import SFTConfig, SFTTrainer",
            "",
            f'{example} = load_dataset("{repo_id}", "{example}")',
            f'trainer = SFTTrainer("{EXAMPLE_MODEL}", args=SFTConfig(max_length=1024), '
            f'train_dataset={example}["{train}"]{evaluate})',
            "trainer.train()",
            "```",
        ]
    lines += [
        "",
        "TRL keeps a row's first `max_length` tokens and drops a row left with no token to train on; "
        "`personagym-hf tokens --tokenizer PATH --max-length N --data .` counts those rows, for each config, before "
        "a run.",
    ]
    if "rewrite" in columns and prompts is not None:
        instruction = prompts["rewrite_instruction"]
        persona = prompts["persona"] == "system" and "persona_id" in columns["rewrite"]
        parts = []
        if instruction:
            parts.append(f"the instruction “{instruction}”")
        if persona:
            parts.append(
                f"under “{prompts['persona_intro']}”, a `- feature: value` line per persona feature (keys sorted)"
            )
        system = f"a system message ({'; then '.join(parts)}), then " if parts else ""
        lines += [
            "",
            f"A `rewrite` prompt is {system}the user's query, styled or noisy (`variant`). `provenance.json` holds "
            "these settings (`prompts`).",
        ]
    return "\n".join(lines) + "\n"


def secrets_markdown(redacted: dict[str, Any]) -> str:
    """A section for the card: what the export's redaction replaced (`--redact-secrets`), by kind."""
    lines = [
        "## Secrets",
        "",
        "Strings that looked like access tokens, API keys, private keys or passwords in URLs were replaced at export "
        f"by a typed placeholder (`<REDACTED:kind>`): **{redacted['total']}** in all.",
    ]
    if redacted["by_kind"]:
        lines += ["", "| kind | redacted |", "|---|---|"]
        lines += [f"| `{kind}` | {count} |" for kind, count in redacted["by_kind"].items()]
    return "\n".join(lines) + "\n"


__all__ = ["leakage_markdown", "secrets_markdown", "tokens_markdown", "training_markdown"]
