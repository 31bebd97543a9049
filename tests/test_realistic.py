"""The realistic store of the benchmark: deterministic, in PersonaGym's shape, read by the export as it is."""

import hashlib
from collections import Counter

import pytest

from personagym_hf.read.store import discover_files, iter_records
from personagym_hf.testing.realistic import iter_realistic_interactions, write_realistic_store
from personagym_hf.transform.collect import interaction_to_sample


def digest_folder(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_arguments_write_the_same_bytes(tmp_path):
    one = write_realistic_store(tmp_path / "one", 40, personas=8, queries=5, seed=3)
    two = write_realistic_store(tmp_path / "two", 40, personas=8, queries=5, seed=3)
    assert digest_folder(one) == digest_folder(two)
    assert len(discover_files(one)) == 40 and (one / "index.json").exists()
    other = write_realistic_store(tmp_path / "other", 40, personas=8, queries=5, seed=4)
    assert digest_folder(one) != digest_folder(other)


def test_the_store_has_the_shape_of_a_real_one():
    records = list(iter_realistic_interactions(2000, personas=400, queries=40, queries_per_persona=5, seed=0))
    by_persona: dict[str, set] = {}
    for record in records:
        by_persona.setdefault(record["persona_id"], set()).add(record["metadata"]["query_id"])
    assert len(by_persona) == 400 and max(map(len, by_persona.values())) == 5
    originals = Counter(record["original_query"] for record in records if "original_query" in record)
    assert len(originals) == 40  # the pool: each base query reaches many personas
    styled = [r for r in records if r.get("original_query", r["initial_query"]) != r["initial_query"]]
    assert 0.4 < len(styled) / len(records) < 0.6  # transfer_probability 0.5
    assert 0 < sum("original_query" not in r for r in records) < len(records) - len(styled)
    dialogues = [tuple(m["content"] for m in r["messages"] if m["role"] == "assistant") for r in records]
    assert len(set(dialogues)) == len(dialogues)  # every dialogue distinct ...
    assistant = [text for dialogue in dialogues for text in dialogue]
    assert len(set(assistant)) > 0.95 * len(assistant)  # ... but for a few one-line replies ("Sure!")
    sizes = sorted(len(text.encode()) for text in assistant)
    assert sizes[0] < 100 and sizes[-1] > 20_000 and 500 < sizes[len(sizes) // 2] < 2000
    assert any("```" in text for text in assistant) and any("\n- " in text for text in assistant)
    languages = Counter(r["persona_features"].get("language", "en") for r in records)
    assert set(languages) == {"en", "de", "es", "ru", "zh", "ja"} and languages["en"] / len(records) > 0.8
    layouts = Counter(
        ("noisy_versions" in r["metadata"], "semantic_noise" in r["metadata"])
        for r in records
        if r["metadata"]["distractor_applied"]
    )
    assert set(layouts) == {(True, False), (False, True)} and 0.2 < sum(layouts.values()) / len(records) < 0.4
    assert Counter(r["num_turns"] for r in records).keys() == {1, 2, 3, 4, 5}


def test_every_record_becomes_a_sample_in_both_layouts(tmp_path):
    files = write_realistic_store(tmp_path / "files", 30, personas=6, queries=4, seed=1)
    lines = write_realistic_store(tmp_path / "lines", 30, personas=6, queries=4, seed=1, layout="jsonl")
    assert [p.name for p in discover_files(lines)] == ["interactions.jsonl"]
    read = {
        name: [interaction_to_sample(record.data).to_dict() for record in iter_records(folder)]
        for name, folder in (("files", files), ("lines", lines))
    }
    assert len(read["files"]) == 30
    assert sorted(read["files"], key=lambda s: s["sample_id"]) == read["lines"]  # files are read in name order
    noisy = [s for s in read["lines"] if s["noisy_initial_queries"]]
    assert noisy and all(s["full_conversation"][0]["content"] != s["initial_query"] for s in noisy)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"count": 0}, "iter_realistic_interactions: expected count >= 1, got 0"),
        ({"queries_per_persona": 0}, "iter_realistic_interactions: expected queries_per_persona >= 1, got 0"),
    ],
    ids=["count", "queries_per_persona"],
)
def test_arguments_are_checked(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        next(iter_realistic_interactions(**{"count": 5, "personas": 2, "queries": 3, **arguments}))


def test_an_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^write_realistic_store: expected layout 'files' or 'jsonl', got 'csv'$"):
        write_realistic_store(tmp_path, 1, 1, 1, layout="csv")
