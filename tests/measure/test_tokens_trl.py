"""TRL's own functions on every `messages` row of a demo export (and of the hand-made token store): the rows are
conversational for TRL, and the tokens the budget counts are those TRL's SFT preprocessing makes of them.

Marked `trl` and skipped when TRL is not installed (it needs torch: `pip install torch==2.13.0 trl`)."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import tiny_tokenizer
from token_store import TOKEN_STORE, token_interaction

from personagym_hf.cli.main import main
from personagym_hf.measure.tokens import TokenBudget, load_tokenizer, stats
from personagym_hf.transform.collect import interaction_to_sample

pytestmark = pytest.mark.trl
trl_data = pytest.importorskip("trl.data_utils", reason="trl is not installed (pip install torch==2.13.0 trl)")


@pytest.fixture(scope="module")
def demo_messages(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("demo")
    assert main(["export", "--demo", "--output", str(out), "-q"]) == 0
    rows = []
    for path in sorted((out / "hf_dataset" / "data" / "messages").glob("*.parquet")):
        rows += pq.read_table(path, columns=["sample_id", "messages"]).to_pylist()
    assert len(rows) == 80
    hand_made = [interaction_to_sample(token_interaction(key)).to_dict() for key in TOKEN_STORE]
    return rows + [{"sample_id": s["sample_id"], "messages": s["full_conversation"]} for s in hand_made]


@pytest.mark.parametrize("template", ["GENERATION_TEMPLATE", "NO_SYSTEM_TEMPLATE"])
def test_budget_counts_what_trl_sft_tokenizes(demo_messages, tmp_path, template):
    texts = [message["content"] for row in demo_messages for message in row["messages"]]
    folder = tiny_tokenizer.build_bpe(tmp_path / "bpe", texts, getattr(tiny_tokenizer, template))
    tokenizer = load_tokenizer(folder)
    marks = template == "GENERATION_TEMPLATE"
    lengths, assistant, without = [], 0, 0
    for row in demo_messages:
        example = {"messages": row["messages"]}
        assert trl_data.is_conversational(example)
        if not marks and row["messages"][0]["role"] == "system":
            continue  # the template rejects it (the budget counts those: see test_tokens.py)
        text = trl_data.apply_chat_template(example, tokenizer.tokenizer)["text"]
        own = tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"]
        # what SFTTrainer's tokenize_fn does with a conversational row (assistant_only_loss asks for the mask)
        processed = trl_data._tokenize(tokenizer.tokenizer, row["messages"], return_assistant_tokens_mask=marks)
        assert processed["input_ids"] == own
        lengths.append(len(own))
        if marks:
            assistant += sum(processed["assistant_masks"])
            without += 1 not in processed["assistant_masks"]  # TRL's SFT raises on such a row
    budget = TokenBudget(tokenizer).add_all(demo_messages).to_dict()["messages"]
    assert budget["tokens"] == stats(np.array(lengths))
    assert budget["rendered"] == len(lengths)
    if marks:
        assert without == budget["no_assistant_tokens"] == 1  # sample_k3 has no assistant turn
        assert budget["assistant_token_share"] == round(assistant / sum(lengths), 4)
