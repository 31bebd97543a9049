"""`split_by: persona_and_query`: samples sharing a persona, a normalised original_query or a query_id share a split;
an append never moves a row, keeps a group where its rows are, and reports a group its new samples join across
splits. `split_assignment: hashed` places each group where its hash says (as this mode did before groups were
balanced); `balanced` keeps every split within about one group of its ratio."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.transform.assign import KeyCounts, resolve
from personagym_hf.transform.split import NeedsGroupsError, split_of

RATIOS = {"train": 0.4, "validation": 0.3, "test": 0.3}
TRAINING = {"split_by": "persona_and_query", "split": RATIOS}
HASHED = {**TRAINING, "split_assignment": "hashed"}
# Groups: {p0, p1} (one query, case and punctuation aside), {p2}, {p3}, {p4, p5} (one query).
GROUPED = [
    ("p0", "Explain compound interest"),
    ("p1", "explain compound interest!"),
    ("p1", "Plan a trip to Kyoto"),
    ("p2", "Summarize the French Revolution"),
    ("p2", "Summarize the French Revolution"),
    ("p3", "Suggest a vegetarian dinner"),
    ("p4", "Write a haiku about rain"),
    ("p5", "Write a haiku about rain"),
]
SPLIT_FILES = ("train", "val", "test")
TOO_BIG = (
    "splits: split_by persona_and_query: one group holds 37.5% of the samples (its personas and queries are linked "
    "into one); split_by: grid keeps personas and queries apart (0 of 8 samples in no split)"
)


def grouped(number: int, persona: str, query: str, **overrides) -> dict:
    return make_interaction(number, persona=persona, original_query=query, **overrides)


@pytest.fixture
def store(tmp_path) -> Path:
    return write_files(tmp_path / "store", [grouped(i, p, q) for i, (p, q) in enumerate(GROUPED)])


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"training_data": TRAINING}), encoding="utf-8")
    return path


@pytest.fixture
def hashed(tmp_path) -> Path:
    path = tmp_path / "hashed.yaml"
    path.write_text(yaml.safe_dump({"training_data": HASHED}), encoding="utf-8")
    return path


def export(capsys, store: Path, out: Path, config: Path, *options: str) -> list[str]:
    argv = ["export", "--interactions", str(store), "--output", str(out), "-q", "--config", str(config), *options]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def personas_by_file(out: Path) -> dict[str, list[str]]:
    rows = {name: (out / f"{name}_samples.jsonl").read_text(encoding="utf-8").splitlines() for name in SPLIT_FILES}
    return {
        name: [f"{r['persona_id']}:{r['sample_id'][-1]}" for r in map(json.loads, lines)]
        for name, lines in rows.items()
    }


def statistics(out: Path) -> dict:
    return json.loads((out / "statistics.json").read_text(encoding="utf-8"))


def test_hashed_groups_go_where_their_smallest_key_hashes(store, hashed, tmp_path, capsys):
    """The placement this mode had before groups were balanced, byte for byte the same split for each group."""
    out = tmp_path / "out"
    lines = export(capsys, store, out, hashed)
    assert personas_by_file(out) == {
        "train": ["p0:0", "p1:1", "p1:2", "p3:5"],
        "val": [],
        "test": ["p2:3", "p2:4", "p4:6", "p5:7"],
    }
    section = statistics(out)["split_assignment"]
    assert (section["groups"], section["largest_group"]) == (
        {"personas": 6, "queries": 5, "persona_and_query": 4},
        {"samples": 3, "share": 0.375},
    )
    assert f"  {TOO_BIG}" in lines
    pair = statistics(out)["leakage"]["pairs"]["train-test"]
    assert pair["personas"]["shared"] == 0 and pair["original_query"]["near"] == 0


def test_balanced_groups_stay_whole_and_no_split_is_empty(store, config, tmp_path, capsys):
    """Four groups of 3, 2, 1 and 2 samples for targets of 3.2, 2.4 and 2.4: validation and test first get a group
    each (the smallest left: {p3}, then one of the two pairs), the rest goes to the split most samples short."""
    out = tmp_path / "out"
    export(capsys, store, out, config)
    by_file = personas_by_file(out)
    groups = [{"p0", "p1"}, {"p2"}, {"p3"}, {"p4", "p5"}]
    placed = {name: {row.split(":")[0] for row in rows} for name, rows in by_file.items()}
    for group in groups:
        assert sum(bool(group & personas) for personas in placed.values()) == 1, group  # a group is in one split
    sizes = {name: len(rows) for name, rows in by_file.items()}
    targets = {"train": 3.2, "val": 2.4, "test": 2.4}
    assert all(sizes[name] and abs(sizes[name] - target) <= 3 for name, target in targets.items()), sizes
    assert placed["val"] & {"p3"} == {"p3"}  # the smallest group went to the smallest split without one


def test_a_query_id_groups_too():
    records = [grouped(0, "p0", "One thing"), grouped(1, "p1", "Another thing")]
    for record in records:
        record["metadata"]["query_id"] = "query_7"
    counts = KeyCounts()
    for record in records:
        counts.add(TrainingDataCollector().interaction_to_training_sample(record).to_dict())
    section = resolve(counts, "persona_and_query", "balanced", RATIOS, 42).section
    assert section["groups"] == {"personas": 2, "queries": 1, "persona_and_query": 1}


def test_num_proc_gives_the_same_bytes(tmp_path):
    from personagym_hf.testing.synth import write_store

    store = write_store(tmp_path / "s", count=40, personas=20, seed=4, reply_chars=50)
    write_files(store, [grouped(i, p, q) for i, (p, q) in enumerate(GROUPED)])
    cfg = parse_config({"training_data": TRAINING})
    convert = TrainingDataCollector().interaction_to_training_sample
    one = export_store(store, tmp_path / "one", cfg, convert, options=RunOptions(chunk_files=7))
    export_store(store, tmp_path / "two", cfg, convert, options=RunOptions(chunk_files=7, num_proc=2))
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files and all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)
    assert one.result.statistics["total_samples"] == 48


def test_an_append_that_joins_two_splits_keeps_every_row_and_reports_it(store, hashed, tmp_path, capsys):
    out = tmp_path / "out"
    export(capsys, store, out, hashed)
    before = personas_by_file(out)
    # p3 (train) asks p4 and p5's query (test): the new sample joins two groups already in different splits
    write_files(store, [grouped(8, "p3", "write a HAIKU about rain")])
    lines = export(capsys, store, out, hashed, "--append")
    after = personas_by_file(out)
    assert after["train"] == before["train"] and after["val"] == [] and after["test"][:-1] == before["test"]
    assert after["test"][-1] == "p3:8"  # ties between the two splits' keys go to the first: both hold two
    section = statistics(out)["split_assignment"]
    assert section["across_splits"] == 1
    assert (
        "  splits: 1 groups have earlier rows in more than one split (a new sample joins groups already apart); an "
        "append never moves a row: re-export with --no-append to regroup"
    ) in lines
    assert statistics(out)["leakage"]["pairs"]["train-test"]["personas"] == {
        "shared": 1,
        "share": 0.3333,
        "examples": ["p3"],
    }


def test_an_append_keeps_a_group_a_rebuild_would_place_elsewhere(store, config, tmp_path, capsys):
    """New personas make new groups; the earlier groups stay where they are, and the summary says how many samples
    an export without --append would place in other splits."""
    out = tmp_path / "out"
    export(capsys, store, out, config)
    before = personas_by_file(out)
    write_files(store, [grouped(8 + i, f"q{i}", f"Brand new question {i}") for i in range(12)])
    lines = export(capsys, store, out, config, "--append")
    after = personas_by_file(out)
    for name, rows in before.items():
        assert after[name][: len(rows)] == rows  # every earlier row where it was, first
    moved = statistics(out)["split_assignment"]["rebuild_would_move"]
    export(capsys, store, tmp_path / "fresh", config)
    fresh = personas_by_file(tmp_path / "fresh")
    where = {row: name for name, rows in after.items() for row in rows}
    elsewhere = [row for name, rows in fresh.items() for row in rows if where[row] != name]
    assert moved["samples"] == len(elsewhere)
    if elsewhere:
        assert any(line.startswith("  splits: an export without --append would put") for line in lines)


def test_one_sample_at_a_time_cannot_group():
    with pytest.raises(NeedsGroupsError) as error:
        split_of({"sample_id": "a", "persona_id": "p"}, 42, RATIOS, "persona_and_query")
    assert str(error.value) == (
        "split_by persona_and_query groups the whole store before any split is given: export it with "
        "`personagym-hf export` or `export_store`, or use split_by persona or sample here"
    )


def test_the_builder_groups_as_the_export_does(store, config, tmp_path, capsys):
    from personagym_hf.builder import PersonaGymBuilder

    out = tmp_path / "out"
    export(capsys, store, out, config)
    builder = PersonaGymBuilder(
        config_name="full", data_dir=str(store), cache_dir=str(tmp_path / "cache"), split_by="persona_and_query",
        ratios=RATIOS,
    )  # fmt: skip
    builder.download_and_prepare()
    dataset = builder.as_dataset()
    for split, prefix in [("train", "train"), ("validation", "val"), ("test", "test")]:
        rows = (out / f"{prefix}_samples.jsonl").read_text(encoding="utf-8").splitlines()
        assert dataset[split]["sample_id"] == [json.loads(row)["sample_id"] for row in rows]


def test_unique_pairs_is_numpys_unique_of_the_rows():
    """`KeyCounts` and the section's spread counts take the distinct (persona, query) pairs by a lexsort, not by
    `np.unique(..., axis=0)` (a structured sort, half of `resolve` at 100k samples): the same pairs, order and
    inverse, for digests over 2**63 (where a signed order would differ) and for repeats."""
    from personagym_hf.transform.assign import _unique_pairs

    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 50, 400):
        a = rng.integers(0, 6, size).astype(np.uint64) * np.uint64(2**61 + 5)  # some over 2**63
        b = rng.integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True) % np.uint64(3) * np.uint64(2**63 + 1)
        pairs, inverse = _unique_pairs(a, b)
        if size:
            expected, expected_inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
            assert np.array_equal(pairs, expected) and np.array_equal(inverse, expected_inverse.reshape(-1))
        assert np.array_equal(pairs[inverse], np.stack([a, b], axis=1))  # each row's pair is its own
        assert pairs.dtype == np.uint64 and len(pairs) == len({(int(x), int(y)) for x, y in zip(a, b)})


def test_group_key_digests_are_remembered_for_short_texts_only():
    """Personas and queries repeat sample after sample, so `sample_keys` remembers their digests; a long text is not
    remembered (the cache would keep it alive). The keys are the same either way."""
    from personagym_hf.transform import assign

    assign._digest_cached.cache_clear()
    short = {"sample_id": "s1", "persona_id": "p" * 512, "original_query": "q" * 512}
    long = {"sample_id": "s2", "persona_id": "p" * 513, "original_query": "q" * 513}
    assert assign.sample_keys(short) == (
        assign.digest("persona", "p" * 512), [assign.digest("original_query", "q" * 512)], False
    )
    assert assign._digest_cached.cache_info().currsize == 2
    assert assign.sample_keys(long) == (
        assign.digest("persona", "p" * 513), [assign.digest("original_query", "q" * 513)], False
    )
    assert assign._digest_cached.cache_info().currsize == 2  # nothing of the long texts kept
    assign.sample_keys(short)
    assert assign._digest_cached.cache_info().hits == 2
