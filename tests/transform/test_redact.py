"""Redaction at export (`--redact-secrets`): every output clean by construction, the same bytes for any number of
processes and for an append, counted in the statistics and the card."""

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store, snapshot

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import ConfigError, RunOptions, parse_config
from personagym_hf.hub.ppopt import prepare_ppopt_jsonl
from personagym_hf.hub.safety import scan_folder
from personagym_hf.testing.secrets_corpus import _Maker
from personagym_hf.testing.synth import write_store
from personagym_hf.transform.redact import redact_sample, redact_text, redaction_summary, summary_line
from personagym_hf.write.manifest import AppendError

CONVERT = TrainingDataCollector().interaction_to_training_sample
REDACT = replace(parse_config({}), redact_secrets=True)


def with_secrets(store: Path, first: int, count: int, seed: int = 0) -> list[str]:
    """Put a made-up Google key (user turn) and a database password (assistant turn) in `count` interactions."""
    maker, secrets = _Maker(seed), []
    for number in range(first, first + count):
        key, password = maker.google(), maker.password()
        record = make_interaction(number, persona=f"persona_s{number % 4}")
        record["messages"][2]["content"] = f"console: GET /maps?key={key} 403"
        record["messages"][3]["content"] = f"Set DATABASE_URL=postgresql://app:{password}@db:5432/app and retry."
        write_files(store, [record])
        secrets += [key, password]
    return secrets


def strings_of(folder: Path) -> str:
    """Every string of every output file: JSON and JSONL as text, Parquet cells decoded (shards are compressed)."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(orjson.dumps(pq.read_table(path).to_pylist(), default=str).decode())
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "store", count=40, personas=10, seed=3, reply_chars=80)


def test_redact_text_keeps_the_text_around_and_counts_by_kind():
    maker = _Maker(1)
    key, password = maker.google(), maker.password()
    counts = Counter()
    text = redact_text(f"key={key} and postgres://app:{password}@db/app", counts)
    assert text == "key=<REDACTED:google_api_key> and postgres://app:<REDACTED:url_password>@db/app"
    assert counts == {"google_api_key": 1, "url_password": 1}


def test_a_sample_without_any_keyword_is_returned_as_it_is():
    sample = {"sample_id": "s", "full_conversation": [{"role": "user", "content": "hello"}], "metadata": {"n": 1}}
    redacted, counts = redact_sample(sample)
    assert redacted is sample and counts == {}


def test_every_string_of_a_sample_is_redacted_keys_and_nested_values_too():
    key = _Maker(2).google()
    sample = {
        "initial_query": f"why {key}?",
        "full_conversation": [{"role": "user", "content": key}],
        "metadata": {key: [f"x {key}"], "n": 3},
    }
    redacted, counts = redact_sample(sample)
    placeholder = "<REDACTED:google_api_key>"
    assert redacted == {
        "initial_query": f"why {placeholder}?",
        "full_conversation": [{"role": "user", "content": placeholder}],
        "metadata": {placeholder: [f"x {placeholder}"], "n": 3},
    }
    assert counts == {"google_api_key": 4} and sample["initial_query"] == f"why {key}?"  # the input is left alone


def test_an_export_with_redact_secrets_has_no_secret_in_any_output(store, tmp_path):
    secrets = with_secrets(store, 0, 3)
    run = export_store(store, tmp_path / "out", REDACT, CONVERT)
    out = tmp_path / "out"
    ppopt = tmp_path / "ppopt.jsonl"
    prepare_ppopt_jsonl(sorted(out.glob("*_samples.jsonl")), ppopt)
    text = strings_of(out) + ppopt.read_text(encoding="utf-8")
    assert [secret for secret in secrets if secret in text] == []
    assert text.count("<REDACTED:google_api_key>") > 0 and text.count("<REDACTED:url_password>") > 0
    # A key in a user turn is in full (prompt_trajectory, full_conversation), minimal and messages; counted once.
    assert run.result.statistics["redacted_secrets"] == {
        "total": 9,
        "by_kind": {"google_api_key": 6, "url_password": 3},
    }
    assert json.loads((out / "statistics.json").read_text())["redacted_secrets"]["total"] == 9
    card = (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert "## Secrets" in card and "| `google_api_key` | 6 |\n| `url_password` | 3 |" in card
    assert json.loads((out / "hf_dataset" / "provenance.json").read_text())["settings"]["redact_secrets"] is True
    assert scan_folder(out / "hf_dataset") == []  # what the push's gate reads: clean by construction


def test_an_export_without_redaction_is_unchanged(store, tmp_path):
    """No `redacted_secrets` section, no provenance setting: the bytes of exports made before the option."""
    with_secrets(store, 0, 1)
    run = export_store(store, tmp_path / "out", parse_config({}), CONVERT)
    assert "redacted_secrets" not in run.result.statistics
    provenance = json.loads((tmp_path / "out" / "hf_dataset" / "provenance.json").read_text())
    assert "redact_secrets" not in provenance["settings"]
    assert "## Secrets" not in (tmp_path / "out" / "hf_dataset" / "README.md").read_text(encoding="utf-8")


def test_redaction_gives_the_same_bytes_for_any_number_of_processes(store, tmp_path):
    with_secrets(store, 0, 5)
    export_store(store, tmp_path / "one", REDACT, CONVERT, options=RunOptions(chunk_files=7))
    export_store(store, tmp_path / "two", REDACT, CONVERT, options=RunOptions(num_proc=2, chunk_files=7))
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_an_append_carries_the_counts_and_gives_the_bytes_of_a_fresh_export(store, tmp_path):
    hashed = replace(REDACT, split_assignment="hashed")  # balanced groups stay where an append found them
    with_secrets(store, 0, 2)
    export_store(store, tmp_path / "out", hashed, CONVERT)
    with_secrets(store, 10, 2, seed=1)
    run = export_store(store, tmp_path / "out", hashed, CONVERT, append=True)
    fresh = export_store(store, tmp_path / "fresh", hashed, CONVERT)
    assert run.result.statistics["redacted_secrets"] == fresh.result.statistics["redacted_secrets"]
    assert run.result.statistics["redacted_secrets"]["total"] == 12
    state = json.loads((tmp_path / "out" / ".personagym-export.json").read_text())
    assert state["settings"]["redact_secrets"] is True
    assert state["statistics_state"]["redactions"] == {"google_api_key": 8, "url_password": 4}
    appended, made = snapshot(tmp_path / "out"), snapshot(tmp_path / "fresh")
    assert {name: appended[name] for name in made if name.endswith(".jsonl")} == {
        name: data for name, data in made.items() if name.endswith(".jsonl")
    }


@pytest.mark.parametrize("first, then", [(False, True), (True, False)], ids=["now-redacting", "no-longer"])
def test_an_append_cannot_mix_redacted_and_unredacted_rows(store, tmp_path, first, then):
    out = tmp_path / "out"
    export_store(store, out, replace(REDACT, redact_secrets=first), CONVERT)
    with pytest.raises(AppendError) as raised:
        export_store(store, out, replace(REDACT, redact_secrets=then), CONVERT, append=True)
    made, flag = ("with", "--redact-secrets") if first else ("without", "--no-redact-secrets")
    assert str(raised.value) == (
        f"{out}: cannot append: the export there was made {made} redact_secrets, so its rows and the new ones would "
        f"differ; append with {flag}, or rebuild with --no-append"
    )


def test_an_old_manifest_without_the_setting_means_not_redacted(store, tmp_path):
    out = tmp_path / "out"
    export_store(store, out, parse_config({}), CONVERT)
    manifest = json.loads((out / ".personagym-export.json").read_text())
    assert "redact_secrets" not in manifest["settings"]  # written only when true: an export's bytes are as before
    export_store(store, out, parse_config({}), CONVERT, append=True)  # no error: false, as this run
    with pytest.raises(AppendError, match="made without redact_secrets"):
        export_store(store, out, REDACT, CONVERT, append=True)


def test_the_config_key_is_type_checked():
    assert parse_config({"training_data": {"redact_secrets": True}}).redact_secrets is True
    assert parse_config({}).redact_secrets is False
    with pytest.raises(ConfigError) as raised:
        parse_config({"training_data": {"redact_secrets": "yes"}})
    assert str(raised.value) == "training_data.redact_secrets: expected true or false, got 'yes'"


def test_the_cli_flag_and_the_config_key(store, tmp_path, capsys):
    with_secrets(store, 0, 2)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"training_data": {"redact_secrets": True}}), encoding="utf-8")
    assert main(["export", "--interactions", str(store), "--output", str(tmp_path / "a"), "-q", "--config",
                 str(config)]) == 0  # fmt: skip
    assert "  redacted 6 secrets (4 google_api_key, 2 url_password)\n" in capsys.readouterr().out
    assert main(["export", "--interactions", str(store), "--output", str(tmp_path / "b"), "-q", "--config",
                 str(config), "--no-redact-secrets"]) == 0  # fmt: skip
    assert "redacted" not in capsys.readouterr().out
    clean = tmp_path / "clean"
    write_files(clean, [make_interaction(1)])
    assert main(["export", "--interactions", str(clean), "--output", str(tmp_path / "c"), "-q",
                 "--redact-secrets"]) == 0  # fmt: skip
    assert "  redacted no secrets (none found)\n" in capsys.readouterr().out
    config.write_text(yaml.safe_dump({"training_data": {"redact_secrets": 1}}), encoding="utf-8")
    assert main(["export", "--interactions", str(store), "--output", str(tmp_path / "d"), "-q", "--config",
                 str(config)]) == 1  # fmt: skip
    assert capsys.readouterr().err == (
        f"personagym-hf export: error: {config}: training_data.redact_secrets: expected true or false, got 1\n"
    )


def test_summary_line_and_summary():
    summary = redaction_summary(Counter({"url_password": 1, "google_api_key": 2, "jwt": 1}))
    assert summary == {"total": 4, "by_kind": {"google_api_key": 2, "jwt": 1, "url_password": 1}}
    assert summary_line(summary) == "redacted 4 secrets (2 google_api_key, 1 jwt, 1 url_password)"


def test_a_key_in_a_query_is_redacted_and_grouped_the_same_in_the_splits_pre_pass(tmp_path):
    """`split_by: query` groups samples by their original_query in a pre-pass that writes no Parquet: it redacts the
    fields it reads (`Encoder.redacted_fields`), so its groups are the redacted queries the export splits by."""
    from personagym_hf.transform.encode import Encoder

    key = _Maker(9).google()
    asked = f"why is key={key} refused"
    records = [make_interaction(n, persona=f"persona_q{n}", original_query=asked) for n in range(6)]
    records += [make_interaction(n, persona=f"persona_r{n}") for n in range(6, 12)]
    store = write_files(tmp_path / "store", records)
    cfg = replace(REDACT, split_by="query")
    run = export_store(store, tmp_path / "out", cfg, CONVERT)
    rows = [json.loads(line) for path in sorted((tmp_path / "out").glob("*.jsonl")) for line in path.open()]
    queried = {row["sample_id"]: row["original_query"] for row in rows if "REDACTED" in row["original_query"]}
    assert len(queried) == 6 and set(queried.values()) == {"why is key=<REDACTED:google_api_key> refused"}
    assert run.result.statistics["redacted_secrets"]["by_kind"] == {"google_api_key": 6}
    splits = [{json.loads(line)["sample_id"] for line in path.open()} for path in (tmp_path / "out").glob("*.jsonl")]
    assert sum(bool(set(queried) & ids) for ids in splits) == 1  # one query: one group, in one split
    assert Encoder(cfg, split=False, views=False).redacted_fields == Encoder(cfg, split=False, views=False).fields
    assert Encoder(cfg, split=False, views=True).redacted_fields is None
