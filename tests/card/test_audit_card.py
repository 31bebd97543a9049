import tiny_tokenizer
from leaky import leaky_samples
from token_store import TOKEN_STORE, token_interaction

from personagym_hf.card.sections import leakage_markdown, tokens_markdown
from personagym_hf.measure.leakage import LeakageAudit
from personagym_hf.measure.tokens import TokenBudget, load_tokenizer
from personagym_hf.transform.collect import interaction_to_sample


def test_leakage_section_of_the_leaky_store():
    assert leakage_markdown(LeakageAudit().add_all(leaky_samples()).to_dict()) == (
        "## Leakage between splits\n"
        "\n"
        "| splits | personas shared | `original_query` (exact / exact or near) | `initial_query` (exact / exact or "
        "near) | conversation (exact / exact or near) |\n"
        "|---|---|---|---|---|\n"
        "| train ↔ validation | 0 | 100.0% / 100.0% | 0.0% / 100.0% | 0.0% / 100.0% |\n"
        "| train ↔ test | 0 | 33.3% / 33.3% | 33.3% / 33.3% | 0.0% / 33.3% |\n"
        "| validation ↔ test | 0 | 0.0% / 0.0% | 0.0% / 0.0% | 0.0% / 0.0% |\n"
        "\n"
        "A share is of the rows of the smaller split of the pair (validation, test): those whose text has a "
        "duplicate in the other split, after normalising case, whitespace and punctuation. An exact duplicate is the "
        "same whole text; a near duplicate has an estimated Jaccard similarity of at least 0.8 over character "
        "3-grams of the first 1000 characters of each user turn or query, at most 4000 of a text (MinHash with LSH: "
        "21 bands of 6 bins; each text of the smaller split checked against at most 4 texts of the other split per "
        "band, the first in row order). `conversation` is a sample's user turns. `statistics.json` (`leakage`) "
        "holds the counts, example sample ids and the method.\n"
        "\n"
        "- train ↔ validation: 0 personas shared, 100.0% of validation `original_query` values have an exact or "
        "near duplicate in train.\n"
        "- train ↔ test: 0 personas shared, 33.3% of test `original_query` values have an exact or near duplicate "
        "in train.\n"
    )


def test_leakage_section_exact_only_and_one_split():
    exact = leakage_markdown(LeakageAudit(near=False).add_all(leaky_samples()).to_dict()).splitlines()
    assert (
        exact[2]
        == "| splits | personas shared | `original_query` (exact) | `initial_query` (exact) | conversation (exact) |"
    )
    assert exact[4] == "| train ↔ validation | 0 | 100.0% | 0.0% | 0.0% |"
    assert exact[8].endswith(
        "after normalising case, whitespace and punctuation. An exact duplicate is the same whole text. "
        "`conversation` is a sample's user turns. `statistics.json` (`leakage`) holds the counts, example sample "
        "ids and the method."
    )
    one = LeakageAudit().add_all([({"sample_id": "a", "initial_query": "x"}, "train")]).to_dict()
    assert leakage_markdown(one) == "## Leakage between splits\n\nOne split only: nothing to compare.\n"


def test_tokens_section_of_the_token_store(tmp_path):
    tokenizer = load_tokenizer(tiny_tokenizer.build(tmp_path / "tiny-gen", tiny_tokenizer.GENERATION_TEMPLATE))
    samples = [interaction_to_sample(token_interaction(key)).to_dict() for key in TOKEN_STORE]
    budget = TokenBudget(tokenizer, max_length=10).add_all(samples)
    sha = tokenizer.template_sha256
    assert tokens_markdown({tokenizer.key: budget.to_dict()}) == (
        "## Token budgets\n"
        "\n"
        f"### `tiny-gen` (its own chat template, sha256 `{sha[:12]}`)\n"
        "\n"
        "`messages` rows rendered with the chat template as TRL's `SFTTrainer` renders them.\n"
        "\n"
        "| rows | p50 | p95 | max | mean | over 10 | rejected by the template | without assistant tokens | "
        "assistant share of tokens |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| 4 | 11 | 15 | 15 | 11.5 | 3 (75.0%) | 0 | 1 | 21.7% |\n"
        "\n"
        "| tokens per row | rows | share |\n"
        "|---|---|---|\n"
        "| 5–8 | 1 | `█████` 25.0% |\n"
        "| 9–16 (partly over max length) | 3 | `███████████████` 75.0% |\n"
        "\n"
        "**Before training:** TRL drops 1 row whose completion lies past --max-length 10 (messages with "
        "assistant_only_loss=True 1).\n"
        "\n"
        "`query_rewrite` (5 rows), tokens without special tokens:\n"
        "\n"
        "| text | p50 | p95 | max |\n"
        "|---|---|---|---|\n"
        "| `query` | 4 | 11 | 11 |\n"
        "| `original_query` | 2 | 2 | 2 |\n"
        "\n"
        f"`statistics.json` holds these figures under `tokens` → `tiny-gen@{sha[:12]}`.\n"
    )
