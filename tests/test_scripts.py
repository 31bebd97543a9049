"""The seed's two shell snippets (prepare -> upload), run as written, against the local Hub server."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from exporting import export_store
from seed_guide import SEED

from personagym_hf import TrainingDataCollector
from personagym_hf.config import parse_config
from personagym_hf.testing.synth import write_store

ROOT = Path(__file__).parent.parent


def seed_commands() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
        if lines and lines[0].startswith("python scripts/"):
            commands.append(" ".join(line.rstrip("\\").strip() for line in lines))
    return commands


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    args[0] = sys.executable
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def test_seed_prepare_and_upload_commands_give_a_loadable_repo(hub, tmp_path):
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    store = write_store(tmp_path / "output" / "interactions", count=30, personas=15, seed=2, reply_chars=60)
    export_store(
        store,
        tmp_path / "output" / "training_data",
        parse_config({}),
        TrainingDataCollector().interaction_to_training_sample,
        hf_dataset=False,
    )
    prepare, upload = seed_commands()
    assert prepare == (
        "python scripts/prepare_ppopt_hf_jsonl.py --input output/training_data/train_samples.json "
        "--output hf_dataset.jsonl"
    )
    assert upload == "python scripts/upload_hf_dataset.py --file hf_dataset.jsonl --repo your-username/ppopt-dataset"

    done = run(prepare, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "hf_dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    samples = json.loads((tmp_path / "output" / "training_data" / "train_samples.json").read_text(encoding="utf-8"))
    noisy = sum(len(s["noisy_initial_queries"]) for s in samples)
    assert done.stdout == f"wrote {len(samples) + noisy} lines to hf_dataset.jsonl\n"
    assert list(lines[0]) == [
        "sample_id",
        "persona_id",
        "persona_features",
        "variant",
        "query",
        "noise_type",
        "applied_strategies",
        "original_query",
    ]
    assert lines[0]["variant"] == "styled" and lines[0]["query"] == samples[0]["initial_query"]

    done = run(upload, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uploaded hf_dataset.jsonl as the train split: ")
    loaded = datasets.load_dataset("your-username/ppopt-dataset", cache_dir=str(tmp_path / "c"))
    assert list(loaded) == ["train"] and loaded["train"].to_list() == lines
    assert loaded["train"].features["persona_features"] == datasets.Json()
    assert run(upload, tmp_path).stdout == "your-username/ppopt-dataset already holds this file: no commit made\n"
    assert hub.commit_count("your-username/ppopt-dataset") == 1


def test_upload_a_second_split_keeps_the_first(hub, tmp_path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps(
            {
                "sample_id": "s1",
                "persona_id": "p",
                "persona_features": {"role": "x"},
                "variant": "styled",
                "query": "q",
                "noise_type": "none",
                "applied_strategies": [],
                "original_query": "Q",
            }
        )
        + "\n"
    )
    script = str(ROOT / "scripts" / "upload_hf_dataset.py")
    for split in ("train", "test"):
        done = subprocess.run(
            [sys.executable, script, "--file", "a.jsonl", "--repo", "bob/pp", "--split", split, "--private"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    loaded = datasets.load_dataset("bob/pp", cache_dir=str(tmp_path / "c"))
    assert {name: ds.num_rows for name, ds in loaded.items()} == {"test": 1, "train": 1}


def test_prepare_reports_a_bad_input_file(tmp_path):
    (tmp_path / "bad.json").write_text("[{", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "prepare_ppopt_hf_jsonl.py"),
            "--input",
            "bad.json",
            "--output",
            "o.jsonl",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "prepare_ppopt_hf_jsonl: error: bad.json, item 0: truncated JSON array (no closing ']'): "
        "expected an export's samples file\n"
    )
    assert not (tmp_path / "o.jsonl").exists()


def test_bench_steps_times_every_step_of_an_export(tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, "scripts/bench.py", "-n", "300", "--steps", "--store-dir", str(tmp_path / "s{n}")]
    done = subprocess.run([*command, "--json", str(figures)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures.read_text(encoding="utf-8"))
    stages = [
        "read + parse (store.iter_file)",
        "encode: convert, split, statistics",
        "encode: + JSON items and JSONL lines",
        "encode: + Arrow tables, 6 configs",  # every config the export writes (CONFIG_NAMES)
        "encode: + leakage audit",
        "export_store: + writing, Parquet, card",
    ]
    assert list(figures["steps_us_per_record"]) == list(figures["totals_us_per_record"]) == stages
    assert all(total > 0 for total in figures["totals_us_per_record"].values())
    assert sum(figures["steps_us_per_record"].values()) == pytest.approx(figures["totals_us_per_record"][stages[-1]])
    assert "the export's stages, one more at a time, over 300 interactions:" in done.stdout
    assert not (tmp_path / "s300").exists()  # the store is removed without --keep


def test_bench_parent_cpu_measures_the_parent_of_the_workers_alone(tmp_path):
    figures = tmp_path / "figures.json"
    store = str(tmp_path / "s{n}")
    command = [
        sys.executable,
        "scripts/bench.py",
        "-n",
        "1100",
        "--parent-cpu",
        "--num-proc",
        "2",
        "--store-dir",
        store,
    ]
    done = subprocess.run([*command, "--json", str(figures)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures.read_text(encoding="utf-8"))
    assert set(figures) == {
        "machine",
        "parent_cpu_us_per_record",
        "parent_peak_rss_mb",
        "parent_peak_private_mb",
        "parent_peak_files_mb",
        "parent_peak_shared_mb",
        "wall",
    }
    assert 0 < figures["parent_cpu_us_per_record"] and 0 < figures["parent_peak_rss_mb"] < figures["wall"] * 1e6
    assert 0 < figures["parent_peak_private_mb"] <= figures["parent_peak_rss_mb"]
    assert re.search(
        r"^the parent of 2 workers: [0-9.]+ s of CPU for 1100 records = [0-9.]+ us per record; peak RSS \d+ MB "
        r"\(read every 0.1 s: at most \d+ MB private, \d+ MB of mapped files, \d+ MB of shared memory such as "
        r"Ray's object store\); the export took [0-9.]+ s$",
        done.stdout,
        re.M,
    ), done.stdout
    assert not (tmp_path / "s1100").exists()  # the store is removed without --keep


def test_bench_compares_the_export_with_its_component_floor(tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, "scripts/bench.py", "-n", "200", "--skip-naive", "--store-dir", str(tmp_path / "s{n}")]
    done = subprocess.run([*command, "--json", str(figures)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures.read_text(encoding="utf-8"))
    steps = {step["name"]: step for step in figures["steps"]}
    assert list(steps) == [
        "read+parse", "serialise rows (JSON)", "write Parquet", "component floor", "export (1 process)", "--help"
    ]  # fmt: skip
    parts = ("read+parse", "serialise rows (JSON)", "write Parquet")
    assert steps["component floor"]["seconds"] == pytest.approx(sum(steps[name]["seconds"] for name in parts))
    assert all(step["seconds"] > 0 for step in steps.values()) and figures["profile"] == "realistic"
    assert figures["targets"]["export <= 1.5x component floor (1 process)"]["result"] in ("PASS", "FAIL")
    assert figures["targets"]["export <= 0.6x naive datasets (1 process)"] == {"value": "skipped", "result": "SKIP"}
    assert "store: " in done.stdout and "(realistic profile, 200 interactions" in done.stdout
    assert not (tmp_path / "s200").exists()  # the store is removed without --keep


def test_bench_rounds_report_median_runs_and_the_median_of_the_rounds_ratios(tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, "scripts/bench.py", "-n", "120", "--skip-naive", "--rounds", "3"]
    command += ["--store-dir", str(tmp_path / "s{n}"), "--json", str(figures)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures.read_text(encoding="utf-8"))
    rounds = figures["round_seconds"]
    assert figures["rounds"] == 3 and "round 3 of 3 ..." in done.stdout
    assert list(rounds) == [
        "read+parse",
        "serialise rows (JSON)",
        "write Parquet",
        "component floor",
        "export (1 process)",
    ]
    assert all(len(runs) == 3 for runs in rounds.values())
    steps = {step["name"]: step for step in figures["steps"]}
    parts = ("read+parse", "serialise rows (JSON)", "write Parquet")
    for name in ("component floor", "export (1 process)"):  # each step is its median run ...
        assert steps[name]["seconds"] == sorted(rounds[name])[1]
    # ... but the floor's parts come from the floor's median round, so they add up to it
    middle = rounds["component floor"].index(steps["component floor"]["seconds"])
    assert [steps[name]["seconds"] for name in parts] == [rounds[name][middle] for name in parts]
    ratios = sorted(export / floor for export, floor in zip(rounds["export (1 process)"], rounds["component floor"]))
    value = figures["targets"]["export <= 1.5x component floor (1 process)"]["value"]
    assert value.startswith(f"{ratios[1]:.2f}x (CPU time ")


def test_bench_steps_start_with_no_dirty_page_left(tmp_path, monkeypatch):
    """Every timed step runs after `sync`: the writes the step before it left are written back first, not while it
    runs."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench

    marker = tmp_path / "child-ran"
    synced = []
    monkeypatch.setattr(bench.os, "sync", lambda: synced.append(marker.exists()))
    step = bench.run_child("step", [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"], None)
    assert synced == [False] and marker.exists() and step.seconds > 0


def test_bench_refuses_rounds_below_one(tmp_path):
    command = [sys.executable, "scripts/bench.py", "-n", "10", "--rounds", "0", "--store-dir", str(tmp_path / "s{n}")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "--rounds: expected an integer >= 1, got 0" in done.stderr
    assert not (tmp_path / "s10").exists()


def test_bench_ab_alternates_two_checkouts_and_ends_with_the_rounds_ratios(tmp_path):
    """An A/A run (the same checkout twice), as its docstring advises: every round's pair in order, then the ratios'
    line (its figures: `test_bench_ab_ratio_line`)."""
    store = write_store(tmp_path / "store", count=30, personas=6, seed=1, reply_chars=30)
    command = [sys.executable, "scripts/bench_ab.py", "--a", str(ROOT), "--b", str(ROOT), "--store", str(store)]
    done = subprocess.run([*command, "--rounds", "3", "--", "--no-audit"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rounds = re.findall(r"^round (\d) ([AB]): wall [\d.]+ s", done.stdout, flags=re.M)
    assert rounds == [(n, name) for n in "123" for name in "AB"]
    last = done.stdout.splitlines()[-1]
    assert re.fullmatch(r"B/A wall, median of the rounds' ratios: [\d.]+ \(B faster in [0-3] of 3 rounds; each "
                        r"[\d.]+-[\d.]+\)", last), last  # fmt: skip


def test_bench_ab_ratio_line(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench_ab

    line = bench_ab.ratio_line([10.0, 20.0, 30.0, 40.0], [9.0, 22.0, 27.0, 40.0])
    assert line == "B/A wall, median of the rounds' ratios: 0.950 (B faster in 2 of 4 rounds; each 0.900-1.100)"


def test_bench_ab_refuses_rounds_below_one(tmp_path):
    command = [
        sys.executable,
        "scripts/bench_ab.py",
        "--a",
        ".",
        "--b",
        ".",
        "--store",
        str(tmp_path),
        "--rounds",
        "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "--rounds: expected an integer >= 1, got 0" in done.stderr


def test_bench_audit_measures_the_sketch_the_recall_and_the_audit_on_a_store(tmp_path):
    figures = tmp_path / "figures.json"
    command = [sys.executable, "scripts/bench_audit.py", "--sketch", "300", "--recall", "300", "--store", "200"]
    command += ["--store-dir", str(tmp_path / "s{n}"), "--json", str(figures)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    measured = json.loads(figures.read_text(encoding="utf-8"))
    assert measured["sketch"]["audit"]["texts"] > 300 and measured["sketch"]["audit"]["seconds"] > 0
    exact_both, exact_true, exact_found = measured["recall"]["totals"]["exact"]
    assert exact_both == exact_true == exact_found > 0  # exact duplicates: every one, and nothing else
    assert measured["store"]["audit"]["audit_seconds"] > 0 and 0 <= measured["store"]["audit"]["max_share"] <= 1
    assert "all rows with a near duplicate and no exact one: recall " in done.stdout
    assert "audit: " in done.stdout and " us per interaction; +" in done.stdout
    assert not (tmp_path / "s200").exists()  # the store is removed without --keep


def test_bench_audit_times_whole_exports_with_and_without_the_audit_alternating(tmp_path):
    figures = tmp_path / "figures.json"
    cli = Path(sys.executable).with_name("personagym-hf")
    command = [sys.executable, "scripts/bench_audit.py", "--export", "120", "--rounds", "2", "--cli", f"again={cli}"]
    command += ["--store-dir", str(tmp_path / "s{n}"), "--json", str(figures)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    runs = json.loads(figures.read_text(encoding="utf-8"))["export"]
    names = ["np1 no-audit", "np1 audit", "np1 no-audit [again]", "np1 audit [again]"]
    assert list(runs) == names
    for measured in runs.values():
        assert len(measured) == 2
        assert all(run["seconds"] > 0 and run["cpu_seconds"] > 0 and run["peak_rss_mb"] > 8 for run in measured)
    lines = done.stdout.splitlines()
    ran = [
        re.fullmatch(r"round (\d): (.+?) +[\d.]+ s +[\d.]+ s CPU +\d+ MB \(load [\d.]+\)", line) for line in lines[1:9]
    ]
    assert [(int(m[1]), m[2]) for m in ran] == [(r, name) for r in (1, 2) for name in names]  # alternating
    assert [line.split(":")[0] for line in lines if " CPU time (best against best), " in line] == names[1::2]
    # and the median of each round's pair, which were run back to back, as computed from the runs
    for name in names[1::2]:
        base = runs[name.replace(" audit", " no-audit", 1)]
        pairs = sorted(a["seconds"] / b["seconds"] - 1 for a, b in zip(runs[name], base))
        (at,) = [number for number, line in enumerate(lines) if line.startswith(f"{name}: ")]
        paired = lines[at + 1]
        assert paired.strip().startswith(f"{(pairs[0] + pairs[1]) / 2:+.1%} time, ")
        assert paired.endswith(f"(median of the rounds' pairs; each {pairs[0]:+.1%} to {pairs[1]:+.1%})")
    assert not (tmp_path / "s120").exists()  # the store is removed without --keep
