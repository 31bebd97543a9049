"""The append contract: an append keeps the earlier export's layout, refuses different settings in one
line, and an append that adds nothing writes the same bytes."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store, snapshot

from personagym_hf import TrainingDataCollector, TrainingDataExporter
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, load_config, parse_config
from personagym_hf.testing.synth import write_store

CONVERT = TrainingDataCollector().interaction_to_training_sample


def export(store: Path, out: Path, *options: str) -> int:
    return main(["export", "--interactions", str(store), "--output", str(out), "-q", *options])


def ids_by_file(out: Path) -> dict[str, list[str]]:
    return {
        p.name: [json.loads(line)["sample_id"] for line in p.read_text(encoding="utf-8").splitlines()]
        for p in sorted(out.glob("*_samples.jsonl"))
    }


def config_file(tmp_path: Path, **training) -> Path:
    seed = training.pop("seed", 42)
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump({"training_data": training, "experiment": {"seed": seed}}), encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "store", count=120, personas=30, seed=7, reply_chars=120)


@pytest.mark.parametrize("num_proc", [1, 2])
@pytest.mark.parametrize(
    "training",
    [
        {},
        {"format": {"include_persona": False, "include_trajectory": True, "include_distractor_versions": False}},
        {"split_by": "persona_and_query"},
    ],
    ids=["full", "minimal", "persona_and_query"],
)
def test_an_append_that_adds_nothing_writes_the_same_bytes(store, tmp_path, training, num_proc):
    # Several chunks, so the rows of a fresh export come in parts. As `personagym-hf export` calls it.
    options = RunOptions(num_proc=num_proc, chunk_files=25)
    cfg = parse_config(load_config(config_file(tmp_path, **training)))
    out = tmp_path / "out"
    export_store(store, out, cfg, CONVERT, split=None, hf_dataset=None, options=options)
    before = snapshot(out)
    export_store(store, out, cfg, CONVERT, split=None, append=True, hf_dataset=None, options=options)
    assert snapshot(out) == before


def test_an_append_rewrites_only_the_splits_it_adds_to(store, tmp_path):
    out = tmp_path / "out"
    assert export(store, out) == 0
    before = snapshot(out)
    train_persona = json.loads((out / "train_samples.jsonl").read_text(encoding="utf-8").splitlines()[0])["persona_id"]
    write_files(store, [make_interaction(500 + i, persona=train_persona) for i in range(3)])
    assert export(store, out, "--append") == 0
    after = snapshot(out)
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == [
        ".personagym-export.json",
        "hf_dataset/README.md",
        "hf_dataset/data/full/train-00000-of-00001.parquet",
        "hf_dataset/data/last_turn/train-00000-of-00001.parquet",
        "hf_dataset/data/messages/train-00000-of-00001.parquet",
        "hf_dataset/data/minimal/train-00000-of-00001.parquet",
        "hf_dataset/data/query_rewrite/train-00000-of-00001.parquet",
        "hf_dataset/data/rewrite/train-00000-of-00001.parquet",
        "hf_dataset/provenance.json",
        "hf_dataset/statistics.json",
        "statistics.json",
        "train_samples.json",
        "train_samples.jsonl",
    ]
    assert ids_by_file(out)["train_samples.jsonl"][-3:] == [f"sample_{train_persona}_{500 + i:04d}" for i in range(3)]


def test_the_seed_incremental_export_keeps_a_split_export_split(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("output/training_data")
    assert export(store, out) == 0
    before = ids_by_file(out)
    write_files(tmp_path / "more", [make_interaction(900 + i, persona=f"persona_new_{i}") for i in range(10)])
    config = {"paths": {"training_data": {"output_dir": str(out)}}}
    collector = TrainingDataCollector(config)
    new = collector.collect_from_interactions(
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp_path / "more").glob("*.json"))
    )
    TrainingDataExporter(config).export_samples(new, append=True)  # the seed's snippet: split defaults to False
    after = ids_by_file(out)
    assert sorted(after) == ["test_samples.jsonl", "train_samples.jsonl", "val_samples.jsonl"]
    every = [sample_id for ids in after.values() for sample_id in ids]
    assert len(every) == len(set(every)) == sum(map(len, before.values())) + 10  # each sample in exactly one file
    for name, ids in before.items():
        assert after[name][: len(ids)] == ids
    loaded = json.loads((out / "hf_dataset" / "statistics.json").read_text(encoding="utf-8"))
    assert loaded["total_samples"] == len(every)


def test_an_append_asking_for_another_layout_is_refused(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert export(store, out) == 0
    before = snapshot(out)
    assert export(store, out, "--append", "--no-split") == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {out}: cannot append: the export there is split into train/validation/test "
        "and this run asks for one train file; append with the same layout (without --no-split), or rebuild with "
        "--no-append\n"
    )
    assert snapshot(out) == before


def test_an_append_with_other_format_flags_is_refused(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert export(store, out) == 0
    before = snapshot(out)
    minimal = config_file(tmp_path, format={"include_persona": False, "include_metadata": True})
    assert export(store, out, "--append", "--config", str(minimal)) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {out}: cannot append: format flags differ from the export there "
        "(include_persona: true there, false now; include_trajectory: true there, false now; "
        "include_distractor_versions: true there, false now; include_full_conversation: true there, false now); "
        "restore them in training_data.format, or rebuild with --no-append\n"
    )
    assert snapshot(out) == before
    assert export(store, out, "--no-append", "--config", str(minimal)) == 0  # the rebuild the message names


@pytest.mark.parametrize(
    "training, differs",
    [
        ({"seed": 7}, "experiment.seed: 42 there, 7 now"),
        ({"split_by": "sample"}, "training_data.split_by: persona there, sample now"),
        (
            {"split": {"train": 0.7, "validation": 0.15, "test": 0.15}},
            "training_data.split: 0.8/0.1/0.1 there, 0.7/0.15/0.15 now",
        ),
    ],
    ids=["seed", "split_by", "ratios"],
)
def test_an_append_with_other_split_settings_is_refused(store, tmp_path, capsys, training, differs):
    out = tmp_path / "out"
    assert export(store, out) == 0
    before = snapshot(out)
    assert export(store, out, "--append", "--config", str(config_file(tmp_path, **training))) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {out}: cannot append: split settings differ from the export there "
        f"({differs}), so samples would change split; restore them, or rebuild with --no-append\n"
    )
    assert snapshot(out) == before


def test_an_append_without_hf_dataset_onto_one_with_it_is_refused(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert export(store, out) == 0
    assert export(store, out, "--append", "--no-hf-dataset") == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {out}: cannot append: the export there has hf_dataset/ and this run asks "
        "for the other; append without --no-hf-dataset, or rebuild with --no-append\n"
    )


def test_an_append_onto_a_no_split_export_keeps_it_unsplit(store, tmp_path):
    out = tmp_path / "out"
    assert export(store, out, "--no-split") == 0
    write_files(store, [make_interaction(700, persona="persona_x")])
    assert export(store, out, "--append") == 0  # no flag: the layout of the export there
    assert sorted(ids_by_file(out)) == ["train_samples.jsonl"]
    assert ids_by_file(out)["train_samples.jsonl"][-1] == "sample_persona_x_0700"


def test_an_append_onto_an_earlier_versions_export_with_other_sample_ids_is_refused(tmp_path, capsys):
    store = tmp_path / "s.jsonl"
    lines = [make_interaction(1), make_interaction(2, interaction_id="interaction_a/b")]
    store.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    assert export(store, out, "--no-split", "--no-hf-dataset") == 0
    (out / ".personagym-export.json").unlink()  # as an export made before the manifest existed
    new_id = json.loads((out / "train_samples.jsonl").read_text(encoding="utf-8").splitlines()[1])["sample_id"]
    for name in ("train_samples.json", "train_samples.jsonl"):  # the id the earlier version gave it
        text = (out / name).read_text(encoding="utf-8")
        (out / name).write_text(text.replace(new_id, "sample_a_b_992d9b99"), encoding="utf-8")
    assert export(store, out, "--append") == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {out}: cannot append: the export there names interaction 'interaction_a/b' "
        f"'sample_a_b_992d9b99', this version {new_id!r}; rebuild with --no-append\n"
    )


def test_an_append_with_worker_processes_and_the_near_audit_finishes(tmp_path):
    """The append audits the earlier export's rows, in the parent, while workers forked from it encode the new
    ones. Each run is a process of its own, bounded in time: a hang fails the test instead of the suite."""
    import os
    import signal
    import subprocess
    import sys

    store = write_store(tmp_path / "s", count=3000, personas=300, seed=8, reply_chars=40)
    half = tmp_path / "half"
    half.mkdir()
    for path in sorted(store.glob("*.json"))[:2000]:
        (half / path.name).symlink_to(path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "personagym_hf", "export", "--output", str(out), "-q"]
    runs = [["--interactions", str(half)], ["--interactions", str(store), "--append", "--num-proc", "2"]]
    for run in runs:
        process = subprocess.Popen([*command, *run], stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the export and its workers
            process.communicate()
            pytest.fail(f"export {' '.join(run[2:])} still running after 120 s")
        assert process.returncode == 0, stderr
    statistics = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    assert statistics["total_samples"] == 3000
    assert "threshold" in statistics["leakage"]["method"]  # the near audit
