"""A store shaped like PersonaGym's own (shared/INTERACTIONS.md, "The shape of a real store"): a pool of base
queries, each persona given `per_persona` of them, every `original_query` repeating across personas, each persona's
`initial_query` a styled variant of it, every dialogue distinct, and a `metadata.query_id` on some queries."""

from __future__ import annotations

import json
from pathlib import Path

STYLES = ("hey, {q} pls", "Could you {q}?", "{q} — quickly", "so... {q}", "{q}!!")


def base_query(number: int) -> str:
    return f"Explain topic {number} in plain words"


def write_shaped_store(
    folder: Path,
    personas: int,
    queries: int,
    per_persona: int,
    *,
    with_ids: int = 2,
    start: int = 0,
    drawn: bool = False,
) -> Path:
    """Persona p (from `start`) asks queries (p * per_persona + j) % `queries`, j < per_persona, so every query
    reaches exactly personas * per_persona / queries personas when that divides; with `drawn`, `per_persona` queries
    drawn at random (seeded by the persona) as upstream's query stage assigns them, which links every persona to
    every other through shared queries. A query whose number is a multiple of `with_ids` carries `metadata.query_id`
    (0: none does). One file per interaction, as upstream writes them."""
    import random

    folder.mkdir(parents=True, exist_ok=True)
    for persona in range(start, start + personas):
        asked = random.Random(persona).sample(range(queries), per_persona) if drawn else None
        for turn in range(per_persona):
            query = asked[turn] if drawn else (persona * per_persona + turn) % queries
            text = base_query(query)
            styled = STYLES[persona % len(STYLES)].format(q=text.lower())
            record = {
                "interaction_id": f"interaction_persona_{persona:05d}_{turn:02d}",
                "persona_id": f"persona_{persona:05d}",
                "persona_features": {"role": ("student", "engineer", "nurse")[persona % 3], "age_band": "25_34"},
                "original_query": text,
                "initial_query": styled,
                "messages": [
                    {"role": "user", "content": styled},
                    {"role": "assistant", "content": f"Answer {persona}-{turn}: topic {query}, for {persona}."},
                    {"role": "user", "content": f"thanks, and one more detail about {query}? ({persona})"},
                    {"role": "assistant", "content": f"Detail {persona}-{turn} on topic {query}."},
                ],
                "num_turns": 2,
                "metadata": {"created_at": f"2026-02-06T10:{turn:02d}:00"},
            }
            if with_ids and query % with_ids == 0:
                record["metadata"]["query_id"] = f"query_{query:04d}"
            (folder / f"{record['interaction_id']}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder
