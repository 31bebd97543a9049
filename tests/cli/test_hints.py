"""Every piece of advice the command line prints runs as printed: the `personagym-hf …` command quoted in a message
is parsed out of it and run, in the same folder, and does what the message says; "pass --X" advice is followed by
adding exactly that to the command that printed it."""

import json
import re
import shlex
import sys

import pytest
import yaml
from conftest import make_interaction, write_files

from personagym_hf.cli.main import main
from personagym_hf.measure.leakage import report_lines


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def hinted(text: str) -> list[str]:
    """The argv of the one `personagym-hf …` command that `text` tells to run, as a shell would split it."""
    commands = re.findall(r"run `(personagym-hf [^`]+)`", text)
    assert len(commands) == 1, text
    argv = shlex.split(commands[0])
    return argv[1:]


@pytest.fixture
def store_with_bad_records(tmp_path):
    store = write_files(tmp_path / "store", [make_interaction(i, persona=f"persona_{i % 3:03d}") for i in range(6)])
    (store / "zz.jsonl").write_text('{"persona_id": "p"}\n', encoding="utf-8")
    return store


@pytest.mark.parametrize("rensa", ["installed", "missing"])
def test_the_leakage_hint_of_export_demo_audits_that_export(tmp_path, monkeypatch, capsys, rensa):
    """It was `run personagym-hf audit`, which audited output/interactions (no such folder), and without rensa
    stopped: near duplicates needed it. Now it names the export, and audit finds what export found, near duplicates
    included, whether rensa is installed or not (neither needs it)."""
    monkeypatch.chdir(tmp_path)
    if rensa == "missing":  # the default install
        monkeypatch.setitem(sys.modules, "rensa", None)
    code, out, _ = run(capsys, ["export", "--demo", "-q"])
    assert code == 0
    argv = hinted(out)
    assert argv == ["audit", "--data", "output/demo_training_data"]
    code, out, err = run(capsys, argv)
    assert (code, err) == (0, "")
    exported = json.loads((tmp_path / "output/demo_training_data/statistics.json").read_text(encoding="utf-8"))
    assert out == "\n".join(report_lines(exported["leakage"])) + "\n"  # the export's own figures, and all of them
    assert "near" in exported["leakage"]["pairs"]["train-validation"]["original_query"]


def test_the_leakage_hint_of_a_timestamped_version_audits_its_store(tmp_path, monkeypatch, capsys):
    """`audit --data` reads the current export, not a version written beside it: the hint names the store."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, ["export", "--demo", "--timestamp", "-q"])
    assert code == 0
    argv = hinted(out)
    assert argv == ["audit", "--demo"]
    code, out, _ = run(capsys, [*argv, "--json"])
    assert code == 0
    (version,) = (tmp_path / "output/demo_training_data").glob("statistics_*.json")
    assert json.loads(out) == json.loads(version.read_text(encoding="utf-8"))["leakage"]


@pytest.mark.parametrize(
    "options, config, extra",
    [
        ([], None, []),
        (["--on-bad-records", "skip"], None, ["--on-bad-records", "warn"]),
        ([], {"training_data": {"on_bad_records": "skip"}}, ["--on-bad-records", "warn"]),
    ],
    ids=["plain", "skip-option", "skip-in-config"],
)
def test_the_validate_hint_of_stats_lists_the_bad_records(store_with_bad_records, tmp_path, capsys, options, config,
                                                          extra):  # fmt: skip
    """It was `run personagym-hf validate`, which looked at output/interactions, not the store `stats` read."""
    store = store_with_bad_records
    given = ["--interactions", str(store)]
    if config is not None:
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        given += ["--config", str(tmp_path / "config.yaml")]
    code, _, err = run(capsys, ["stats", *given, *options, "-q"])
    assert code == 0
    argv = hinted(err)
    assert argv == ["validate", *given, *extra]
    code, out, _ = run(capsys, argv)
    assert code == 1
    assert out.splitlines() == [
        f"{store}/zz.jsonl, line 1: missing 'messages'",
        "6 valid interactions, 1 bad (1 invalid), 0 warnings",
    ]


def test_the_validate_hint_of_an_export_whose_every_record_is_bad_lists_them(tmp_path, capsys):
    store = tmp_path / "my store"  # a space: the hint quotes it
    store.mkdir()
    (store / "a.json").write_text("{", encoding="utf-8")
    (store / "b.json").write_text("[1]", encoding="utf-8")
    code, _, err = run(capsys, ["export", "--interactions", str(store), "--output", str(tmp_path / "out"), "-q"])
    assert code == 1
    assert f"run `personagym-hf validate --interactions '{store}'` to list them" in err
    code, out, _ = run(capsys, hinted(err))
    assert code == 1
    assert out.splitlines() == [
        f"{store}/a.json, line 1, column 2: invalid JSON (unexpected end of data)",
        f"{store}/b.json, item 0: expected a JSON object, got int",
        "0 valid interactions, 2 bad (1 invalid JSON, 1 not an object), 0 warnings",
    ]


@pytest.mark.parametrize("options", [[], ["--output", "elsewhere"]], ids=["default", "output"])
def test_the_export_hint_of_card_makes_the_export_it_looks_for(small_store, tmp_path, monkeypatch, capsys, options):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").mkdir()
    small_store.rename(tmp_path / "output" / "interactions")  # the default store
    code, _, err = run(capsys, ["card", *options])
    folder = f"{options[1] if options else 'output/training_data'}/hf_dataset"
    export = shlex.join(["personagym-hf", "export", *options])
    assert (code, err) == (
        1,
        f"personagym-hf card: error: {folder}: no exported dataset here; run `{export}` first, or pass --data with "
        "an export\n",
    )
    assert run(capsys, hinted(err))[0] == 0
    code, out, _ = run(capsys, ["card", *options])
    assert code == 0 and out.startswith("---\n")


def test_rerun_with_on_bad_records_warn_exports_the_good_records(store_with_bad_records, tmp_path, capsys):
    args = ["export", "--interactions", str(store_with_bad_records), "--output", str(tmp_path / "out"), "-q"]
    code, _, err = run(capsys, [*args, "--on-bad-records", "error"])
    assert code == 1 and err.endswith("(fix the record, or rerun with --on-bad-records warn to skip bad records)\n")
    code, out, _ = run(capsys, [*args, "--on-bad-records", "error", "--on-bad-records", "warn"])
    assert code == 0 and out.startswith("Exported 6 samples from 7 files")


@pytest.mark.parametrize(
    "argv, advice, follow",
    [
        (["validate"], "pass --interactions with the folder of your interaction store", ["--interactions", "{store}"]),
        (["validate", "--config", "missing.yaml", "--interactions", "{store}"],
         "pass --config with the path of your config.yaml", ["--config", "{config}"]),
        (["export", "--interactions", "{store}", "--output", "a_file"], "pass --output with a folder path",
         ["--output", "a_folder"]),
        (["export", "--demo", "--output", "d", "--max-length", "10"], "pass --tokenizer PATH with them",
         ["--tokenizer", "{tokenizer}"]),
        (["audit", "--data", "."], "pass --data with an export folder or its hf_dataset/", ["--data", "{export}"]),
    ],
    ids=["interactions", "config", "output", "tokenizer", "data"],
)  # fmt: skip
def test_pass_advice_followed_as_given_works(small_store, tiny, tmp_path, monkeypatch, capsys, argv, advice, follow):
    """"pass --X ..." advice: the same command with that option added (argparse keeps the last of an option)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    (tmp_path / "config.yaml").write_text("experiment: {seed: 7}\n", encoding="utf-8")
    assert main(["export", "--interactions", str(small_store), "--output", "export", "-q"]) == 0
    capsys.readouterr()
    paths = {"store": small_store, "config": "config.yaml", "tokenizer": tiny, "export": "export"}
    argv, follow = ([part.format(**paths) for part in parts] for parts in (argv, follow))
    code, _, err = run(capsys, argv)
    assert code == 1 and err.count("\n") == 1 and advice in err, err
    code, _, err = run(capsys, [*argv, *follow])
    assert code == 0, err


def test_the_card_note_on_the_license_goes_once_one_is_passed(small_store, tmp_path, capsys):
    assert main(["export", "--interactions", str(small_store), "--output", str(tmp_path / "out"), "-q"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, ["card", "--data", str(tmp_path / "out")])
    assert code == 0 and "no license set; pass --license with an identifier from " in err
    code, _, err = run(capsys, ["card", "--data", str(tmp_path / "out"), "--license", "cc-by-4.0"])
    assert (code, err) == (0, "")
