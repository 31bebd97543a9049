import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_interaction, write_files
from terminal import BAR, run_with_terminal_stderr, with_progress_bars

from personagym_hf.cli.main import build_parser, main


def test_help_explains_every_command_and_imports_no_heavy_library():
    code = (
        "import sys; from personagym_hf.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('datasets', 'pyarrow', 'huggingface_hub', 'pandas', 'ray', 'torch', 'trl')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")
    for command in ("export", "validate", "stats"):
        assert f"    {command}" in out


def test_every_command_is_documented_in_the_readme_and_the_cli_page():
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    cli_page = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"personagym-hf {name}" in readme, name
        assert f"\n## `personagym-hf {name}`\n" in cli_page, name


def test_export_demo_prints_a_summary(tmp_path, capsys):
    assert main(["export", "--demo", "--output", str(tmp_path / "out"), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Exported 80 samples from 80 files (train 64, validation 8, test 8)"  # 40 personas, balanced
    assert out[1] == "  noise rate 28.7%, 40 personas, avg 2.31 user turns"  # was 2.3125, unrounded
    assert (tmp_path / "out" / "hf_dataset" / "README.md").exists()
    assert json.loads((tmp_path / "out" / "token_usage.json").read_text())["summary"]["total_calls"] == 32


def test_export_options(small_store, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            ["export", "--interactions", str(small_store), "--output", str(out), "--no-split", "-q", "--no-hf-dataset"]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        ".personagym-export.json",
        "statistics.json",
        "train_samples.json",
        "train_samples.jsonl",
    ]
    write_files(small_store, [make_interaction(99, persona="persona_new")])
    assert (
        main(
            [
                "export",
                "--interactions",
                str(small_store),
                "--output",
                str(out),
                "--no-split",
                "-q",
                "--no-hf-dataset",
                "--append",
            ]
        )
        == 0
    )
    assert "  appended 1 new sample to 12 already exported" in capsys.readouterr().out


def test_missing_store_is_one_line_with_the_fix(tmp_path, capsys):
    assert main(["export", "--interactions", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), "-q"]) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {tmp_path / 'nope'}: no such file or directory; "
        "pass --interactions with the folder of your interaction store\n"
    )


def test_on_bad_records_error_exits_non_zero_naming_the_record(small_store, tmp_path, capsys):
    (small_store / "zz.json").write_text(json.dumps(make_interaction(50, messages=[])), encoding="utf-8")
    code = main(
        [
            "export",
            "--interactions",
            str(small_store),
            "--output",
            str(tmp_path / "o"),
            "-q",
            "--on-bad-records",
            "error",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {small_store.as_posix()}/zz.json, "
        "interaction_id='interaction_persona_001_0050': 'messages' is empty "
        "(fix the record, or rerun with --on-bad-records warn to skip bad records)\n"
    )
    assert not any(p.suffix in (".json", ".jsonl", ".parquet") for p in (tmp_path / "o").rglob("*"))


def test_validate_lists_bad_records_and_exits_1(small_store, capsys):
    assert main(["validate", "--interactions", str(small_store), "-q"]) == 0
    assert capsys.readouterr().out == "12 valid interactions, 0 bad, 0 warnings\n"
    (small_store / "zz.jsonl").write_text('{"persona_id": "p"}\n', encoding="utf-8")
    assert main(["validate", "--interactions", str(small_store), "-q"]) == 1
    assert capsys.readouterr().out == (
        f"{small_store.as_posix()}/zz.jsonl, line 1: missing 'messages'\n"
        "12 valid interactions, 1 bad (1 invalid), 0 warnings\n"
    )


def test_stats_prints_json(small_store, capsys):
    assert main(["stats", "--interactions", str(small_store), "-q"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total_samples"] == 12 and stats["total_personas"] == 6


def test_collector_plugin_is_used_end_to_end(small_store, tmp_path, monkeypatch):
    (tmp_path / "my_collector.py").write_text(
        "from personagym_hf import TrainingDataCollector\n\n"
        "class Tagged(TrainingDataCollector):\n"
        "    def interaction_to_training_sample(self, interaction):\n"
        "        sample = super().interaction_to_training_sample(interaction)\n"
        "        sample.metadata['custom_field'] = len(interaction['messages'])\n"
        "        return sample\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "export",
                "--interactions",
                str(small_store),
                "--output",
                "out",
                "-q",
                "--collector",
                "my_collector:Tagged",
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "out" / "train_samples.json").read_text())
    assert {row["metadata"]["custom_field"] for row in rows} == {4}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nomodule", "--collector 'nomodule': expected package.module:ClassName or package.module:function"),
        (
            "json:JSONDecoder",
            "--collector 'json:JSONDecoder': expected a subclass of TrainingDataCollector or a function "
            "(interaction dict -> TrainingSample)",
        ),
    ],
    ids=["no_class", "not_a_collector"],
)
def test_bad_collector_spec(small_store, capsys, spec, message):
    assert main(["validate", "--interactions", str(small_store), "-q", "--collector", spec]) == 1
    assert capsys.readouterr().err == f"personagym-hf validate: error: {message}\n"


def test_python_dash_m_works(tmp_path):
    result = subprocess.run([sys.executable, "-m", "personagym_hf", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("personagym-hf ")


def bad_store(small_store):
    (small_store / "zz.jsonl").write_text('{"persona_id": "p"}\n', encoding="utf-8")
    return small_store, f"{small_store.as_posix()}/zz.jsonl, line 1: missing 'messages'"


def test_validate_lists_each_bad_record_once(small_store):
    store, bad = bad_store(small_store)
    done = subprocess.run(  # a fresh process: its logging goes to stderr, as in a shell
        [sys.executable, "-m", "personagym_hf", "validate", "--interactions", str(store)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stdout == f"{bad}\n12 valid interactions, 1 bad (1 invalid), 0 warnings\n"
    assert bad not in done.stderr


def test_validate_on_bad_records_error_stops_at_the_first(small_store, capsys):
    store, bad = bad_store(small_store)
    assert main(["validate", "--interactions", str(store), "-q", "--on-bad-records", "error"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"personagym-hf validate: error: {bad} (fix the record, or rerun with --on-bad-records warn to skip bad "
        "records)\n"
    )


def test_validate_on_bad_records_skip_counts_without_listing(small_store, capsys):
    store, bad = bad_store(small_store)
    assert main(["validate", "--interactions", str(store), "-q", "--on-bad-records", "skip"]) == 1
    assert capsys.readouterr().out == (
        "12 valid interactions, 1 bad (1 invalid; not listed: --on-bad-records skip), 0 warnings\n"
    )


def test_stats_on_bad_records_error_stops_at_the_first(small_store, capsys):
    store, bad = bad_store(small_store)
    assert main(["stats", "--interactions", str(store), "-q", "--on-bad-records", "error"]) == 1
    assert capsys.readouterr().err.startswith(f"personagym-hf stats: error: {bad} (fix the record")


def test_validate_lists_warnings_once_unless_quiet(small_store):
    write_files(small_store, [make_interaction(60, num_turns=5)])
    path = f"{small_store.as_posix()}/interaction_persona_001_0060.json"
    warning = f"{path}: num_turns is 5 in the record but the messages hold 2 user turns"
    command = [sys.executable, "-m", "personagym_hf", "validate", "--interactions", str(small_store)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, f"warning: {warning}\n13 valid interactions, 0 bad, 1 warning\n")
    assert warning not in done.stderr
    quiet = subprocess.run([*command, "-q"], capture_output=True, text=True)
    assert (quiet.stdout, quiet.stderr) == ("13 valid interactions, 0 bad, 1 warning\n", "")


def test_counts_of_one_are_singular(tmp_path, capsys):
    store = write_files(tmp_path / "one", [make_interaction(1, num_turns=3)])
    (store / "zz.jsonl").write_text('{"persona_id": "p"}\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["export", "--interactions", str(store), "--output", str(out), "-q", "--no-split"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Exported 1 sample from 2 files (train 1)"
    assert lines[1] == "  noise rate 0.0%, 1 persona, avg 2.00 user turns"
    assert lines[2] == f"  rejected 1 bad record ({out / 'rejected.jsonl'}), 1 warning"
    write_files(store, [make_interaction(2, persona="persona_002")])
    assert main(["export", "--interactions", str(store), "--output", str(out), "-q", "--no-split", "--append"]) == 0
    assert "  appended 1 new sample to 1 already exported" in capsys.readouterr().out.splitlines()
    assert main(["validate", "--interactions", str(store), "-q"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "2 valid interactions, 1 bad (1 invalid), 1 warning"
    assert main(["stats", "--interactions", str(store), "-q"]) == 0
    assert capsys.readouterr().err == (
        f"(1 bad record not counted; run `personagym-hf validate --interactions {store}` to list them)\n"
    )


@pytest.mark.parametrize("command", ["export", "validate", "stats"])
def test_no_progress_bar_when_stderr_is_not_a_terminal(small_store, tmp_path, command):
    args = [sys.executable, "-m", "personagym_hf", command, "--interactions", str(small_store)]
    args += ["--output", str(tmp_path / "out")] if command == "export" else []
    done = subprocess.run(args, capture_output=True, text=True, env=with_progress_bars(dict(os.environ)))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("command", ["export", "validate"])
def test_a_progress_bar_is_drawn_on_a_terminal_unless_quiet(small_store, tmp_path, command):
    args = [sys.executable, "-m", "personagym_hf", command, "--interactions", str(small_store)]
    args += ["--output", str(tmp_path / "out")] if command == "export" else []
    root = str(Path(__file__).parents[2])
    drawn = run_with_terminal_stderr(args, env=dict(os.environ), cwd=root)
    assert drawn.returncode == 0
    assert (
        BAR.search(drawn.terminal)
        and ("Exporting" if command == "export" else "Reading interactions") in drawn.terminal
    )
    quiet = run_with_terminal_stderr([*args, "-q"], env=dict(os.environ), cwd=root)
    assert (quiet.returncode, quiet.terminal) == (0, "")


def test_a_conversion_function_is_a_collector_too(small_store, tmp_path, monkeypatch):
    (tmp_path / "my_convert.py").write_text(
        "from personagym_hf.transform.collect import interaction_to_sample\n\n"
        "def tagged(interaction):\n"
        "    sample = interaction_to_sample(interaction)\n"
        "    sample.metadata['custom_field'] = len(interaction['messages'])\n"
        "    return sample\n\n"
        "def broken(interaction):\n"
        "    return dict(interaction)\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            ["export", "--interactions", str(small_store), "--output", "out", "-q", "--collector", "my_convert:tagged"]
        )
        == 0
    )
    rows = json.loads((tmp_path / "out" / "train_samples.json").read_text())
    assert {row["metadata"]["custom_field"] for row in rows} == {4}
    manifest = json.loads((tmp_path / "out" / ".personagym-export.json").read_text())
    assert manifest["collector"] == "my_convert:tagged"


def test_a_collector_that_returns_no_sample_stops_with_one_line(small_store, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_convert.py").write_text(
        "def broken(interaction):\n    return dict(interaction)\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--interactions", str(small_store), "-q", "--collector", "my_convert:broken"]) == 1
    first = sorted(small_store.rglob("*.json"))[0].as_posix()
    assert capsys.readouterr().err == (
        f"personagym-hf validate: error: the collector 'broken' returned dict for {first}, "
        "interaction_id='interaction_persona_000_0000'; it must return a TrainingSample\n"
    )


def test_validate_counts_the_bad_records_of_each_kind(small_store, capsys):
    """A bad record's kind is a field of its own (`BadRecord.kind`), counted without reading its reason."""
    first = sorted(small_store.rglob("*.json"))[0]
    (small_store / "zz.jsonl").write_text(
        'not json\n[1]\n{"persona_id": "p"}\n' + first.read_text(encoding="utf-8").replace("\n", " ") + "\n",
        encoding="utf-8",
    )
    (small_store / "zz_empty.json").write_text("", encoding="utf-8")
    assert main(["validate", "--interactions", str(small_store), "-q", "--on-bad-records", "skip"]) == 1
    assert capsys.readouterr().out == (
        "12 valid interactions, 5 bad (2 invalid JSON, 1 not an object, 1 invalid, 1 duplicate; not listed: "
        "--on-bad-records skip), 0 warnings\n"
    )


def test_engine_ray_without_the_extra_is_one_line_before_any_work(small_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without [ray] imports
    out = tmp_path / "out"
    assert main(["export", "--interactions", str(small_store), "--output", str(out), "--engine", "ray"]) == 1
    assert capsys.readouterr().err == (
        "personagym-hf export: error: --engine ray needs ray, which is not installed: "
        "pip install 'personagym-hf[ray]'\n"
    )
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert main(["export", "--interactions", str(small_store), "--output", str(out), "--address", "h:6379"]) == 1
    assert (
        capsys.readouterr().err
        == "personagym-hf export: error: --address names a Ray cluster: pass --engine ray with it\n"
    )


@pytest.mark.parametrize(
    "value, error",
    [
        ('{"py_modules": [', "--runtime-env-json: not JSON (Expecting value at character 16)"),
        ('["pip"]', "--runtime-env-json: expected a JSON object ({...}), got a list"),
        ('{"pip": ["x"]}', "--runtime-env-json is for the Ray workers: pass --engine ray with it"),
    ],
)
def test_a_runtime_env_that_cannot_be_used_is_one_line_before_any_work(small_store, tmp_path, capsys, value, error):
    out = tmp_path / "out"
    argv = ["export", "--interactions", str(small_store), "--output", str(out), "--runtime-env-json", value]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"personagym-hf export: error: {error}\n"
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_reader_that_stops_reading_ends_the_command_quietly(small_store, tmp_path):
    done = subprocess.run(
        f"{sys.executable} -m personagym_hf export --interactions {small_store} --output {tmp_path}/o -q | head -1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert done.stdout.startswith("Exported 12 samples") and done.stderr == ""


def test_stats_and_validate_split_persona_and_query_as_the_export_does(small_store, tmp_path, capsys):
    """They run the export's own pass (`job.scan_store`), grouping pre-pass included, where they once raised
    NeedsGroupsError."""
    config = tmp_path / "config.yaml"
    config.write_text("training_data:\n  split_by: persona_and_query\n", encoding="utf-8")
    out = tmp_path / "out"
    assert (
        main(["export", "--interactions", str(small_store), "--config", str(config), "--output", str(out), "-q"]) == 0
    )
    capsys.readouterr()
    assert main(["stats", "--interactions", str(small_store), "--config", str(config), "-q"]) == 0
    stats = json.loads(capsys.readouterr().out)
    exported = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    assert stats["samples_by_split"] == exported["samples_by_split"]
    assert sum(stats["samples_by_split"].values()) == 12
    assert main(["validate", "--interactions", str(small_store), "--config", str(config), "-q"]) == 0
    assert capsys.readouterr().out == "12 valid interactions, 0 bad, 0 warnings\n"


def test_validate_on_an_empty_folder_says_what_it_looked_for(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["validate", "--interactions", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf validate: error: no interaction files found in {tmp_path / 'empty'}; looked for upstream "
        "InteractionStorage files (*.json, one interaction each), JSON Lines (*.jsonl), JSON arrays (*.json), or .gz "
        "of any of them, in the folder and its subfolders\n"
    )


# Found by following the README as a new user would (issue 25).

TWO_STORES = "--demo and --interactions name two stores: pass one of them"
TWO_SOURCES = "pass either --data or --interactions/--demo, not both"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--demo", "--interactions", "{store}"], TWO_STORES),
        (["validate", "--interactions", "{store}", "--demo"], TWO_STORES),
        (["tokens", "--tokenizer", "t", "--data", "{out}", "--demo"], TWO_SOURCES),
        (["push", "--repo", "a/b", "--data", "{out}", "--interactions", "{store}"], TWO_SOURCES),
    ],
    ids=["export", "validate", "tokens", "push"],
)  # fmt: skip
def test_two_sources_are_refused_before_any_work(small_store, tmp_path, monkeypatch, capsys, argv, message):
    """`export --demo --interactions PATH` exported the demo and ignored the path; `tokens --data --demo` read the
    demo; `push --data --interactions` exported the store and pushed --data."""
    monkeypatch.chdir(tmp_path)  # where the default output folders would be made
    argv = [part.format(store=small_store, out=tmp_path / "out") for part in argv]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"personagym-hf {argv[0]}: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interactions"]  # nothing exported


@pytest.mark.parametrize(
    "command",
    [["audit", "--demo"], ["audit", "--interactions", "{store}"], ["tokens", "--tokenizer", "{tiny}", "--demo"]],
    ids=["audit-demo", "audit-store", "tokens-demo"],
)
def test_no_progress_bar_in_a_file_from_the_audits(small_store, tiny, tmp_path, command):
    """They drew a bar into a file given as stderr (`2>log`), between the warnings; now only on a terminal."""
    args = [sys.executable, "-m", "personagym_hf", *(part.format(store=small_store, tiny=tiny) for part in command)]
    with (tmp_path / "log").open("w") as log:
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, env=with_progress_bars(dict(os.environ)))
    assert done.returncode == 0
    assert not BAR.search((tmp_path / "log").read_text(encoding="utf-8"))
    drawn = run_with_terminal_stderr(args, env=with_progress_bars(dict(os.environ)), cwd=str(tmp_path))
    assert drawn.returncode == 0 and BAR.search(drawn.terminal)  # the bars themselves are still there


def test_every_data_option_takes_the_export_folder_or_its_hf_dataset(small_store, tmp_path, capsys):
    """`card --data EXPORT` said "no exported dataset here ... or pass --data" though --data was passed."""
    out = tmp_path / "out"
    assert main(["export", "--interactions", str(small_store), "--output", str(out), "-q"]) == 0
    capsys.readouterr()
    cards = []
    for data in (out, out / "hf_dataset"):
        assert main(["card", "--data", str(data)]) == 0
        cards.append(capsys.readouterr().out)
    assert cards[0] == cards[1] and cards[0].startswith("---\n")
    for data in (out, out / "hf_dataset"):
        assert main(["audit", "--data", str(data), "--json", "--exact-only"]) == 0
    assert main(["export", "--interactions", str(small_store), "--output", str(out), "-q", "--no-hf-dataset"]) == 0
    capsys.readouterr()
    assert main(["card", "--data", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf card: error: {out}: this export has no hf_dataset/ folder (it was made with --no-hf-dataset); "
        "export it again without --no-hf-dataset\n"
    )
    for command in (["card"], ["secrets"], ["push", "--repo", "alice/x", "--dry-run"]):  # one rule for each --data
        assert main([*command, "--data", str(tmp_path / "nothing")]) == 1
        assert capsys.readouterr().err == (
            f"personagym-hf {command[0]}: error: {tmp_path / 'nothing'}: no such folder; --data takes an export "
            "folder or its hf_dataset/\n"
        )
    for data in (out, out / "hf_dataset"):  # the export folder, and its hf_dataset/
        assert main(["export", "--interactions", str(small_store), "--output", str(out), "-q"]) == 0
        capsys.readouterr()
        assert main(["secrets", "--data", str(data)]) == 0
        assert capsys.readouterr().out == f"no string in {out / 'hf_dataset'} looks like a secret\n"


def test_a_timestamped_append_is_one_line(small_store, tmp_path, capsys):
    argv = ["export", "--interactions", str(small_store), "--output", str(tmp_path / "out"), "-q"]
    assert main([*argv, "--timestamp", "--append"]) == 1
    assert capsys.readouterr().err == (
        "personagym-hf export: error: --timestamp writes a version beside the export and --append adds to the export "
        "itself: pass one of them (an append keeps no timestamp)\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["export", "--demo", "--outptu", "o"], "unrecognized arguments: --outptu o; did you mean --output?"),
        (
            ["validate", "--interactoins", "s"],
            "unrecognized arguments: --interactoins s; did you mean --interactions?",
        ),
        (["audit", "--demo", "--max-leek=0"], "unrecognized arguments: --max-leek=0; did you mean --max-leak?"),
        (["stats", "--demo", "--zzz"], "unrecognized arguments: --zzz"),
    ],
    ids=["output", "interactions", "with-value", "nothing-near"],
)
def test_a_mistyped_option_gets_the_nearest_one(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"personagym-hf {argv[0]}: error: {suggestion}"


def test_a_config_key_that_is_not_read_stops_the_export_naming_the_file(small_store, tmp_path, capsys):
    """`splt_by: sample` exported with the defaults and exit 0."""
    config = tmp_path / "config.yaml"
    config.write_text("training_data:\n  splt_by: sample\n", encoding="utf-8")
    argv = ["export", "--interactions", str(small_store), "--output", str(tmp_path / "out"), "--config", str(config)]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {config}: training_data.splt_by: unknown key; did you mean "
        "training_data.split_by?\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_append_that_adds_nothing_says_so(small_store, tmp_path, capsys):
    argv = ["export", "--interactions", str(small_store), "--output", str(tmp_path / "out"), "-q"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--append"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "Appended nothing: the export already holds every sample of the 12 files (12 samples: train 8, validation 2, "
        "test 2)",
        "  noise rate 0.0%, 6 personas, avg 2.00 user turns",
    ]
