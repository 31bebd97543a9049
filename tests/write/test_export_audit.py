"""The leakage audit inside an export: statistics.json (`leakage`), the card's section, the summary line; the same
bytes for any num_proc, and an append recomputes it from the rows it carries over."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HASHED, LEAKY, leaky_interaction, write_files
from exporting import export_store, snapshot
from leaky import EXPECTED_PAIRS, leaky_samples, strip_estimates

from personagym_hf import TrainingDataCollector
from personagym_hf.card.sections import leakage_markdown
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.measure.leakage import LeakageAudit, method
from personagym_hf.write.files import dumps_pretty

CONVERT = TrainingDataCollector().interaction_to_training_sample
SUMMARY = (
    "  leakage, only what split_by persona lets cross: train <-> validation: 100.0% of validation original_queries "
    "have an exact or near duplicate in train; "
    "train <-> validation: 100.0% of validation initial_queries have an exact or near duplicate in train (+4 more; "
    "run `personagym-hf audit --data {out}`)"  # the export's folder: the hint runs as printed (cli/test_hints.py)
)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def export(capsys, store: Path, out: Path, *options: str) -> list[str]:
    """`export`, each persona in the split of its own hash: the placement the leaky store was designed for."""
    config = out.parent / "hashed.yaml"
    config.write_text(yaml.safe_dump(HASHED), encoding="utf-8")
    argv = ["export", "--interactions", str(store), "--output", str(out), "-q", "--config", str(config), *options]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_an_export_holds_the_leakage_of_its_rows(leaky_store, tmp_path, capsys):
    out = tmp_path / "out"
    lines = export(capsys, leaky_store, out)
    leakage = read_json(out / "statistics.json")["leakage"]
    assert leakage == LeakageAudit().add_all(leaky_samples()).to_dict()
    assert leakage["samples"] == {"train": 3, "validation": 1, "test": 3}
    assert strip_estimates(json.loads(json.dumps(leakage)))["pairs"] == EXPECTED_PAIRS
    assert read_json(out / "hf_dataset" / "statistics.json")["leakage"] == leakage
    card = (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert "\n\n" + leakage_markdown(leakage) + "\n\n## Provenance\n" in card
    assert lines[3] == SUMMARY.format(out=out)
    # what `personagym-hf audit --data` finds in the export, from its JSONL files or its Parquet shards
    for data in (out, out / "hf_dataset"):
        assert main(["audit", "--data", str(data), "--json"]) == 0
        assert capsys.readouterr().out == dumps_pretty(leakage).decode()


def test_no_audit_leaves_it_out(leaky_store, tmp_path, capsys):
    out = tmp_path / "out"
    lines = export(capsys, leaky_store, out, "--no-audit")
    assert "leakage" not in read_json(out / "statistics.json")
    assert "Leakage" not in (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert not [line for line in lines if "leakage" in line]


def test_nothing_leaks_no_summary_line(tmp_path, capsys):
    store = write_files(tmp_path / "s", [leaky_interaction(key) for key in ("t1", "v1")])
    lines = export(capsys, store, tmp_path / "out")
    pair = read_json(tmp_path / "out" / "statistics.json")["leakage"]["pairs"]["train-validation"]
    assert pair["original_query"]["near"] == pair["initial_query"]["near"] == pair["conversation"]["near"] == 0
    assert not [line for line in lines if "leakage" in line]


def test_near_duplicates_need_no_extra_and_exact_only_is_an_option(leaky_store, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rensa", None)  # what the [audit] extra used to bring is not needed
    out = tmp_path / "out"
    export(capsys, leaky_store, out)
    assert read_json(out / "statistics.json")["leakage"]["method"] == method(near=True)
    done = export_store(leaky_store, tmp_path / "exact", parse_config(HASHED), CONVERT, audit="exact")
    leakage = done.result.statistics["leakage"]
    assert leakage["method"] == method(near=False)
    assert leakage == LeakageAudit(near=False).add_all(leaky_samples()).to_dict()


def test_the_audit_spills_its_rows_into_the_staging_folder(leaky_store, tmp_path):
    """Rows past `spill_rows` go to a folder inside the export's staging folder, which the commit leaves behind."""
    from personagym_hf.measure.leakage import LeakageOptions
    from personagym_hf.request import ExportRequest, Measures
    from personagym_hf.run.runner import InProcess
    from personagym_hf.transform.encode import Encoder
    from personagym_hf.write.exporter import Exporter, open_destination

    request = ExportRequest(None, tmp_path / "out", parse_config(HASHED), measures=Measures(audit="near"))
    destination = open_destination(request, None)
    layout = destination.layout
    encoder = Encoder(request.settings, layout.split, layout.hf_dataset, "near", options=request.run)
    with InProcess(request.run) as runner:  # leaving it ends its Parquet thread
        exporter = Exporter(destination, request, encoder, runner)
        assert exporter.audit.spill_dir == str(exporter.work / "leakage")
        exporter.audit = exporter.step.audit = LeakageAudit(
            options=LeakageOptions(spill_rows=1), spill_dir=exporter.work / "leakage"
        )
        for sample, _split in leaky_samples():
            exporter.add(CONVERT(leaky_interaction(sample["sample_id"].removeprefix("sample_"))))
        (spilled,) = (exporter.work / "leakage").iterdir()
        assert len(list(spilled.iterdir())) == 9  # 3 splits x 3 texts
        result = exporter.finish()
    destination.folder.commit()
    assert result.statistics["leakage"] == LeakageAudit().add_all(leaky_samples()).to_dict()
    assert not exporter.work.exists() and not [p for p in (tmp_path / "out").rglob("*") if "leakage" in p.name]


def test_the_leakage_is_the_same_bytes_for_any_num_proc(tmp_path):
    from personagym_hf.testing.synth import write_store

    chunked = RunOptions(chunk_files=7)
    store = write_store(tmp_path / "s", count=60, personas=25, seed=4, reply_chars=50)
    write_files(store, [leaky_interaction(key) for key in LEAKY])  # known leaks among the synthetic ones
    one = export_store(
        store, tmp_path / "one", parse_config({"training_data": {"split_by": "sample"}}), CONVERT, options=chunked
    )
    two = export_store(
        store,
        tmp_path / "two",
        parse_config({"training_data": {"split_by": "sample"}}),
        CONVERT,
        num_proc=2,
        options=chunked,
    )
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")
    leakage = one.result.statistics["leakage"]
    assert leakage == two.result.statistics["leakage"]
    assert leakage["pairs"]["train-test"]["personas"]["shared"] > 0  # split by sample: personas cross splits
    rows = []
    for name in ("train", "val", "test"):
        split = {"val": "validation"}.get(name, name)
        lines = (tmp_path / "one" / f"{name}_samples.jsonl").read_text(encoding="utf-8").splitlines()
        rows += [(json.loads(line), split) for line in lines]
    assert leakage == LeakageAudit().add_all(rows).to_dict()  # the rows as written, in one piece


def test_an_append_recomputes_the_leakage_from_the_rows_it_carries(leaky_store, tmp_path, capsys):
    late = leaky_store / "interaction_x2.json"
    record = late.read_text(encoding="utf-8")
    late.unlink()
    out = tmp_path / "out"
    export(capsys, leaky_store, out)
    assert read_json(out / "statistics.json")["leakage"]["samples"] == {"train": 3, "validation": 1, "test": 2}
    late.write_text(record, encoding="utf-8")
    export(capsys, leaky_store, out, "--append")
    export(capsys, leaky_store, tmp_path / "fresh")
    assert (
        read_json(out / "statistics.json")["leakage"] == read_json(tmp_path / "fresh" / "statistics.json")["leakage"]
    )


def test_an_export_with_workers_after_one_in_this_process_finishes(tmp_path):
    """A notebook's second export: the first ran in this process; the second's workers fork from it, with its
    state (the signatures it remembers; the exporter's audit and its spill folder, which a worker's exit must not
    remove). A process of its own, bounded in time, so a hang fails this test only."""
    import os
    import signal
    import subprocess

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.config import parse_config
from exporting import export_store
from personagym_hf.testing.synth import write_store
store = write_store({str(tmp_path / "s")!r}, count=3000, personas=300, seed=8, reply_chars=40)
export_store(store, {str(tmp_path / "one")!r}, parse_config({{}}), interaction_to_sample)
export_store(store, {str(tmp_path / "two")!r}, parse_config({{}}), interaction_to_sample, num_proc=2)
"""
    process = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the export and its workers
        process.communicate()
        pytest.fail("the export with 2 processes still ran after 120 s")
    assert process.returncode == 0, stderr
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "statistics.json").read_bytes() == (two / "statistics.json").read_bytes()
    assert (one / "hf_dataset" / "README.md").read_bytes() == (two / "hf_dataset" / "README.md").read_bytes()
