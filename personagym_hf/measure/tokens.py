"""Token budgets for a trainer's tokenizer, as a mergeable accumulator: `add(sample)`, `merge(other)`, `to_dict()`.

The `messages` config is rendered the way TRL's `SFTTrainer` renders a conversational row:
`tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=...)`,
the mask asked for when the template marks the assistant's spans with `{% generation %}` (what
`assistant_only_loss=True` needs). Per row that gives its tokens, whether it is over `max_length` (TRL truncates
it, keeping the start), whether the template rejects it (`raise_exception`, e.g. a template with no system role),
and, with generation marks, its tokens in the loss mask (TRL's SFT raises on a row with none, and drops a row
left with none after truncation). `query_rewrite` rows count the tokens of `query` and of `original_query`,
as plain text (no special tokens). Given the views of the prompt-completion configs (`transform.views.ChatViews`),
`last_turn` and `rewrite` rows are rendered as `SFTTrainer` renders a conversational prompt-completion row
(`PairBudget`), which gives the rows whose completion lies past `max_length`: TRL 1.16 drops them, a trainer that
keeps them gets a NaN loss from a batch of them. `training_line` says in one line what would bite.

Tokenizers load from local files only: a folder (`AutoTokenizer.from_pretrained(folder, local_files_only=True)`,
never a Hub id) or a bare `tokenizer.json` (`PreTrainedTokenizerFast(tokenizer_file=...)`). A tokenizer with no
chat template gets `--chat-template FILE`, else `DEFAULT_CHAT_TEMPLATE` (ChatML with generation marks), and the
result says which. Memory: one 4-byte count per row and text, so percentiles are exact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..extras import require
from ..wording import plural

logger = logging.getLogger(__name__)

DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
EXAMPLES = 3
BATCH = 256  # rows rendered and tokenized in one call
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")  # as TRL's `has_generation_markers` looks for it


class TokenizerError(ValueError):
    """A tokenizer or chat template that cannot be used; the message says where and what to pass instead."""


@dataclass(frozen=True)
class Tokenizer:
    """A loaded tokenizer, its name (the folder or file name) and the chat template its rows are rendered with."""

    tokenizer: Any
    name: str
    template_source: str  # "tokenizer", "file NAME" or "default ChatML"

    @property
    def chat_template(self) -> str:
        return self.tokenizer.chat_template

    @property
    def template_sha256(self) -> str:
        return hashlib.sha256(self.chat_template.encode()).hexdigest()

    @property
    def key(self) -> str:
        """How `statistics.json` keys this tokenizer's budgets: its name and the start of its template's hash."""
        return f"{self.name}@{self.template_sha256[:12]}"


def load_tokenizer(path: str | Path, chat_template: str | Path | None = None) -> Tokenizer:
    """A local tokenizer folder or `tokenizer.json`; `chat_template` (a Jinja file) replaces its template."""
    path = Path(path)
    if not (path.is_dir() or (path.is_file() and path.suffix == ".json")):
        raise TokenizerError(
            f"{path}: no such tokenizer folder or tokenizer.json; pass --tokenizer with a local tokenizer "
            "(downloads are never made)"
        )
    # Importing transformers without torch prints advice on stderr ("PyTorch was not found..."): noise for a
    # tokenizer-only use. A verbosity the user set is kept.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    transformers = require("transformers", "tokens", "token counting")
    if path.is_dir():
        name = path.resolve().name
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TokenizerError(
                f"{path}: cannot load a tokenizer from this folder ({first}); pass a folder saved with "
                "save_pretrained or a tokenizer.json"
            ) from None
    else:
        name = path.resolve().parent.name if path.name == "tokenizer.json" else path.stem
        try:
            tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
        except Exception as error:  # noqa: BLE001 — the tokenizers library raises plain `Exception` for a bad file
            if type(error) is not Exception:  # anything more specific is not about the file: let it through
                raise
            raise TokenizerError(f"{path}: not a tokenizers JSON file ({str(error).splitlines()[0]})") from None
    source = "tokenizer"
    if chat_template is not None:
        template_path = Path(chat_template)
        try:
            tokenizer.chat_template = template_path.read_text(encoding="utf-8")
        except OSError as error:
            raise TokenizerError(f"{template_path}: cannot read the chat template ({error.strerror})") from None
        source = f"file {template_path.name}"
    elif isinstance(tokenizer.chat_template, dict):  # named variants: the `default` one renders plain chats
        tokenizer.chat_template = tokenizer.chat_template.get("default")
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        source = "default ChatML"
        logger.warning("%s has no chat template: rows are rendered with ChatML (pass --chat-template FILE)", path)
    return Tokenizer(tokenizer, name, source)


def stats(counts: np.ndarray) -> dict[str, Any]:
    """min, p50, p95 (nearest rank: the least count at or above that share of rows), max, mean and total."""
    if not len(counts):
        return {"min": 0, "p50": 0, "p95": 0, "max": 0, "mean": 0.0, "total": 0}
    p50, p95 = np.percentile(counts, [50, 95], method="inverted_cdf")
    return {
        "min": int(counts.min()),
        "p50": int(p50),
        "p95": int(p95),
        "max": int(counts.max()),
        "mean": round(float(counts.mean()), 2),
        "total": int(counts.sum()),
    }


def histogram(counts: np.ndarray) -> dict[str, list[int]]:
    """Rows per power-of-two bucket: bucket i holds the rows with `edges[i] < tokens <= edges[i + 1]`."""
    if not len(counts):
        return {"edges": [], "rows": []}
    least = int(counts.min())
    edges = [1 << ((least - 1).bit_length() - 1) if least > 1 else 0]  # the largest power of two below the least
    while edges[-1] < counts.max():
        edges.append(max(1, edges[-1] * 2))
    rows = np.histogram(counts, bins=np.array(edges) + 0.5)[0] if len(edges) > 1 else np.array([len(counts)])
    return {"edges": edges, "rows": [int(r) for r in rows]}


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _encode(apply, conversations: list[list[dict]], **kwargs) -> list[Any]:
    """Each conversation's `apply_chat_template` result (a dict of lists), or the first line of the error with which
    the template rejected it (`raise_exception`). One call for the batch; one a row when some row is rejected."""
    from jinja2 import TemplateError

    try:
        encoded = apply(conversations, **kwargs)
        return [{key: value[index] for key, value in encoded.items()} for index in range(len(conversations))]
    except TemplateError:  # some row is rejected: render them one at a time to find which
        results: list[Any] = []
        for conversation in conversations:
            try:
                one = apply([conversation], **kwargs)
            except TemplateError as error:
                results.append(_first_line(error))
                continue
            results.append({key: value[0] for key, value in one.items()})
        return results


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start: where TRL's SFT starts a row's completion
    (`trl.data_utils.common_prefix_length`)."""
    length = min(len(a), len(b))
    for index in range(length):
        if a[index] != b[index]:
            return index
    return length


@dataclass
class PairBudget:
    """Token budgets of one prompt-completion config (`last_turn`, `rewrite`) rendered as TRL's `SFTTrainer`
    renders a conversational prompt-completion row: the prompt with `add_generation_prompt=True`, then prompt and
    completion together; the completion starts where the two part (`common_prefix`). TRL keeps a row's first
    `max_length` tokens and drops a row left with no completion token (`completion_past_max_length`). A row of a
    prompt-only config (`rewrite` without `include_persona`) counts its prompt's tokens."""

    tokens: array = field(default_factory=lambda: array("I"))  # per rendered row: prompt and completion
    completion_tokens: array = field(default_factory=lambda: array("I"))
    over_max_length: int = 0
    completion_past: int = 0
    completion_past_examples: list[str] = field(default_factory=list)
    rejected: int = 0
    rejected_examples: list[list[str]] = field(default_factory=list)

    def render(self, apply, rows: list[tuple[str, list[dict], list[dict] | None]], max_length: int | None) -> None:
        prompts = _encode(apply, [prompt for _id, prompt, _completion in rows], add_generation_prompt=True)
        pairs = [(index, row) for index, row in enumerate(rows) if row[2] is not None]
        whole = _encode(apply, [row[1] + row[2] for _index, row in pairs]) if pairs else []
        full: list[Any] = [None] * len(rows)
        for (index, _row), encoded in zip(pairs, whole):
            full[index] = encoded
        for (row_id, _prompt, completion), prompt, both in zip(rows, prompts, full):
            rejected = next((found for found in (prompt, both) if isinstance(found, str)), None)
            if rejected is not None:
                self.rejected += 1
                if len(self.rejected_examples) < EXAMPLES:
                    self.rejected_examples.append([row_id, rejected])
                continue
            prompt_ids = prompt["input_ids"]
            if completion is None:
                self.tokens.append(len(prompt_ids))
                self.over_max_length += max_length is not None and len(prompt_ids) > max_length
                continue
            ids = both["input_ids"]
            start = common_prefix(prompt_ids, ids)
            self.tokens.append(len(ids))
            self.completion_tokens.append(len(ids) - start)
            kept = len(ids) if max_length is None else min(len(ids), max_length)
            self.over_max_length += kept < len(ids)
            if start >= kept:  # no completion token left in the row: TRL drops it (or trains it to NaN)
                self.completion_past += 1
                if len(self.completion_past_examples) < EXAMPLES:
                    self.completion_past_examples.append(row_id)

    def merge(self, other: "PairBudget") -> None:
        self.tokens.extend(other.tokens)
        self.completion_tokens.extend(other.completion_tokens)
        for name in ("over_max_length", "completion_past", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.completion_past_examples = (self.completion_past_examples + other.completion_past_examples)[:EXAMPLES]
        self.rejected_examples = (self.rejected_examples + other.rejected_examples)[:EXAMPLES]

    def to_dict(self) -> dict[str, Any]:
        counts = np.frombuffer(self.tokens, dtype=np.uint32).astype(np.int64)
        completions = np.frombuffer(self.completion_tokens, dtype=np.uint32).astype(np.int64)
        rendered = len(counts)
        return {
            "rows": rendered + self.rejected,
            "rendered": rendered,
            "rejected": self.rejected,
            "rejected_examples": self.rejected_examples,
            "tokens": stats(counts),
            "completion_tokens": stats(completions),
            "over_max_length": self.over_max_length,
            "completion_past_max_length": self.completion_past,
            "completion_past_examples": self.completion_past_examples,
        }


@dataclass
class TokenBudget:
    """Token budgets of the chat configs' rows under one tokenizer and chat template: `messages`, `query_rewrite`
    and, given `views` (`transform.views.ChatViews`: a sample's rows of the prompt-completion configs), `last_turn`
    and `rewrite`. `batch`: rows rendered and tokenized in one call."""

    tokenizer: Tokenizer
    max_length: int | None = None
    views: Any = None
    batch: int = BATCH
    message_tokens: array = field(default_factory=lambda: array("I"))
    assistant_tokens: int = 0
    over_max_length: int = 0
    dropped_after_truncation: int = 0
    no_assistant: int = 0
    no_assistant_examples: list[str] = field(default_factory=list)
    rejected: int = 0
    rejected_examples: list[list[str]] = field(default_factory=list)
    query_tokens: array = field(default_factory=lambda: array("I"))
    original_tokens: array = field(default_factory=lambda: array("I"))
    pending: list[tuple[str, list[dict]]] = field(default_factory=list)  # rows waiting to be rendered
    pending_queries: list[tuple[str, str]] = field(default_factory=list)
    pairs: dict[str, PairBudget] = field(default_factory=dict)  # config -> its budget
    pending_pairs: dict[str, list] = field(default_factory=dict)  # config -> (row id, prompt, completion)

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"TokenBudget: expected a max_length of at least 1, got {self.max_length!r}")
        if self.batch < 1:
            raise ValueError(f"TokenBudget: expected a batch of at least 1, got {self.batch!r}")
        self.marks = bool(_GENERATION.search(self.tokenizer.chat_template))
        for config in getattr(self.views, "configs", ()):
            self.pairs.setdefault(config, PairBudget())
            self.pending_pairs.setdefault(config, [])

    def add(self, sample: dict, split: str | None = None) -> None:
        """A sample's `messages` row (its `full_conversation`), its `query_rewrite` rows (`views.py`) and, with
        `views`, its `last_turn` and `rewrite` rows."""
        messages = sample.get("messages") or sample.get("full_conversation")
        if messages:
            self.add_messages(str(sample.get("sample_id") or ""), messages)
        original = sample.get("original_query")
        if isinstance(original, str):
            queries = [sample.get("initial_query")]
            queries += [noisy.get("noisy_text") for noisy in sample.get("noisy_initial_queries") or ()]
            for query in queries:
                if isinstance(query, str):
                    self.add_query_rewrite(query, original)
        if self.views is not None:
            for config, row_id, prompt, completion in self.views.rows(sample):
                self.add_pair(config, row_id, prompt, completion)

    def add_messages(self, sample_id: str, messages: list[dict]) -> None:
        self.pending.append((sample_id, messages))
        if len(self.pending) >= self.batch:
            self._render()

    def add_query_rewrite(self, query: str, original_query: str) -> None:
        self.pending_queries.append((query, original_query))
        if len(self.pending_queries) >= self.batch:
            self._encode_queries()

    def add_pair(self, config: str, row_id: str, prompt: list[dict], completion: list[dict] | None) -> None:
        """A row of a prompt-completion config (`completion` None: a prompt-only row)."""
        pending = self.pending_pairs[config]
        pending.append((row_id, prompt, completion))
        if len(pending) >= self.batch:
            self._render_pairs(config)

    def add_all(self, samples: Iterable[dict]) -> "TokenBudget":
        for sample in samples:
            self.add(sample)
        return self

    def _apply(self, conversations: list[list[dict]], **kwargs):
        encoded = self.tokenizer.tokenizer.apply_chat_template(
            conversations, tokenize=True, return_dict=True, **kwargs
        )
        return {key: encoded[key] for key in ("input_ids", "assistant_masks") if key in encoded}

    def _render(self) -> None:
        rows, self.pending = self.pending, []
        if not rows:
            return
        encoded = _encode(self._apply, [messages for _id, messages in rows], return_assistant_tokens_mask=self.marks)
        for (sample_id, messages), result in zip(rows, encoded):
            if isinstance(result, str):
                self.rejected += 1
                if len(self.rejected_examples) < EXAMPLES:
                    self.rejected_examples.append([sample_id, result])
                continue
            ids, mask = result["input_ids"], result.get("assistant_masks")
            self.message_tokens.append(len(ids))
            too_long = self.max_length is not None and len(ids) > self.max_length
            self.over_max_length += too_long
            if self.marks:
                assistant = int(sum(mask))
                self.assistant_tokens += assistant
                has_assistant = assistant > 0
                if has_assistant and too_long and not any(mask[: self.max_length]):
                    self.dropped_after_truncation += 1
            else:
                has_assistant = any(message.get("role") == "assistant" for message in messages)
            if not has_assistant:
                self.no_assistant += 1
                if len(self.no_assistant_examples) < EXAMPLES:
                    self.no_assistant_examples.append(sample_id)

    def _render_pairs(self, config: str) -> None:
        rows, self.pending_pairs[config] = self.pending_pairs[config], []
        if rows:
            self.pairs[config].render(self._apply, rows, self.max_length)

    def _encode_queries(self) -> None:
        rows, self.pending_queries = self.pending_queries, []
        if not rows:
            return
        encode = self.tokenizer.tokenizer
        queries = encode([query for query, _original in rows], add_special_tokens=False)["input_ids"]
        originals = encode([original for _query, original in rows], add_special_tokens=False)["input_ids"]
        self.query_tokens.extend(len(ids) for ids in queries)
        self.original_tokens.extend(len(ids) for ids in originals)

    def flush(self) -> None:
        self._render()
        self._encode_queries()
        for config in self.pending_pairs:
            self._render_pairs(config)

    def merge(self, other: "TokenBudget") -> "TokenBudget":
        """Add `other`'s rows after this one's (same tokenizer key and max_length)."""
        if (other.tokenizer.key, other.max_length, other.views) != (self.tokenizer.key, self.max_length, self.views):
            raise ValueError(
                "TokenBudget.merge: both budgets need the same tokenizer, chat template, max_length and views"
            )
        self.flush()
        other.flush()
        self.message_tokens.extend(other.message_tokens)
        self.query_tokens.extend(other.query_tokens)
        self.original_tokens.extend(other.original_tokens)
        for name in ("assistant_tokens", "over_max_length", "dropped_after_truncation", "no_assistant", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.no_assistant_examples = (self.no_assistant_examples + other.no_assistant_examples)[:EXAMPLES]
        self.rejected_examples = (self.rejected_examples + other.rejected_examples)[:EXAMPLES]
        for config, pair in other.pairs.items():
            self.pairs[config].merge(pair)
        return self

    def to_dict(self) -> dict[str, Any]:
        """This tokenizer's entry of the `tokens` section of `statistics.json` (keyed by `tokenizer.key`)."""
        self.flush()
        counts = np.frombuffer(self.message_tokens, dtype=np.uint32).astype(np.int64)
        rendered = len(counts)
        messages: dict[str, Any] = {
            "rows": rendered + self.rejected,
            "rendered": rendered,
            "rejected": self.rejected,
            "rejected_examples": self.rejected_examples,
            "tokens": stats(counts),
            "histogram": histogram(counts),
            "over_max_length": self.over_max_length,
            "truncation_rate": round(self.over_max_length / rendered, 4) if rendered else 0.0,
            "no_assistant_tokens": self.no_assistant,
            "no_assistant_examples": self.no_assistant_examples,
        }
        if self.marks:
            total = int(counts.sum())
            messages["assistant_token_share"] = round(self.assistant_tokens / total, 4) if total else 0.0
            messages["dropped_after_truncation"] = self.dropped_after_truncation
        return {
            "tokenizer": self.tokenizer.name,
            "chat_template": self.tokenizer.template_source,
            "chat_template_sha256": self.tokenizer.template_sha256,
            "generation_marks": self.marks,
            "max_length": self.max_length,
            "messages": messages,
            "query_rewrite": {
                "rows": len(self.query_tokens),
                "query": stats(np.frombuffer(self.query_tokens, dtype=np.uint32).astype(np.int64)),
                "original_query": stats(np.frombuffer(self.original_tokens, dtype=np.uint32).astype(np.int64)),
            },
            **{config: pair.to_dict() for config, pair in self.pairs.items()},
        }

    def __getstate__(self) -> dict:
        self.flush()  # a budget handed back by a worker process carries no unrendered rows
        return self.__dict__


def template_phrase(source: str) -> str:
    """`chat_template` of a budget in words."""
    return "its own chat template" if source == "tokenizer" else f"chat template: {source}"


def report_lines(key: str, budget: dict[str, Any]) -> list[str]:
    """A tokenizer's budgets as plain lines."""
    m, q = budget["messages"], budget["query_rewrite"]
    t = m["tokens"]
    limit = budget["max_length"]
    lines = [
        f"tokenizer {key} ({template_phrase(budget['chat_template'])}"
        f"{', with generation marks' if budget['generation_marks'] else ', no generation marks'})",
        f"messages: {m['rendered']} of {m['rows']} rows rendered; tokens min {t['min']}, p50 {t['p50']}, "
        f"p95 {t['p95']}, max {t['max']} (mean {t['mean']}, total {t['total']})",
    ]
    if limit is not None:
        lines.append(f"  over --max-length {limit}: {m['over_max_length']} rows ({m['truncation_rate']:.1%})")
    if m["rejected"]:
        example = m["rejected_examples"][0]
        lines.append(f"  rejected by the template: {m['rejected']} rows (e.g. {example[0]}: {example[1]})")
    if m["no_assistant_tokens"]:
        lines.append(
            f"  without assistant tokens: {m['no_assistant_tokens']} rows "
            f"(e.g. {', '.join(m['no_assistant_examples'])})"
        )
    if "assistant_token_share" in m:
        line = f"  assistant tokens in the loss mask: {m['assistant_token_share']:.1%}"
        if limit is not None:
            line += f"; rows left with none after truncation: {m['dropped_after_truncation']}"
        lines.append(line)
    if m["histogram"]["edges"]:
        edges, rows = m["histogram"]["edges"], m["histogram"]["rows"]
        buckets = ", ".join(f"{edges[i] + 1}-{edges[i + 1]}: {rows[i]}" for i in range(len(rows)) if len(edges) > 1)
        lines.append(f"  rows by tokens: {buckets or f'{edges[0]}: {rows[0]}'}")
    qq, qo = q["query"], q["original_query"]
    lines.append(
        f"query_rewrite: {q['rows']} rows; query tokens p50 {qq['p50']}, p95 {qq['p95']}, max {qq['max']}; "
        f"original_query tokens p50 {qo['p50']}, p95 {qo['p95']}, max {qo['max']}"
    )
    for config in pair_configs(budget):
        pair = budget[config]
        t, c = pair["tokens"], pair["completion_tokens"]
        line = (
            f"{config}: {pair['rendered']} of {pair['rows']} rows rendered; tokens p50 {t['p50']}, p95 {t['p95']}, "
            f"max {t['max']}"
        )
        if c["total"]:
            line += f"; completion tokens p50 {c['p50']}, p95 {c['p95']}, max {c['max']}"
        lines.append(line)
        if limit is not None:
            lines.append(
                f"  over --max-length {limit}: {pair['over_max_length']} rows; completion past it (TRL drops the "
                f"row): {pair['completion_past_max_length']}" + _examples(pair["completion_past_examples"])
            )
        if pair["rejected"]:
            example = pair["rejected_examples"][0]
            lines.append(f"  rejected by the template: {pair['rejected']} rows (e.g. {example[0]}: {example[1]})")
    return lines


def _examples(ids: list[str]) -> str:
    return f" (e.g. {', '.join(ids)})" if ids else ""


def pair_configs(budget: dict[str, Any]) -> list[str]:
    """The prompt-completion configs a budget has figures for (`PairBudget`), in its order."""
    return [key for key, value in budget.items() if isinstance(value, dict) and "completion_past_max_length" in value]


def training_line(budget: dict[str, Any]) -> str | None:
    """What TRL's `SFTTrainer` would do to these rows that a user otherwise finds out from a failed or quietly
    smaller run, in one line; None when nothing bites. Rows whose completion lies past `max_length` (TRL keeps
    a row's first `max_length` tokens and drops one left with no token to train on: for `messages`, with
    `assistant_only_loss=True`, a row whose every assistant token is past it), and a chat template without
    `{% generation %}` marks (`assistant_only_loss=True` needs them: TRL swaps in a marked copy of the templates it
    knows and refuses the others)."""
    m = budget["messages"]
    dropped = {config: budget[config]["completion_past_max_length"] for config in pair_configs(budget)}
    if m.get("dropped_after_truncation"):
        dropped["messages with assistant_only_loss=True"] = m["dropped_after_truncation"]
    dropped = {config: count for config, count in dropped.items() if count}
    parts = []
    if dropped:
        limit = budget["max_length"]
        where = f"past --max-length {limit}" if limit is not None else "nowhere in the rendered row"
        parts.append(
            f"TRL drops {plural(sum(dropped.values()), 'row')} whose completion lies {where} ("
            + ", ".join(f"{config} {count}" for config, count in dropped.items())
            + ")"
        )
    if not budget["generation_marks"]:
        parts.append(
            "the chat template has no {% generation %} marks: assistant_only_loss=True on messages needs a template "
            "TRL can patch, or --chat-template with one that has them"
        )
    return f"before training: {'; '.join(parts)}" if parts else None


def summary_line(key: str, budget: dict[str, Any]) -> str:
    """One line for an export's summary."""
    m = budget["messages"]
    line = f"tokens ({key}): messages p50 {m['tokens']['p50']}, p95 {m['tokens']['p95']}, max {m['tokens']['max']}"
    if budget["max_length"] is not None:
        line += f"; {m['truncation_rate']:.1%} over {budget['max_length']}"
    if m["rejected"]:
        line += f"; {plural(m['rejected'], 'row')} rejected by the template"
    if m["no_assistant_tokens"]:
        line += f"; {plural(m['no_assistant_tokens'], 'row')} without assistant tokens"
    return line


__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "PairBudget",
    "TokenBudget",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
    "stats",
    "training_line",
]
