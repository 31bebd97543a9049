"""`split_by: persona_and_query`: samples sharing a persona, a normalised original_query or a query_id share a split;
an append never moves a row, keeps a group where its rows are, and reports a group its new samples join across
splits."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.transform.groups import SplitGroups
from personagym_hf.transform.split import NeedsGroupsError, split_of

RATIOS = {"train": 0.4, "validation": 0.3, "test": 0.3}
TRAINING = {"split_by": "persona_and_query", "split": RATIOS}
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
    "split groups: the largest group holds 37.5% of the samples (3 of 8), more than the smallest split ratio "
    "(validation 0.3): the splits cannot follow the ratios"
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


def test_groups_share_a_split(store, config, tmp_path, capsys):
    out = tmp_path / "out"
    lines = export(capsys, store, out, config)
    assert personas_by_file(out) == {
        "train": ["p0:0", "p1:1", "p1:2", "p3:5"],
        "val": [],
        "test": ["p2:3", "p2:4", "p4:6", "p5:7"],
    }
    stats = statistics(out)
    assert stats["split_groups"] == {
        "groups": 4,
        "samples": 8,
        "largest_group": {"samples": 3, "share": 0.375},
        "kept_by_append": 0,
        "across_splits": 0,
        "warnings": [TOO_BIG],
    }
    assert f"  {TOO_BIG}" in lines
    pair = stats["leakage"]["pairs"]["train-test"]
    assert pair["personas"]["shared"] == 0 and pair["original_query"]["near"] == 0


def test_a_query_id_groups_too(tmp_path):
    records = [grouped(0, "p0", "One thing"), grouped(1, "p1", "Another thing")]
    for record in records:
        record["metadata"]["query_id"] = "query_7"
    groups = SplitGroups(42, RATIOS)
    for record in records:
        groups.add(TrainingDataCollector().interaction_to_training_sample(record).to_dict())
    assert groups.to_dict()["groups"] == 1


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
    assert one.result.statistics["split_groups"]["samples"] == 48


def test_an_append_that_joins_two_splits_keeps_every_row_and_reports_it(store, config, tmp_path, capsys):
    out = tmp_path / "out"
    export(capsys, store, out, config)
    before = personas_by_file(out)
    # p3 (train) asks p4 and p5's query (test): the new sample joins two groups already in different splits
    write_files(store, [grouped(8, "p3", "write a HAIKU about rain")])
    lines = export(capsys, store, out, config, "--append")
    after = personas_by_file(out)
    assert after == {"train": before["train"], "val": [], "test": [*before["test"], "p3:8"]}  # with most of its group
    stats = statistics(out)
    assert stats["split_groups"] == {
        "groups": 3,
        "samples": 9,
        "largest_group": {"samples": 4, "share": 0.4444},
        "kept_by_append": 0,
        "across_splits": 1,
        "warnings": [
            "split groups: the largest group holds 44.4% of the samples (4 of 9), more than the smallest split ratio "
            "(validation 0.3): the splits cannot follow the ratios",
            "split groups: 1 groups have earlier rows in more than one split (a new sample shares a persona or query "
            "with both); an append never moves a row: re-export with --no-append to regroup",
        ],
    }
    assert f"  {stats['split_groups']['warnings'][1]}" in lines
    assert stats["leakage"]["pairs"]["train-test"]["personas"] == {"shared": 1, "share": 0.3333, "examples": ["p3"]}


def test_an_append_keeps_a_group_that_now_hashes_elsewhere(store, config, tmp_path, capsys):
    out = tmp_path / "out"
    export(capsys, store, out, config)
    earlier = {"sample_id": "a", "persona_id": "p3", "original_query": "Suggest a vegetarian dinner"}
    for number in range(100):  # a new query of p3 that takes p3's group elsewhere in a fresh export
        query = f"Another question {number}"
        groups = SplitGroups(42, RATIOS)
        groups.add(earlier)
        groups.add({"sample_id": "b", "persona_id": "p3", "original_query": query})
        groups.resolve()
        if groups.split_of("a") != "train":
            break
    write_files(store, [grouped(8, "p3", query)])
    export(capsys, store, out, config, "--append")
    assert personas_by_file(out)["train"] == ["p0:0", "p1:1", "p1:2", "p3:5", "p3:8"]
    assert statistics(out)["split_groups"]["kept_by_append"] == 1
    export(capsys, store, tmp_path / "fresh", config)  # without --append, the group goes where it hashes
    assert "p3:5" not in personas_by_file(tmp_path / "fresh")["train"]


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
