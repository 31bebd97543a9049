"""Token budgets in an export: `export --tokenizer` writes `statistics.json` `tokens`, the card's section and a
summary line, the same figures `personagym-hf tokens --data` reads back from the export."""

import json
import sys

import pytest
from exporting import export_store, snapshot
from token_store import LAST_TURN, REWRITE

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.extras import MissingExtra
from personagym_hf.measure.tokens import TokenBudget, load_tokenizer
from personagym_hf.testing.synth import write_store
from personagym_hf.transform.views import chat_views

CONVERT = TrainingDataCollector().interaction_to_training_sample


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


HEADER = (
    "| rows | p50 | p95 | max | mean | over 10 | rejected by the template | without assistant tokens | "
    "assistant share of tokens |"
)
CARD_SECTION = """## Token budgets

### `tiny-gen` (its own chat template, sha256 `{sha}`)

`messages` rows rendered with the chat template as TRL's `SFTTrainer` renders them.

{header}
|---|---|---|---|---|---|---|---|---|
| 4 | 11 | 15 | 15 | 11.5 | 3 (75.0%) | 0 | 1 | 21.7% |

| tokens per row | rows | share |
|---|---|---|
| 5–8 | 1 | `█████` 25.0% |
| 9–16 (partly over max length) | 3 | `███████████████` 75.0% |

`last_turn` and `rewrite` rows rendered as TRL's `SFTTrainer` renders prompt-completion rows: the prompt with the \
generation prompt, then prompt and completion together.

| config | rows | p50 | p95 | max | completion p50 | completion max | over 10 | completion past 10 (TRL drops the \
row) | rejected by the template |
|---|---|---|---|---|---|---|---|---|---|
| `last_turn` | 3 | 12 | 15 | 15 | 3 | 7 | 2 | 1 | 0 |
| `rewrite` | 5 | 12 | 18 | 18 | 4 | 4 | 4 | 2 | 0 |

**Before training:** TRL drops 4 rows whose completion lies past --max-length 10 (last_turn 1, rewrite 2, messages \
with assistant_only_loss=True 1).

`query_rewrite` (5 rows), tokens without special tokens:

| text | p50 | p95 | max |
|---|---|---|---|
| `query` | 4 | 11 | 11 |
| `original_query` | 2 | 2 | 2 |

`statistics.json` holds these figures under `tokens` → `tiny-gen@{sha}`.
"""


def test_an_export_with_a_tokenizer_holds_the_budgets_the_tokens_command_reads_back(
    token_store, tiny, tmp_path, capsys
):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"  # the prompts of token_store.BRIEF, whose rows it counts by hand
    config.write_text("training_data:\n  prompts: {rewrite_instruction: be brief, persona: none}\n", encoding="utf-8")
    code, printed, _err = run(
        capsys, "export", "--interactions", str(token_store), "--output", str(out), "-q", "--tokenizer", str(tiny),
        "--max-length", "10", "--config", str(config),
    )  # fmt: skip
    assert code == 0
    sha = load_tokenizer(tiny).template_sha256
    key = f"tiny-gen@{sha[:12]}"
    tokens = json.loads((out / "statistics.json").read_text(encoding="utf-8"))["tokens"]
    # k1 12 tokens, k2 8, k3 11 (no assistant turn), k4 15 (its assistant tokens past the 10th): test_tokens.py
    assert list(tokens) == [key]
    assert tokens[key]["messages"] == {
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
        "assistant_token_share": 0.2174,
        "dropped_after_truncation": 1,
    }
    assert tokens[key]["query_rewrite"]["query"] == {
        "min": 1,
        "p50": 4,
        "p95": 11,
        "max": 11,
        "mean": 6.0,
        "total": 30,
    }
    assert (tokens[key]["last_turn"], tokens[key]["rewrite"]) == (LAST_TURN, REWRITE)
    assert json.loads((out / "hf_dataset" / "statistics.json").read_text(encoding="utf-8"))["tokens"] == tokens
    # Both code paths agree: the tokens command on the export's JSONL files and on its Parquet configs.
    for data in (out, out / "hf_dataset"):
        code, report, _err = run(
            capsys, "tokens", "--tokenizer", str(tiny), "--max-length", "10", "--data", str(data), "--json"
        )
        assert (code, json.loads(report)) == (0, tokens)
    card = (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    # after the leakage section (the export audits by default), as test_export_audit.py places that one
    assert "\n\n" + CARD_SECTION.format(sha=sha[:12], header=HEADER) + "\n\n## Provenance\n" in card
    assert (
        f"  tokens ({key}): messages p50 11, p95 15, max 15; 75.0% over 10; 1 row without assistant tokens\n"
        "  before training: TRL drops 4 rows whose completion lies past --max-length 10 (last_turn 1, rewrite 2, "
        "messages with assistant_only_loss=True 1)\n"
    ) in printed


def test_token_budgets_are_the_same_bytes_for_any_num_proc_and_a_no_op_append(tiny, tmp_path):
    chunked = RunOptions(chunk_files=7)
    store = write_store(tmp_path / "s", count=40, personas=12, seed=4, reply_chars=40)
    cfg = parse_config({"training_data": {"split_by": "sample"}})
    one = export_store(store, tmp_path / "one", cfg, CONVERT, options=chunked, tokenizer=tiny, max_length=64)
    two = export_store(
        store, tmp_path / "two", cfg, CONVERT, num_proc=2, options=chunked, tokenizer=tiny, max_length=64
    )
    before = snapshot(tmp_path / "one")
    assert before == snapshot(tmp_path / "two")
    assert one.result.statistics["tokens"] == two.result.statistics["tokens"]
    export_store(store, tmp_path / "one", cfg, CONVERT, append=True, options=chunked, tokenizer=tiny, max_length=64)
    assert snapshot(tmp_path / "one") == before
    # The rows as written, split after split, in one budget.
    budget = TokenBudget(load_tokenizer(tiny), max_length=64, views=chat_views(cfg))
    for name in ("train", "val", "test"):
        lines = (tmp_path / "one" / f"{name}_samples.jsonl").read_text(encoding="utf-8").splitlines()
        budget.add_all(json.loads(line) for line in lines)
    assert one.result.statistics["tokens"] == {budget.tokenizer.key: budget.to_dict()}
    assert sum(one.result.statistics["samples_by_split"].values()) == 40
    assert len(set(one.result.statistics["samples_by_split"].values()) - {0}) > 1  # rows in several splits


def test_a_missing_transformers_is_one_line_before_the_output_folder_is_touched(
    token_store, tiny, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "transformers", None)
    out = tmp_path / "out"
    code, _out, err = run(
        capsys, "export", "--interactions", str(token_store), "--output", str(out), "-q", "--tokenizer", str(tiny)
    )
    assert code == 1
    assert err == (
        "personagym-hf export: error: token counting needs transformers, which is not installed: "
        "pip install 'personagym-hf[tokens]'\n"
    )
    with pytest.raises(MissingExtra, match=r"^token counting needs transformers, which is not installed: pip "):
        export_store(token_store, out, parse_config({}), CONVERT, tokenizer=tiny)
    assert not out.exists()


def test_chat_template_and_max_length_need_a_tokenizer(token_store, tmp_path, capsys):
    out = tmp_path / "out"
    code, _out, err = run(
        capsys, "export", "--interactions", str(token_store), "--output", str(out), "--max-length", "8"
    )
    assert (code, err) == (
        1,
        "personagym-hf export: error: --chat-template and --max-length count tokens: pass --tokenizer PATH "
        "with them\n",
    )
    assert not out.exists()


def test_an_export_with_a_tokenizer_prints_nothing_of_transformers_on_stderr(tmp_path):
    import subprocess
    import sys

    from tiny_tokenizer import GENERATION_TEMPLATE, build

    tokenizer = build(tmp_path / "tok", GENERATION_TEMPLATE)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    # without torch, as the [tokens] extra installs it, whether or not the test environment has torch (for trl):
    # transformers looks for it with importlib.util.find_spec, which a None in sys.modules answers with None
    run = "import runpy, sys; sys.modules['torch'] = None; runpy.run_module('personagym_hf', run_name='__main__')"
    done = subprocess.run(
        [sys.executable, "-c", run, "export", "--demo", "--output", str(tmp_path / "out"), "-q",
         "--tokenizer", str(tokenizer)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
