import pickle
import sys

import pytest
import tiny_tokenizer
from conftest import write_files
from token_store import BRIEF, LAST_TURN, REWRITE, TOKEN_STORE, token_interaction

from personagym_hf.config import Prompts
from personagym_hf.extras import MissingExtra
from personagym_hf.measure.tokens import (
    DEFAULT_CHAT_TEMPLATE,
    TokenBudget,
    TokenizerError,
    histogram,
    load_tokenizer,
    report_lines,
    stats,
    summary_line,
    training_line,
)
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.views import ChatViews


@pytest.fixture
def token_store(tmp_path):
    return write_files(tmp_path / "tokens_store", [token_interaction(key) for key in TOKEN_STORE])


@pytest.fixture
def token_samples() -> list[dict]:
    return [interaction_to_sample(token_interaction(key)).to_dict() for key in TOKEN_STORE]


@pytest.fixture
def generation_tokenizer(tmp_path):
    return tiny_tokenizer.build(tmp_path / "tiny-gen", tiny_tokenizer.GENERATION_TEMPLATE)


@pytest.fixture
def no_system_tokenizer(tmp_path):
    return tiny_tokenizer.build(tmp_path / "tiny-nosys", tiny_tokenizer.NO_SYSTEM_TEMPLATE)


QUERY_REWRITE = {
    "rows": 5,  # k1's styled and noisy query, then one per other sample
    "query": {"min": 1, "p50": 4, "p95": 11, "max": 11, "mean": 6.0, "total": 30},
    "original_query": {"min": 1, "p50": 2, "p95": 2, "max": 2, "mean": 1.8, "total": 9},
}


def test_budget_with_generation_marks(generation_tokenizer, token_samples):
    tokenizer = load_tokenizer(generation_tokenizer)
    budget = TokenBudget(tokenizer, max_length=10).add_all(token_samples).to_dict()
    # k1 "<|user|> hey can u help <|assistant|> Sure , here it is </s>": 12 tokens, the last 6 the assistant's
    # k2 "<|system|> be brief <|user|> help <|assistant|> ok </s>": 8, 2 the assistant's
    # k3 "<|user|> hey can u help me with this long question please": 11, no assistant turn
    # k4 "<|user|> a b c d e f g h i j k <|assistant|> ok </s>": 15, its 2 assistant tokens past the 10th
    assert budget == {
        "tokenizer": "tiny-gen",
        "chat_template": "tokenizer",
        "chat_template_sha256": tokenizer.template_sha256,
        "generation_marks": True,
        "max_length": 10,
        "messages": {
            "rows": 4,
            "rendered": 4,
            "rejected": 0,
            "rejected_examples": [],
            "tokens": {"min": 8, "p50": 11, "p95": 15, "max": 15, "mean": 11.5, "total": 46},
            "histogram": {"edges": [4, 8, 16], "rows": [1, 3]},
            "over_max_length": 3,
            "truncation_rate": 0.75,
            "no_assistant_tokens": 1,
            "no_assistant_examples": ["sample_k3"],
            "assistant_token_share": round(10 / 46, 4),
            "dropped_after_truncation": 1,
        },
        "query_rewrite": QUERY_REWRITE,
    }
    assert tokenizer.key == f"tiny-gen@{tokenizer.template_sha256[:12]}"


def test_counts_are_the_tokenizers_own_encoding_of_the_rendered_text(generation_tokenizer, token_samples):
    tokenizer = load_tokenizer(generation_tokenizer)
    lengths = []
    for sample in token_samples:
        text = tokenizer.tokenizer.apply_chat_template(sample["full_conversation"], tokenize=False)
        lengths.append(len(tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"]))
    assert lengths == [12, 8, 11, 15]
    import numpy as np

    assert TokenBudget(tokenizer).add_all(token_samples).to_dict()["messages"]["tokens"] == stats(np.array(lengths))


def test_a_template_without_system_role_rejects_rows(no_system_tokenizer, token_samples):
    budget = TokenBudget(load_tokenizer(no_system_tokenizer)).add_all(token_samples).to_dict()
    messages = budget["messages"]
    assert budget["generation_marks"] is False and budget["max_length"] is None
    assert messages == {
        "rows": 4,
        "rendered": 3,
        "rejected": 1,
        "rejected_examples": [["sample_k2", "System role not supported"]],
        "tokens": {"min": 11, "p50": 12, "p95": 15, "max": 15, "mean": 12.67, "total": 38},
        "histogram": {"edges": [8, 16], "rows": [3]},
        "over_max_length": 0,
        "truncation_rate": 0.0,
        "no_assistant_tokens": 1,  # without generation marks: a row with no assistant message
        "no_assistant_examples": ["sample_k3"],
    }


def test_rows_are_the_same_one_by_one_in_batches_and_merged(generation_tokenizer, token_samples):
    tokenizer = load_tokenizer(generation_tokenizer)
    whole = TokenBudget(tokenizer, max_length=10, views=BRIEF).add_all(token_samples).to_dict()
    assert whole["last_turn"] == LAST_TURN and whole["rewrite"] == REWRITE
    first = TokenBudget(tokenizer, max_length=10, views=BRIEF).add_all(token_samples[:2])
    second = TokenBudget(tokenizer, max_length=10, views=BRIEF).add_all(token_samples[2:])
    assert first.merge(pickle.loads(pickle.dumps(second))).to_dict() == whole
    assert TokenBudget(tokenizer, max_length=10, views=BRIEF, batch=1).add_all(token_samples).to_dict() == whole
    with pytest.raises(ValueError, match=r"^TokenBudget.merge: both budgets need the same tokenizer, chat "):
        TokenBudget(tokenizer, max_length=10).merge(TokenBudget(tokenizer, max_length=11))
    with pytest.raises(ValueError, match=r"^TokenBudget.merge: .* and views$"):
        TokenBudget(tokenizer, views=BRIEF).merge(TokenBudget(tokenizer, views=ChatViews()))
    with pytest.raises(ValueError, match=r"^TokenBudget: expected a batch of at least 1, got 0$"):
        TokenBudget(tokenizer, batch=0)


def test_a_template_without_system_role_rejects_the_rewrite_rows(no_system_tokenizer, token_samples):
    budget = TokenBudget(load_tokenizer(no_system_tokenizer), views=BRIEF).add_all(token_samples).to_dict()
    assert budget["rewrite"]["rejected"] == budget["rewrite"]["rows"] == 5
    assert budget["rewrite"]["rejected_examples"] == [
        ["sample_k1/styled", "System role not supported"],
        ["sample_k1/noisy_0", "System role not supported"],
        ["sample_k2/styled", "System role not supported"],
    ]
    assert (budget["last_turn"]["rows"], budget["last_turn"]["rejected_examples"]) == (
        3,
        [["sample_k2", "System role not supported"]],
    )
    no_system = ChatViews(Prompts(rewrite_instruction="", persona="none"))  # no system message: rendered
    assert (
        TokenBudget(load_tokenizer(no_system_tokenizer), views=no_system)
        .add_all(token_samples)
        .to_dict()["rewrite"]["rejected"]
        == 0
    )


def test_prompt_only_rewrite_rows_count_their_prompt(generation_tokenizer, token_samples):
    views = ChatViews(Prompts(rewrite_instruction="be brief"), include_persona=False)
    rows = [{key: value for key, value in s.items() if key not in ("original_query", "persona_features")}
            for s in token_samples]  # fmt: skip
    budget = TokenBudget(load_tokenizer(generation_tokenizer), max_length=10, views=views).add_all(rows).to_dict()
    # "<|system|> be brief <|user|> " (4) + the query: k1 8 and 8, k2 5, k3 14, k4 15
    assert budget["rewrite"]["tokens"] == {"min": 5, "p50": 8, "p95": 15, "max": 15, "mean": 10.0, "total": 50}
    assert budget["rewrite"]["completion_tokens"]["total"] == 0
    assert (budget["rewrite"]["over_max_length"], budget["rewrite"]["completion_past_max_length"]) == (2, 0)


def test_a_bare_tokenizer_json_gets_the_default_or_a_given_template(generation_tokenizer, token_samples, tmp_path):
    path = generation_tokenizer / "tokenizer.json"
    bare = load_tokenizer(path)
    assert (bare.name, bare.template_source, bare.chat_template) == (
        "tiny-gen",
        "default ChatML",
        DEFAULT_CHAT_TEMPLATE,
    )
    assert TokenBudget(bare).add_all(token_samples).to_dict()["generation_marks"] is True
    template = tmp_path / "mine.jinja"
    template.write_text(tiny_tokenizer.NO_SYSTEM_TEMPLATE, encoding="utf-8")
    given = load_tokenizer(path, chat_template=template)
    assert given.template_source == "file mine.jinja"
    assert TokenBudget(given).add_all(token_samples).to_dict()["messages"]["rejected"] == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "{p}/nope: no such tokenizer folder or tokenizer.json; pass --tokenizer with a local "
         "tokenizer (downloads are never made)"),
        (lambda p: p, "{p}: cannot load a tokenizer from this folder ("),
        (lambda p: (p / "bad.json").write_text("{}") and p / "bad.json", "{p}/bad.json: not a tokenizers JSON file ("),
    ],
    ids=["missing", "empty_folder", "not_a_tokenizer"],
)  # fmt: skip
def test_bad_tokenizer_paths(tmp_path, make, message):
    with pytest.raises(TokenizerError) as error:
        load_tokenizer(make(tmp_path))
    assert str(error.value).startswith(message.format(p=tmp_path))
    assert "\n" not in str(error.value)


def test_missing_transformers_names_the_extra(monkeypatch, generation_tokenizer):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtra) as error:
        load_tokenizer(generation_tokenizer)
    assert (
        str(error.value)
        == "token counting needs transformers, which is not installed: pip install 'personagym-hf[tokens]'"
    )


@pytest.mark.parametrize(
    "counts, expected",
    [
        ([1], {"edges": [0, 1], "rows": [1]}),
        ([2, 3, 4, 5], {"edges": [1, 2, 4, 8], "rows": [1, 2, 1]}),
        ([], {"edges": [], "rows": []}),
    ],
    ids=["one", "powers_of_two", "empty"],
)  # fmt: skip
def test_histogram_buckets_are_powers_of_two(counts, expected):
    import numpy as np

    assert histogram(np.array(counts, dtype=np.int64)) == expected


def test_report_and_summary_lines(generation_tokenizer, token_samples):
    tokenizer = load_tokenizer(generation_tokenizer)
    budget = TokenBudget(tokenizer, max_length=10).add_all(token_samples).to_dict()
    assert report_lines(tokenizer.key, budget) == [
        f"tokenizer {tokenizer.key} (its own chat template, with generation marks)",
        "messages: 4 of 4 rows rendered; tokens min 8, p50 11, p95 15, max 15 (mean 11.5, total 46)",
        "  over --max-length 10: 3 rows (75.0%)",
        "  without assistant tokens: 1 rows (e.g. sample_k3)",
        "  assistant tokens in the loss mask: 21.7%; rows left with none after truncation: 1",
        "  rows by tokens: 5-8: 1, 9-16: 3",
        "query_rewrite: 5 rows; query tokens p50 4, p95 11, max 11; original_query tokens p50 2, p95 2, max 2",
    ]
    assert summary_line(tokenizer.key, budget) == (
        f"tokens ({tokenizer.key}): messages p50 11, p95 15, max 15; 75.0% over 10; 1 row without assistant tokens"
    )


def test_max_length_must_be_positive(generation_tokenizer):
    with pytest.raises(ValueError, match=r"^TokenBudget: expected a max_length of at least 1, got 0$"):
        TokenBudget(load_tokenizer(generation_tokenizer), max_length=0)


def test_report_and_training_lines_of_the_prompt_completion_configs(
    generation_tokenizer, no_system_tokenizer, token_samples
):
    tokenizer = load_tokenizer(generation_tokenizer)
    budget = TokenBudget(tokenizer, max_length=10, views=BRIEF).add_all(token_samples).to_dict()
    assert report_lines(tokenizer.key, budget)[-4:] == [
        "last_turn: 3 of 3 rows rendered; tokens p50 12, p95 15, max 15; completion tokens p50 3, p95 7, max 7",
        "  over --max-length 10: 2 rows; completion past it (TRL drops the row): 1 (e.g. sample_k4)",
        "rewrite: 5 of 5 rows rendered; tokens p50 12, p95 18, max 18; completion tokens p50 4, p95 4, max 4",
        "  over --max-length 10: 4 rows; completion past it (TRL drops the row): 2 (e.g. sample_k3/styled, "
        "sample_k4/styled)",
    ]
    assert training_line(budget) == (
        "before training: TRL drops 4 rows whose completion lies past --max-length 10 (last_turn 1, rewrite 2, "
        "messages with assistant_only_loss=True 1)"
    )
    assert training_line(TokenBudget(tokenizer, views=BRIEF).add_all(token_samples).to_dict()) is None
    unmarked = TokenBudget(load_tokenizer(no_system_tokenizer), views=BRIEF).add_all(token_samples).to_dict()
    assert training_line(unmarked) == (
        "before training: the chat template has no {% generation %} marks: assistant_only_loss=True on messages "
        "needs a template TRL can patch, or --chat-template with one that has them"
    )
    assert report_lines(tokenizer.key, unmarked)[-2:] == [
        "rewrite: 0 of 5 rows rendered; tokens p50 0, p95 0, max 0",
        "  rejected by the template: 5 rows (e.g. sample_k1/styled: System role not supported)",
    ]
