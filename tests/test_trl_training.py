"""TRL trains the chat configs as exported, with no code of the user's: `SFTTrainer` runs a few steps on CPU, with a
tiny randomly initialised model and a tokenizer built here (no network), on each prompt-completion config loaded with
`datasets.load_dataset(folder, config)` and on `messages` with `assistant_only_loss=True`. The collated labels train
the completion (or the assistant turns) and mask the rest; and the rows TRL drops at a small `max_length` are the
rows `personagym-hf tokens` counts.

Marked `trl` and skipped when TRL is not installed (it needs torch: `pip install torch==2.13.0 trl`)."""

import math

import numpy as np
import pytest
import tiny_tokenizer

from personagym_hf.cli.main import main
from personagym_hf.measure.tokens import TokenBudget, load_tokenizer, stats
from personagym_hf.read.exported import iter_parquet
from personagym_hf.transform.views import ChatViews

pytestmark = [
    pytest.mark.trl,
    # TRL's SFTConfig sets an argument transformers renamed; not this project's to fix
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
]
trl = pytest.importorskip("trl", reason="trl is not installed (pip install torch==2.13.0 trl)")
datasets = pytest.importorskip("datasets")

MAX_LENGTH = 4096  # every demo row fits: nothing is truncated while training
SHORT = 48  # cuts completions away: rows TRL drops


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["export", "--demo", "--output", str(out), "-q"]) == 0
    return out / "hf_dataset"


@pytest.fixture(scope="module")
def tokenizer_path(folder, tmp_path_factory):
    """A byte-level BPE trained on the export's texts, with a chat template that marks the assistant's turns and
    ends a prompt with the assistant's marker (`tiny_tokenizer.TRAINING_TEMPLATE`)."""
    texts = []
    for config in ("messages", "rewrite"):
        for row, _split in iter_parquet(folder, config, ("messages", "prompt", "completion")):
            texts += [m["content"] for key in ("messages", "prompt", "completion") for m in row.get(key) or ()]
    return tiny_tokenizer.build_bpe(tmp_path_factory.mktemp("tok") / "bpe", texts, tiny_tokenizer.TRAINING_TEMPLATE)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    return load_tokenizer(tokenizer_path).tokenizer


def tiny_model(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=MAX_LENGTH,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def trainer_for(dataset, tokenizer, tmp_path, max_length: int = MAX_LENGTH, **options):
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, max_length=max_length,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, seed=0, **options,
    )  # fmt: skip
    return trl.SFTTrainer(model=tiny_model(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer)


def trained_text(tokenizer, example: dict) -> tuple[str, list[int]]:
    """The text of the tokens a row trains on (labels not -100), and the labels' mask."""
    labels = example["labels"].tolist()
    ids = [token for token, label in zip(example["input_ids"].tolist(), labels) if label != -100]
    return tokenizer.decode(ids), [int(label != -100) for label in labels]


def collated(trainer, count: int = 2) -> list[tuple[dict, dict]]:
    """The first rows as the trainer prepared them, and the batch its collator makes of them, row by row."""
    rows = [trainer.train_dataset[index] for index in range(count)]
    batch = trainer.data_collator([{key: row[key] for key in ("input_ids", "labels")} for row in rows])
    return [(row, {key: value[index] for key, value in batch.items()}) for index, row in enumerate(rows)]


def finite_losses(trainer) -> list[float]:
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), losses
    return losses


@pytest.mark.parametrize("config", ["rewrite", "last_turn"])
def test_sft_trains_a_prompt_completion_config_on_its_completion(folder, tokenizer, tokenizer_path, tmp_path, config):
    dataset = datasets.load_dataset(str(folder), config)
    assert trl.data_utils.is_conversational(dataset["train"][0])
    trainer = trainer_for(dataset["train"], tokenizer, tmp_path)
    assert len(trainer.train_dataset) == dataset["train"].num_rows  # no row dropped
    for row, batch in collated(trainer):
        prompt = tokenizer.apply_chat_template(
            row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        text, mask = trained_text(tokenizer, batch)
        length = len(row["input_ids"])
        # the prompt (and the padding after the row) masked, every completion token trained
        assert mask == [0] * len(prompt) + [1] * (length - len(prompt)) + [0] * (len(mask) - length)
        assert batch["input_ids"].tolist()[: len(prompt)] == prompt
        assert text == "".join(message["content"] + "</s>" for message in row["completion"])
    # the token budget counts the tokens TRL made of each row, and of its completion
    budget = train_budget(folder, TokenBudget(load_tokenizer(tokenizer_path), views=ChatViews()), config)[config]
    prepared = trainer.train_dataset
    assert budget["tokens"] == stats(np.array([len(ids) for ids in prepared["input_ids"]]))
    assert budget["completion_tokens"] == stats(np.array([sum(x != -100 for x in row) for row in prepared["labels"]]))
    finite_losses(trainer)


def test_sft_trains_messages_on_the_assistant_turns(folder, tokenizer, tmp_path):
    dataset = datasets.load_dataset(str(folder), "messages")
    trainer = trainer_for(dataset["train"], tokenizer, tmp_path, assistant_only_loss=True)
    assert len(trainer.train_dataset) == dataset["train"].num_rows
    for row, batch in collated(trainer):
        text, mask = trained_text(tokenizer, batch)
        assert text == "".join(m["content"] + "</s>" for m in row["messages"] if m["role"] == "assistant")
        assert 0 < sum(mask) < len(row["input_ids"])  # the system and user turns are masked
    finite_losses(trainer)


@pytest.mark.parametrize(
    "config, options", [("rewrite", {}), ("last_turn", {}), ("messages", {"assistant_only_loss": True})]
)
def test_the_rows_trl_drops_at_a_short_max_length_are_those_the_token_check_counts(
    folder, tokenizer, tokenizer_path, tmp_path, config, options
):
    train = datasets.load_dataset(str(folder), config)["train"]
    kept = len(trainer_for(train, tokenizer, tmp_path, max_length=SHORT, **options).train_dataset)
    budget = TokenBudget(load_tokenizer(tokenizer_path), max_length=SHORT, views=ChatViews())
    counts = train_budget(folder, budget, config)
    dropped = counts["messages"]["dropped_after_truncation"] if config == "messages" else counts[config][
        "completion_past_max_length"]  # fmt: skip
    assert 0 < dropped == train.num_rows - kept


def train_budget(folder, budget: TokenBudget, config: str) -> dict:
    """The token budget of the train split of `config`, from its Parquet rows as `personagym-hf tokens` reads them."""
    for row, split in iter_parquet(folder, config, ("sample_id", "messages", "prompt", "completion")):
        if split != "train":
            continue
        if config == "messages":
            budget.add_messages(row["sample_id"], row["messages"])
        else:
            budget.add_pair(config, row["sample_id"], row["prompt"], row["completion"])
    return budget.to_dict()
