"""Test-session setup.

`hub_fixtures` must be imported first: it points HF_ENDPOINT, HF_HOME and friends at a local
Hub-compatible server and temp caches, and `huggingface_hub`/`datasets` read those at import time.
"""

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hub_fixtures import *  # noqa: F401,F403  (env setup + hub fixtures; must come before HF imports)

# ray_local, ray_cluster: Ray on loopback only, in a test temp folder (skipped outside a loopback-only namespace)
pytest_plugins = ["ray_support"]

EXAMPLE_INTERACTION = {
    "interaction_id": "interaction_persona_001_20260206_103000",
    "persona_id": "persona_001",
    "persona_features": {"role": "engineer", "communication_style": "casual", "age_band": "25_34"},
    "original_query": "Help me write Python code",
    "initial_query": "hey can u help me write some python code",
    "messages": [
        {
            "role": "user",
            "content": "hey can u help me write some python code",
            "timestamp": "2026-02-06T10:30:00",
            "metadata": {"is_initial": True, "was_noised": False},
        },
        {
            "role": "assistant",
            "content": "Sure! What kind of Python code ...",
            "timestamp": "2026-02-06T10:30:05",
            "metadata": {"model": "gpt-4o-mini", "provider": "openai"},
        },
        {"role": "user", "content": "a script to process csv files", "metadata": {"is_followup": True}},
        {"role": "assistant", "content": "Here's a Python script ..."},
    ],
    "num_turns": 2,
    "metadata": {
        "created_at": "2026-02-06T10:30:00",
        "distractor_applied": True,
        "assistant_model": {"model": "gpt-4o-mini", "provider": "openai"},
    },
}


def make_interaction(number: int, persona: str = "persona_001", **overrides) -> dict:
    """A small valid interaction; `overrides` replace top-level keys."""
    record = json.loads(json.dumps(EXAMPLE_INTERACTION))
    record["interaction_id"] = f"interaction_{persona}_{number:04d}"
    record["persona_id"] = persona
    record["metadata"]["created_at"] = f"2026-02-06T10:{number % 60:02d}:00"
    record.update(overrides)
    return record


def write_files(folder: Path, records: list[dict]) -> Path:
    """Upstream per-file layout: one pretty-printed JSON file per interaction."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['interaction_id']}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder


@pytest.fixture
def example() -> dict:
    return json.loads(json.dumps(EXAMPLE_INTERACTION))


@pytest.fixture
def small_store(tmp_path) -> Path:
    """12 interactions of 6 personas in the per-file layout."""
    records = [make_interaction(i, persona=f"persona_{i % 6:03d}") for i in range(12)]
    return write_files(tmp_path / "interactions", records)


# A store with known leaks between splits (persona -> split with seed 42 and the default ratios: ada and bob train,
# cyd validation, fay and xia test; `test_audit` checks that). Each entry: persona, original_query, user turns.
LEAKY = {
    "t1": (
        "persona_ada",
        "Explain how compound interest works",
        ["hey can u explain how compound interest works pls", "make it shorter"],
    ),
    "t2": (
        "persona_bob",
        "Plan a three-day trip to Kyoto",
        ["Plan a three-day trip to Kyoto for my family of four people this spring", "add a day in Nara"],
    ),
    "t3": (
        "persona_ada",
        "Summarize the causes of the French Revolution",
        ["Summarize the causes of the French Revolution in three short paragraphs please"],
    ),
    # the same original_query as t3 under another persona; a near-duplicate initial query (one letter, case)
    "v1": (
        "persona_cyd",
        "Summarize the causes of the French Revolution",
        ["Summarise the causes of the French revolution in three short paragraphs please"],
    ),
    # the same original_query as t1 under another persona; an unrelated styling of it
    "x1": (
        "persona_fay",
        "Explain how compound interest works",
        ["Good afternoon. Could you kindly explain how compound interest works?"],
    ),
    # t2's initial query, but for case and punctuation; a near-duplicate conversation
    "x2": (
        "persona_xia",
        "Plan a trip to Kyoto",
        ["plan a three-day trip to Kyoto for my family of four people this spring!!", "add a day in Nara please"],
    ),
    "x3": (
        "persona_fay",
        "Suggest a vegetarian dinner for six people",
        ["Suggest a vegetarian dinner for six people"],
    ),
}


def leaky_interaction(key: str) -> dict:
    persona, original, turns = LEAKY[key]
    messages = []
    for turn in turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": f"An answer to: {turn}"}]
    record = make_interaction(0, persona=persona, original_query=original, initial_query=turns[0], messages=messages)
    record["interaction_id"] = f"interaction_{key}"
    record.pop("num_turns")
    return record


@pytest.fixture
def leaky_store(tmp_path) -> Path:
    return write_files(tmp_path / "leaky", [leaky_interaction(key) for key in LEAKY])


HASHED = {"training_data": {"split_assignment": "hashed"}}


@pytest.fixture
def hashed(tmp_path) -> Path:
    """A config.yaml that gives each persona the split of its own hash (`split_assignment: hashed`): the placement the
    hand-made stores above were designed for (the default balances personas, which moves them)."""
    path = tmp_path / "hashed.yaml"
    path.write_text("training_data:\n  split_assignment: hashed\n", encoding="utf-8")
    return path


@pytest.fixture
def token_store(tmp_path):
    """The store of `token_store.TOKEN_STORE`: interactions with known token counts."""
    from token_store import TOKEN_STORE, token_interaction

    return write_files(tmp_path / "tokens_store", [token_interaction(key) for key in TOKEN_STORE])


@pytest.fixture
def tiny(tmp_path):
    """A tiny tokenizer built offline, with a chat template that marks generation spans."""
    import tiny_tokenizer

    return tiny_tokenizer.build(tmp_path / "tiny-gen", tiny_tokenizer.GENERATION_TEMPLATE)
