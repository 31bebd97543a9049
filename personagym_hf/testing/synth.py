"""Synthetic interaction stores in the upstream layout, for the demo, the tests and the benchmark.

Deterministic for a given seed: personas with varying feature sets, multi-turn dialogues, a quarter of
them noisy (half in each noise-metadata layout), some non-ASCII text, and TokenTracker records.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Iterator

ROLES = ["engineer", "student", "designer", "teacher", "nurse", "lawyer", "chef", "researcher"]
DIMENSIONS = {
    "role": ROLES,
    "age_band": ["18_24", "25_34", "35_44", "45_54", "55_64"],
    "communication_style": ["casual", "formal", "terse", "verbose"],
    "expertise": ["novice", "intermediate", "expert"],
    "language": ["en", "en-GB", "de", "fr", "ja"],
    "patience": ["low", "medium", "high"],
    "goal_orientation": ["exploratory", "task_focused"],
}
TASKS = [
    ("Help me write a Python script that reads a CSV file", "code_generation"),
    ("Explain how compound interest works", "explanation"),
    ("Plan a three-day trip to Kyoto", "planning"),
    ("Draft a polite email asking for a deadline extension", "writing"),
    ("Suggest a vegetarian dinner for six people", "recommendation"),
    ("Summarize the causes of the French Revolution", "summarization"),
    ("Debug why my React component renders twice", "debugging"),
    ("Compare SQL and NoSQL databases for a small shop", "comparison"),
]
STYLED = {
    "casual": "hey can u {q} pls",
    "formal": "Good afternoon. Could you kindly {q}?",
    "terse": "{q}.",
    "verbose": "So I have been thinking about this for a while and I would really like it if you could {q}, thanks!",
}
FOLLOWUPS = [
    "make it shorter",
    "add error handling too",
    "can you explain that step again?",
    "what about edge cases?",
    "give me an example",
    "café-friendly version please — merci!",
    "now in bullet points",
    "日本語でもお願いします",
]
SENTENCES = [
    "Here is a step-by-step approach that keeps things simple.",
    "First, make sure the input is what you expect before doing anything else.",
    "A common pitfall is forgetting to handle the empty case, so check for it explicitly.",
    "You can adapt the example below to your own data without much change.",
    "If performance matters, measure before optimizing; the simple version is often fast enough.",
    "Let me know if you would like a variant that handles larger inputs or different formats.",
    "Naïve solutions work for small inputs, but the résumé of trade-offs is worth reading.",
    "This keeps the logic readable and easy to test.",
]
NOISE = {
    "surface_noise": ["typo_misspelling", "colloquial_speech", "punctuation_format", "emotional_attitude"],
    "incomplete_info": ["missing_slots", "vague_slot_values", "incomplete_sentence", "context_dependency"],
    "semantic_ambiguity": ["unclear_priority", "multi_intent", "intent_ambiguity", "self_contradiction"],
}
MODELS = [("gpt-4o-mini", "openai"), ("claude-3-haiku", "anthropic"), ("llama-3-8b", "together")]


def make_persona(index: int, rng: random.Random) -> dict[str, Any]:
    features = {"role": ROLES[index % len(ROLES)]}
    for name, values in DIMENSIONS.items():
        if name != "role" and rng.random() < 0.7:  # a persona samples ~70% of its dimensions
            features[name] = rng.choice(values)
    return {"persona_id": f"persona_{index:05d}", "features": features}


def _noisy(text: str, rng: random.Random) -> tuple[str, str, list[str]]:
    layer = rng.choice(list(NOISE))
    strategies = rng.sample(NOISE[layer], 2)
    words = text.split()
    if len(words) > 3:
        words.pop(rng.randrange(len(words)))
    return " ".join(words).lower().replace("e", "3", 1), layer, strategies


def _reply(rng: random.Random, length: int) -> str:
    parts, size = [], 0
    while size < length:
        sentence = rng.choice(SENTENCES)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def make_interaction(
    index: int, persona: dict[str, Any], rng: random.Random, reply_chars: int = 600
) -> dict[str, Any]:
    original, intent = rng.choice(TASKS)
    style = persona["features"].get("communication_style", "casual")
    initial = STYLED[style].format(q=original[0].lower() + original[1:])
    turns = rng.randint(1, 4)
    model, provider = MODELS[index % len(MODELS)]
    day, second = 1 + index % 28, index % 86400
    created = f"2026-02-{day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    interaction_id = f"interaction_{persona['persona_id']}_{index:07d}"
    messages: list[dict[str, Any]] = []
    prompts = [initial] + rng.sample(FOLLOWUPS, turns - 1)
    for turn, prompt in enumerate(prompts):
        messages.append(
            {
                "role": "user",
                "content": prompt,
                "timestamp": created,
                "metadata": {"is_initial": True, "was_noised": False} if turn == 0 else {"is_followup": True},
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": _reply(rng, reply_chars),
                "timestamp": created,
                "metadata": {"model": model, "provider": provider},
            }
        )
    metadata: dict[str, Any] = {
        "created_at": created,
        "distractor_applied": False,
        "assistant_model": {"model": model, "provider": provider},
    }
    if rng.random() < 0.25:
        text, layer, strategies = _noisy(initial, rng)
        metadata.update(distractor_applied=True, distractor_type="semantic")
        if index % 2:
            metadata["noisy_versions"] = {
                "initial_query": {
                    "clean_query": initial,
                    "noisy_versions": [{"noisy_text": text, "noise_type": layer, "applied_strategies": strategies}],
                }
            }
        else:
            metadata["semantic_noise"] = {
                "initial_query": {
                    "original_text": initial,
                    "noisy_text": text,
                    "layer": layer,
                    "layer_index": list(NOISE).index(layer) + 1,
                    "applied_strategies": strategies,
                    "semantics": {"intent": intent, "slots": {}},
                }
            }
    record = {
        "interaction_id": interaction_id,
        "persona_id": persona["persona_id"],
        "persona_features": persona["features"],
        "original_query": original,
        "initial_query": initial,
        "messages": messages,
        "num_turns": turns,
        "query_id": f"query_{index % 500:04d}",
        "metadata": metadata,
    }
    return record


def iter_interactions(count: int, personas: int, seed: int = 0, reply_chars: int = 600) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    people = [make_persona(i, rng) for i in range(max(1, personas))]
    for index in range(count):
        yield make_interaction(index, people[index % len(people)], rng, reply_chars)


UPSTREAM_MODULES = ("persona_formulation", "query_generation", "interaction_generation", "distractor")


def token_usage_export(calls: Iterable[tuple[str, str, str, int, int, str]]) -> dict[str, Any]:
    """A TokenTracker export (`token_usage_*.json`) of `calls`: (module, model, provider, input tokens, output tokens,
    timestamp) each, as upstream records them."""
    records = [
        {
            "module": module,
            "operation": "generate",
            "model": model,
            "provider": provider,
            "input_tokens": inputs,
            "output_tokens": outputs,
            "total_tokens": inputs + outputs,
            "timestamp": timestamp,
            "metadata": {},
        }
        for module, model, provider, inputs, outputs, timestamp in calls
    ]
    return {"summary": {"total_calls": len(records)}, "by_module": {}, "by_model": {}, "records": records}


def index_entry(interaction: dict[str, Any], filepath: str, query_id: str) -> dict[str, Any]:
    """An interaction's entry in upstream's `index.json`."""
    return {
        "interaction_id": interaction["interaction_id"],
        "persona_id": interaction["persona_id"],
        "filepath": filepath,
        "num_turns": interaction["num_turns"],
        "created_at": interaction["metadata"]["created_at"],
        "query_id": query_id,
    }


def token_usage_for(interactions: int, seed: int = 0) -> dict[str, Any]:
    """A small TokenTracker export (a record per module call of the first few interactions)."""
    rng = random.Random(seed)
    return token_usage_export(
        (module, *MODELS[index % len(MODELS)], rng.randint(80, 400), rng.randint(40, 300),
         f"2026-02-01T10:{index:02d}:00")  # fmt: skip
        for index in range(min(interactions, 8))
        for module in UPSTREAM_MODULES
    )


def write_store(folder: str | Path, count: int, personas: int, seed: int = 0, reply_chars: int = 600) -> Path:
    """Write a store in the upstream per-file layout (pretty JSON per interaction, index.json, token usage)."""
    from ..interaction_generator import InteractionStorage
    from ..write.files import write_json_atomic

    storage = InteractionStorage(folder)
    for interaction in iter_interactions(count, personas, seed, reply_chars):
        write_json_atomic(storage.file_for(interaction["interaction_id"]), interaction)
    index = [
        index_entry(i, storage.file_for(i["interaction_id"]).name, i["query_id"])
        for i in iter_interactions(count, personas, seed, reply_chars)
    ]
    write_json_atomic(
        storage.path / "index.json",
        {"interactions": index, "count": len(index), "last_updated": max(e["created_at"] for e in index)},
    )
    write_json_atomic(storage.path / "token_usage_demo.json", token_usage_for(count, seed))
    return storage.path
