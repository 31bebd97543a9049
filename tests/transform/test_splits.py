"""Splits on a store shaped like PersonaGym's (`shaped.py`: a pool of base queries serves many personas): what each
`split_by` mode keeps apart, computed from the rows written; the ratios under `split_assignment: balanced`; appends;
the same bytes for any `--num-proc`; the summary's advice; every mode through the builder, validate/stats, the card
and `load_dataset`."""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from shaped import write_shaped_store

from personagym_hf.cli.main import main
from personagym_hf.config import FILE_PREFIX
from personagym_hf.measure.leakage import normalise
from personagym_hf.transform.assign import GRID_CELLS, digest, grid_shares

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
TEST_SPLITS = ("test", "test_unseen_persona", "test_unseen_query")


def config(tmp_path: Path, split_by: str, **training) -> Path:
    path = tmp_path / f"{split_by}.yaml"
    path.write_text(yaml.safe_dump({"training_data": {"split_by": split_by, **training}}), encoding="utf-8")
    return path


def export(capsys, store: Path, out: Path, cfg: Path, *options: str) -> list[str]:
    argv = ["export", "--interactions", str(store), "--output", str(out), "-q", "--config", str(cfg), *options]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def rows_by_split(out: Path) -> dict[str, list[dict]]:
    """The rows written, per split, from the export's own JSONL files."""
    found = {}
    for split, prefix in FILE_PREFIX.items():
        path = out / f"{prefix}_samples.jsonl"
        if path.exists():
            found[split] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return found


def personas(rows: list[dict]) -> set[str]:
    return {row["persona_id"] for row in rows}


def queries(rows: list[dict]) -> set[str]:
    """Each row's target query, as the audit normalises it; rows of one query_id count as one query."""
    return {row["metadata"].get("query_id") or normalise(row["original_query"]) for row in rows}


def statistics(out: Path) -> dict:
    return json.loads((out / "statistics.json").read_text(encoding="utf-8"))


def disjoint(by_split: dict[str, list[dict]], key, pairs) -> list[str]:
    """The pairs of splits that share a value of `key`, with one shared value each."""
    shared = []
    for a, b in pairs:
        common = key(by_split.get(a, [])) & key(by_split.get(b, []))
        if common:
            shared.append(f"{a}/{b}: {sorted(common)[0]}")
    return shared


def all_pairs(by_split):
    return list(combinations(sorted(by_split), 2))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """40 personas x 2 samples over 8 base queries: 10 samples a query (as the demo store, but distinct)."""
    return write_shaped_store(tmp_path_factory.mktemp("shaped") / "store", personas=40, queries=8, per_persona=2)


def test_persona_keeps_personas_apart_and_hits_the_ratios_exactly(store, tmp_path, capsys):
    out = tmp_path / "out"
    lines = export(capsys, store, out, config(tmp_path, "persona"))
    by_split = rows_by_split(out)
    assert {name: len(rows) for name, rows in by_split.items()} == {"train": 64, "validation": 8, "test": 8}
    assert disjoint(by_split, personas, all_pairs(by_split)) == []
    assert lines[0] == "Exported 80 samples from 80 files (train 64, validation 8, test 8)"
    section = statistics(out)["split_assignment"]
    assert (section["split_by"], section["assignment"], section["groups"]) == (
        "persona",
        "balanced",
        {"personas": 40, "queries": 8},
    )
    assert section["queries_in_several_splits"] == 8  # the target of every test sample is in train too
    # The advice names the mode that holds the target out, and what it costs, with the figures of that mode.
    query, grid = section["alternatives"]["query"], section["alternatives"]["grid"]
    assert (
        "  splits: split_by persona keeps personas apart, not queries: 8 of 8 original_queries are in more than one "
        f"split; split_by: query would keep each in one split ({query['personas_in_several_splits']} of 40 personas "
        f"would then be in more than one), split_by: grid both ({grid['held_out']} of 80 samples in no split)"
    ) in lines


def test_query_keeps_target_queries_apart(store, tmp_path, capsys):
    """Eight queries of 10 samples for targets of 64, 8 and 8: validation and test get one query each."""
    out = tmp_path / "out"
    lines = export(capsys, store, out, config(tmp_path, "query"))
    by_split = rows_by_split(out)
    assert {name: len(rows) for name, rows in by_split.items()} == {"train": 60, "validation": 10, "test": 10}
    assert disjoint(by_split, queries, all_pairs(by_split)) == []
    crossing = sum(1 for persona in personas(sum(by_split.values(), [])) if sum(
        persona in personas(rows) for rows in by_split.values()) > 1)  # fmt: skip
    assert statistics(out)["split_assignment"]["personas_in_several_splits"] == crossing > 0
    assert f"  splits: split_by query: each of 8 original_queries in one split; {crossing} of 40 personas are in " \
           "more than one" in lines  # fmt: skip


def test_a_query_id_joins_its_texts_in_one_group(tmp_path, capsys):
    """Two wordings of one query under one query_id never land in two splits."""
    store = write_shaped_store(tmp_path / "store", personas=30, queries=6, per_persona=2, with_ids=1)
    for path in sorted(store.glob("*.json"))[::2]:  # half the samples of each query worded otherwise
        record = json.loads(path.read_text(encoding="utf-8"))
        record["original_query"] = record["original_query"].replace("Explain", "Describe")
        path.write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "out"
    export(capsys, store, out, config(tmp_path, "query"))
    by_split = rows_by_split(out)
    ids = {name: {row["metadata"]["query_id"] for row in rows} for name, rows in by_split.items()}
    assert all(not (ids[a] & ids[b]) for a, b in all_pairs(ids))
    assert statistics(out)["split_assignment"]["groups"]["queries"] == 6


def axis_splits(out: Path) -> dict[str, dict[int, str]]:
    """The grid's assignment of each persona and query key, as the manifest records it."""
    manifest = json.loads((out / ".personagym-export.json").read_text(encoding="utf-8"))
    keys = manifest["assignment"]["keys"]
    return {axis: {int(k, 16): split for split, ks in keys[axis].items() for k in ks} for axis in ("persona", "query")}


def test_grid_holds_personas_and_queries_out_apart(store, tmp_path, capsys):
    out = tmp_path / "out"
    lines = export(capsys, store, out, config(tmp_path, "grid"))
    by_split = rows_by_split(out)
    stats = statistics(out)
    # Every split is written, and the held out samples are counted: together they are the store.
    assert list(stats["samples_by_split"]) == ["train", "validation", "test", *TEST_SPLITS[1:]]
    assert sum(stats["samples_by_split"].values()) + stats["held_out"] == stats["total_samples"] == 80
    assert {name: len(rows) for name, rows in by_split.items()} == stats["samples_by_split"]
    # What grid claims, from the rows alone: no persona or query held out for test in train or validation ...
    tested_personas = personas(by_split["test"] + by_split["test_unseen_persona"])
    tested_queries = queries(by_split["test"] + by_split["test_unseen_query"])
    seen = by_split["train"] + by_split["validation"]
    assert not tested_personas & personas(seen + by_split["test_unseen_query"])
    assert not tested_queries & queries(seen + by_split["test_unseen_persona"])
    # ... and the test splits each measure one thing: unseen personas on seen queries, and the reverse.
    assert queries(by_split["test_unseen_persona"]) <= queries(by_split["train"])
    assert personas(by_split["test_unseen_query"]) <= personas(by_split["train"])
    assert not personas(by_split["test_unseen_persona"]) & personas(by_split["train"])
    assert not queries(by_split["test_unseen_query"]) & queries(by_split["train"])
    # Each row sits in the cell its persona's and its query's splits give (the manifest's tables).
    axes = axis_splits(out)
    for name, rows in by_split.items():
        for row in rows:
            persona = axes["persona"][digest("persona", row["persona_id"])]
            query_key = digest("original_query", normalise(row["original_query"]))
            assert GRID_CELLS[persona, axes["query"][query_key]] == name, row["sample_id"]
    assert by_split["validation"] and by_split["test_unseen_persona"] and by_split["test_unseen_query"]
    assert any(line.startswith("  splits: split_by grid: no test persona or query in train") for line in lines)


def test_the_grid_cells_are_in_the_statistics_and_the_card(store, tmp_path, capsys):
    out = tmp_path / "out"
    export(capsys, store, out, config(tmp_path, "grid"))
    section = statistics(out)["split_assignment"]
    cells = section["cells"]
    assert [cell["split"] for cell in cells.values()] == [name or "held_out" for name in GRID_CELLS.values()]
    assert sum(cell["samples"] for cell in cells.values()) == 80
    assert section["shares"] == {name: round(share, 4) for name, share in grid_shares(RATIOS).items()}
    card = (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert "| persona \\ query | train | validation | test |" in card
    train_row = f"| train | {cells['train/train']['samples']} train | {cells['train/validation']['samples']} " \
                f"validation | {cells['train/test']['samples']} test_unseen_query |"  # fmt: skip
    assert train_row in card


def test_grid_shares_follow_from_the_ratios():
    shares = grid_shares(RATIOS)
    assert shares["train"] ** 2 == pytest.approx(0.8)  # both in train: the train ratio
    assert shares["validation"] == shares["test"] == pytest.approx((1 - 0.8**0.5) / 2)
    everything = {"train": 1.0, "validation": 0.0, "test": 0.0}
    assert grid_shares(everything) == everything


@pytest.mark.parametrize("split_by", ["persona", "query"])
def test_the_ratios_hold_within_a_point_with_a_thousand_groups(split_by, tmp_path_factory, capsys):
    store = tmp_path_factory.getbasetemp() / "thousand"
    if not store.exists():
        write_shaped_store(store, personas=1000, queries=1000, per_persona=3, with_ids=0)
    out = tmp_path_factory.mktemp("out") / split_by
    export(capsys, store, out, config(out.parent, split_by))
    counts = statistics(out)["samples_by_split"]
    total = sum(counts.values())
    assert total == 3000
    assert all(abs(counts[name] / total - ratio) <= 0.01 for name, ratio in RATIOS.items()), counts


def test_hashed_assignment_gives_each_persona_the_split_of_its_hash(store, tmp_path, capsys):
    from personagym_hf.transform.split import assign_split

    out = tmp_path / "out"
    lines = export(capsys, store, out, config(tmp_path, "persona", split_assignment="hashed"))
    for name, rows in rows_by_split(out).items():
        assert {assign_split(row["persona_id"], 42, RATIOS) for row in rows} <= {name}
    assert "split_assignment" not in statistics(out)  # no pre-pass: the split is a function of the persona alone
    skewed = [line for line in lines if line.startswith("  warning:")]
    assert all("split_assignment: balanced (the default) keeps every split within" in line for line in skewed)


@pytest.mark.parametrize("split_by", ["persona", "query", "grid", "persona_and_query"])
def test_an_append_keeps_every_row_where_it_was_and_stays_disjoint(split_by, tmp_path, capsys):
    store = write_shaped_store(tmp_path / "store", personas=40, queries=8, per_persona=2)
    cfg = config(tmp_path, split_by)
    out = tmp_path / "out"
    export(capsys, store, out, cfg)
    before = rows_by_split(out)
    snapshot = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    export(capsys, store, out, cfg, "--append")  # nothing new: the same bytes
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    # 20 new personas, asking old queries and 4 new ones
    write_shaped_store(store, personas=20, queries=12, per_persona=2, start=40)
    lines = export(capsys, store, out, cfg, "--append")
    after = rows_by_split(out)
    for name, rows in before.items():
        assert [row["sample_id"] for row in after[name][: len(rows)]] == [row["sample_id"] for row in rows]
    assert sum(len(rows) for rows in after.values()) + statistics(out)["held_out"] == 120
    if split_by in ("persona", "persona_and_query"):
        assert disjoint(after, personas, all_pairs(after)) == []
    if split_by in ("query", "persona_and_query"):
        assert disjoint(after, queries, all_pairs(after)) == []
    if split_by == "grid":
        tested = personas(after["test"] + after["test_unseen_persona"])
        assert not tested & personas(after["train"] + after["validation"] + after["test_unseen_query"])
    moved = statistics(out)["split_assignment"].get("rebuild_would_move")
    said = [line for line in lines if line.startswith("  splits: an export without --append would put")]
    assert said == ([] if moved is None else [
        f"  splits: an export without --append would put {moved['samples']} samples ({moved['groups']} groups) in "
        "other splits than this append keeps them in"
    ])  # fmt: skip


def sums(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("split_by", ["persona", "query", "grid", "persona_and_query"])
def test_num_proc_gives_the_same_bytes(split_by, store, tmp_path, capsys):
    import os

    from exporting import ConvertRecordingProcesses, export_store

    from personagym_hf.config import RunOptions, parse_config

    cfg = parse_config({"training_data": {"split_by": split_by}})
    alone = ConvertRecordingProcesses(tmp_path / "pids1")
    export_store(store, tmp_path / "one", cfg, alone, options=RunOptions(chunk_files=7))
    options = RunOptions(chunk_files=7, num_proc=2)
    convert = ConvertRecordingProcesses(tmp_path / "pids2")
    two = export_store(store, tmp_path / "two", cfg, convert, options=options)
    assert sums(tmp_path / "one") == sums(tmp_path / "two")
    assert two.files_read == 80
    assert convert.processes() and os.getpid() not in convert.processes()  # the pre-pass and the export: workers


@pytest.mark.ray
@pytest.mark.parametrize("split_by", ["query", "grid"])
def test_ray_gives_the_same_bytes(split_by, store, tmp_path, ray_local):
    from exporting import export_store

    from personagym_hf.config import RunOptions, parse_config
    from personagym_hf.transform.collect import interaction_to_sample

    cfg = parse_config({"training_data": {"split_by": split_by}})
    export_store(store, tmp_path / "local", cfg, interaction_to_sample, options=RunOptions(chunk_files=7))
    options = RunOptions(chunk_files=7, engine="ray")
    export_store(store, tmp_path / "ray", cfg, interaction_to_sample, options=options)
    assert sums(tmp_path / "local") == sums(tmp_path / "ray")


def test_validate_stats_and_the_audit_of_a_store_split_as_the_export(store, tmp_path, capsys):
    cfg = config(tmp_path, "grid")
    out = tmp_path / "out"
    export(capsys, store, out, cfg)
    assert main(["stats", "--interactions", str(store), "--config", str(cfg), "-q"]) == 0
    scanned = json.loads(capsys.readouterr().out)
    assert scanned["samples_by_split"] == statistics(out)["samples_by_split"]
    assert scanned["held_out"] == statistics(out)["held_out"]
    assert main(["audit", "--interactions", str(store), "--config", str(cfg), "--json", "-q"]) == 0
    from_store = json.loads(capsys.readouterr().out)
    assert main(["audit", "--data", str(out / "hf_dataset"), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out) == from_store


def test_the_builder_and_load_dataset_give_every_grid_split(store, tmp_path, capsys):
    import datasets

    from personagym_hf import load_dataset

    out = tmp_path / "out"
    export(capsys, store, out, config(tmp_path, "grid"))
    built = load_dataset(store, "full", cache_dir=str(tmp_path / "cache"), split_by="grid")
    loaded = datasets.load_dataset(str(out / "hf_dataset"), "full", cache_dir=str(tmp_path / "cache2"))
    written = {name: [row["sample_id"] for row in rows] for name, rows in rows_by_split(out).items() if rows}
    assert {name: built[name]["sample_id"] for name in built if built[name].num_rows} == written
    assert {name: loaded[name]["sample_id"] for name in loaded} == written


def test_the_demo_store_gets_leakage_free_evaluation_splits(tmp_path, capsys):

    for split_by in ("query", "grid"):
        out = tmp_path / split_by
        argv = ["export", "--demo", "--output", str(out), "-q", "--split-by", split_by]  # the option, not a config
        assert main(argv) == 0
        assert capsys.readouterr().out.startswith("Exported 80 samples")
        assert json.loads((out / ".personagym-export.json").read_text())["settings"]["split_by"] == split_by
        by_split = rows_by_split(out)
        evaluation = ("validation", *(TEST_SPLITS if split_by == "grid" else ("test",)))
        assert [name for name in evaluation if not by_split.get(name)] == [], split_by  # each one non-empty
        if split_by == "query":
            assert disjoint(by_split, queries, all_pairs(by_split)) == []
        else:
            tested = queries(by_split["test"] + by_split["test_unseen_query"])
            assert not tested & queries(by_split["train"] + by_split["validation"])


def test_what_each_mode_lets_cross_by_design():
    from personagym_hf.transform.assign import lets_cross

    persona, query, grid = lets_cross("persona"), lets_cross("query"), lets_cross("grid")
    assert not persona("train", "test", "personas") and persona("train", "test", "original_query")
    assert persona("train", "test", "conversation")  # a conversation starts from its base query
    assert query("train", "test", "personas") and not query("train", "test", "initial_query")
    assert not lets_cross("persona_and_query")("train", "test", "personas")
    assert lets_cross("sample")("validation", "test", "conversation")
    # grid, from its cells: validation holds train personas and queries; each test split one axis of train
    assert grid("train", "validation", "personas") and grid("train", "validation", "original_query")
    assert grid("train", "test_unseen_persona", "original_query")
    assert not grid("train", "test_unseen_persona", "personas")
    assert grid("train", "test_unseen_query", "personas")
    assert not grid("train", "test_unseen_query", "conversation")
    assert not grid("train", "test", "personas") and not grid("train", "test", "original_query")
    assert not grid("validation", "test", "personas") and not grid("validation", "test", "original_query")
    assert grid("test", "test_unseen_persona", "personas") and not grid("test", "test_unseen_persona", "initial_query")


def test_the_leakage_line_puts_what_the_mode_lets_cross_last_and_says_so():
    from personagym_hf.measure.leakage import summary_line
    from personagym_hf.transform.assign import lets_cross

    def pair(personas: int, original: float, smaller: str = "test") -> dict:
        fields = {name: {"near_share": 0.0, "exact_share": 0.0} for name in ("initial_query", "conversation")}
        original_query = {"near_share": original, "exact_share": original}
        return {"smaller": smaller, "personas": {"share": personas / 10, "shared": personas}, **fields,
                "original_query": original_query}  # fmt: skip

    leakage = {"pairs": {"train-validation": pair(3, 0.5, "validation"), "train-test": pair(2, 0.0)}}
    found = "train <-> test: 2 personas shared"
    designed = "train <-> validation: 3 personas shared; train <-> validation: 50.0% of validation original_queries"
    assert summary_line(leakage, audit="A") == (
        f"leakage: {designed} have an exact or near duplicate in train (+1 more; run `A`)"
    )
    line = summary_line(leakage, audit="A", split_by="persona", lets_cross=lets_cross("persona"))
    assert line == (  # personas leak under persona: first; the base query it lets cross: counted after
        f"leakage: train <-> validation: 3 personas shared; {found} (+1 more, 1 of them what split_by persona lets "
        "cross; run `A`)"
    )
    line = summary_line(leakage, audit="A", split_by="query", lets_cross=lets_cross("query"))
    assert line == (
        "leakage: train <-> validation: 50.0% of validation original_queries have an exact or near duplicate in "
        "train (+2 more, 2 of them what split_by query lets cross; run `A`)"
    )
    only = {"pairs": {"train-validation": pair(3, 0.0, "validation")}}
    assert summary_line(only, split_by="query", lets_cross=lets_cross("query")) == (
        "leakage, only what split_by query lets cross: train <-> validation: 3 personas shared"
    )
