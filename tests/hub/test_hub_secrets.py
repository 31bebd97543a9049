"""The secrets gate of a push, against the local Hub: it names only plausible secrets, a redacted export publishes
none of them (read back from what the Hub stored), a reviewed baseline lets exactly the accepted findings through,
and every hint it prints runs as printed."""

import json
import re
import shlex

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import parse_config
from personagym_hf.hub.push import PushError, push_to_hub
from personagym_hf.measure.secrets import BASELINE_FILE, digest
from personagym_hf.testing.secrets_corpus import _Maker, write_store

REPO = "alice/personagym"
CONVERT = TrainingDataCollector().interaction_to_training_sample


def export(store, out, redact=False):
    cfg = parse_config({"training_data": {"redact_secrets": redact}})
    export_store(store, out, cfg, CONVERT)
    return out / "hf_dataset"


def received(hub) -> str:
    """Every string the Hub stored for the repo: text files as they are, Parquet shards decoded."""
    parts = []
    for path, data in sorted(hub.files(REPO).items()):
        if path.endswith(".parquet"):
            parts.append(orjson.dumps(pq.read_table(pa.BufferReader(data)).to_pylist(), default=str).decode())
        else:
            parts.append(data.decode("utf-8"))
    return "\n".join(parts)


def named(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("  ")]


@pytest.fixture
def chat_store(tmp_path):
    """Dialogues with code, configuration and logs: placeholders (`xoxp-your-token-here`, `sk-your-api-key-here`,
    `postgres://user:password@…`), words holding `sk-` (`wisk-couchbase-…`), and two users who pasted a Google key."""
    return write_store(tmp_path / "store", count=60, personas=15, seed=5, real_keys=2)


def test_push_names_only_the_plausible_secrets(hub, chat_store, tmp_path):
    store, keys = chat_store
    folder = export(store, tmp_path / "my export")
    with pytest.raises(PushError) as raised:
        push_to_hub(folder, REPO, backoff=0)
    message = str(raised.value)
    assert message.splitlines()[0] == (
        f"refusing to push: 10 strings in {folder} look like secrets (10 google_api_key) and are not accepted:"
    )
    lines = named(message)
    assert len(lines) == 10 and all(": google_api_key (AIzaSy…[39 chars], sha256 " in line for line in lines)
    assert {line.rsplit("sha256 ", 1)[1].rstrip(")") for line in lines} == {digest(key)[:12] for key in keys}
    assert lines[0] == (
        "  data/full/train-00000-of-00001.parquet, row 0 (sample sample_persona_00000_0000000), prompt_trajectory[]: "
        f"google_api_key (AIzaSy…[39 chars], sha256 {digest(keys[0])[:12]})"
    )
    assert not any(key in message for key in keys)
    assert hub.count_requests("POST", r"/api/repos/create") == 0 and hub.lfs_bytes_received == 0


def test_a_redacted_export_publishes_none_of_them(hub, chat_store, tmp_path):
    store, keys = chat_store
    result = push_to_hub(export(store, tmp_path / "out", redact=True), REPO, backoff=0)
    assert result.committed and result.verified == result.plan.splits and result.plan.notices == []
    stored = received(hub)
    assert [key for key in keys if key in stored] == []
    assert stored.count("<REDACTED:google_api_key>") == 10  # 2 keys, each in 5 columns of 4 configs
    assert json.loads(hub.files(REPO)["statistics.json"])["redacted_secrets"] == {
        "total": 4,
        "by_kind": {"google_api_key": 4},
    }


def test_a_reviewed_baseline_lets_exactly_the_accepted_findings_through(hub, chat_store, tmp_path, capsys):
    store, keys = chat_store
    out = tmp_path / "out"
    folder = export(store, out)
    assert main(["secrets", "--data", str(folder), "--accept", "google_api_key", "--write-baseline"]) == 0
    baseline = json.loads((folder / BASELINE_FILE).read_text())
    assert baseline["format"] == 1 and len(baseline["accepted"]) == 10
    assert baseline["accepted"][0] == {
        "column": "full_conversation[].content",
        "config": "full",
        "kind": "google_api_key",
        "sample_id": baseline["accepted"][0]["sample_id"],
        "sha256": baseline["accepted"][0]["sha256"],
        "split": "train",
    }
    assert baseline["accepted"] == sorted(baseline["accepted"], key=lambda entry: sorted(entry.items()))
    assert not any(key in (folder / BASELINE_FILE).read_text() for key in keys)
    capsys.readouterr()

    result = push_to_hub(folder, REPO, backoff=0)
    assert result.committed
    assert result.plan.notices == [
        f"10 strings that look like secrets (10 google_api_key) pushed as accepted by {folder / BASELINE_FILE}"
    ]
    assert BASELINE_FILE not in hub.files(REPO) and all(key in received(hub) for key in keys)

    # A third user pastes a key: the re-export keeps the baseline, and the push names that key's findings only.
    third = _Maker(99).google()
    record = make_interaction(1, persona="persona_new")
    record["messages"][2]["content"] = f"still 403 with key={third}"
    write_files(store, [record])
    folder = export(store, out)
    assert (folder / BASELINE_FILE).is_file()
    with pytest.raises(PushError) as raised:
        push_to_hub(folder, REPO, backoff=0)
    message = str(raised.value)
    assert "(10 more accepted by .personagym-secrets-baseline.json)" in message.splitlines()[0]
    assert len(named(message)) == 5 and all(f"sha256 {digest(third)[:12]})" in line for line in named(message))


def test_every_hint_runs_as_printed(hub, chat_store, tmp_path, capsys):
    store, keys = chat_store
    folder = export(store, tmp_path / "my export")  # a space in the path: the hints quote it
    with pytest.raises(PushError) as raised:
        push_to_hub(folder, REPO, backoff=0)
    hints = re.findall(r"(personagym-hf secrets [^;]+)", str(raised.value))
    assert hints == [
        f"personagym-hf secrets --data '{folder}'",
        f"personagym-hf secrets --data '{folder}' --accept-all --write-baseline",
    ]
    assert main(shlex.split(hints[0])[1:]) == 1  # the review: findings not accepted yet
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"10 strings in {folder} look like secrets (10 google_api_key):"
    assert out.splitlines()[-1] == "0 accepted (no baseline yet), 10 not"
    (again,) = re.findall(r"(personagym-hf secrets [^(]+?) \(", err)
    assert again == hints[1]
    assert main(shlex.split(again)[1:]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote {folder / BASELINE_FILE}: 10 accepted findings",
        f"10 accepted ({folder / BASELINE_FILE}), 0 not",
    ]
    assert push_to_hub(folder, REPO, backoff=0).committed
    assert "export again with --redact-secrets" in str(raised.value)  # that hint: test_a_redacted_export_...


def test_the_review_command_accepts_by_kind_and_drops_entries_that_are_gone(chat_store, tmp_path, capsys):
    store, keys = chat_store
    record = make_interaction(1, persona="persona_db")
    record["messages"][1]["content"] = f"use postgresql://app:{_Maker(7).password()}@db:5432/app"
    write_files(store, [record])
    out = tmp_path / "out"
    export(store, out)
    assert main(["secrets", "--output", str(out), "--accept", "url_password", "--write-baseline"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"13 strings in {out / 'hf_dataset'} look like secrets (10 google_api_key, 3 url_password):"
    assert sum(line.startswith("  accepted ") for line in lines) == 3  # full, messages, last_turn
    assert sum(line.startswith("  new      ") for line in lines) == 10
    assert lines[-1] == f"3 accepted ({out / 'hf_dataset' / BASELINE_FILE}), 10 not"
    assert main(["secrets", "--data", str(out), "--accept-all"]) == 0  # accepted, not written
    assert len(json.loads((out / "hf_dataset" / BASELINE_FILE).read_text())["accepted"]) == 3
    capsys.readouterr()

    export(store, out, redact=True)  # the findings are gone; the baseline came along
    assert main(["secrets", "--data", str(out / "hf_dataset"), "--write-baseline"]) == 0
    assert capsys.readouterr().out == (
        f"no string in {out / 'hf_dataset'} looks like a secret\n"
        f"wrote {out / 'hf_dataset' / BASELINE_FILE}: 0 accepted findings; 3 entries no longer found, dropped\n"
    )


def test_a_damaged_baseline_is_one_line_with_the_fix(chat_store, tmp_path, capsys):
    store, _keys = chat_store
    folder = export(store, tmp_path / "out")
    (folder / BASELINE_FILE).write_text('{"format": 1, "accepted": [{"kind": "nonsense"}]}')
    assert main(["secrets", "--data", str(folder)]) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf secrets: error: {folder / BASELINE_FILE}: an entry is not a finding (kind, sha256, place): "
        f"{{'kind': 'nonsense'}}; write it again with `personagym-hf secrets --data {folder} --write-baseline` after "
        "reviewing the findings\n"
    )


def test_allow_secrets_pushes_everything_and_says_so_in_its_help(hub, chat_store, tmp_path, capsys):
    store, keys = chat_store
    assert push_to_hub(export(store, tmp_path / "out"), REPO, allow_secrets=True, backoff=0).committed
    assert all(key in received(hub) for key in keys)
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--allow-secrets turn the secrets check off: push every string that looks like a key, token or password, " \
        "real ones included" in help_text  # fmt: skip


def test_the_review_command_without_an_export(tmp_path, capsys):
    assert main(["secrets", "--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"personagym-hf secrets: error: {tmp_path}: not an export (no hf_dataset/README.md, nor data/ and README.md); "
        "--data takes an export folder or its hf_dataset/\n"
    )


def test_the_ppopt_upload_is_gated_and_a_redacted_export_passes(hub, tmp_path):
    from personagym_hf.hub.ppopt import prepare_ppopt_jsonl, upload_jsonl

    key = _Maker(8).google()
    record = make_interaction(1, initial_query=f"why does key={key} fail")
    record["messages"][0]["content"] = record["initial_query"]
    store = write_files(tmp_path / "store", [record])
    for redact in (False, True):
        out = tmp_path / f"out-{redact}"
        export(store, out, redact=redact)
        prepare_ppopt_jsonl(sorted(out.glob("*_samples.jsonl")), out / "ppopt.jsonl")
    with pytest.raises(PushError) as raised:
        upload_jsonl(tmp_path / "out-False" / "ppopt.jsonl", "bob/pp", backoff=0)
    assert str(raised.value).startswith(
        f"refusing to upload: 1 string in {tmp_path / 'out-False' / 'ppopt.jsonl'} looks like secrets "
        f"(1 google_api_key): ppopt.jsonl, line 1: google_api_key (AIzaSy…[39 chars], sha256 {digest(key)[:12]})"
    )
    assert hub.count_requests() == 0
    assert upload_jsonl(tmp_path / "out-True" / "ppopt.jsonl", "bob/pp", backoff=0).committed
    stored = hub.files("bob/pp")["data/train.jsonl"].decode()
    assert key not in stored and "<REDACTED:google_api_key>" in stored


def test_push_exports_with_redact_secrets_as_its_hint_says(hub, chat_store, tmp_path, capsys):
    store, keys = chat_store
    out = tmp_path / "out"
    assert main(["push", "--repo", REPO, "--interactions", str(store), "--output", str(out), "-q"]) == 1
    assert "export again with --redact-secrets" in capsys.readouterr().err
    assert main(["push", "--repo", REPO, "--interactions", str(store), "--output", str(out), "-q",
                 "--redact-secrets"]) == 0  # fmt: skip
    assert "  redacted 4 secrets (4 google_api_key)\n" in capsys.readouterr().out
    assert [key for key in keys if key in received(hub)] == []


def test_the_gate_scans_files_on_threads_with_the_same_findings(chat_store, tmp_path, monkeypatch):
    import threading

    from personagym_hf.hub import safety

    store, keys = chat_store
    folder = export(store, tmp_path / "out")
    files = safety.upload_files(folder)
    serial = safety.scan_files(files, threads=1)
    assert len(serial) == 10 and {finding.digest for finding in serial} == {digest(key) for key in keys}
    assert len({finding.file for finding in serial}) > 1  # found in several files
    together = threading.Barrier(2, timeout=30)  # two files scanned at once, or the barrier breaks
    threads = set()
    real = safety.scan_parquet

    def scan_parquet(path, label):
        threads.add(threading.get_ident())
        if len(threads) <= 2 and not together.broken:
            together.wait()
        return real(path, label)

    monkeypatch.setattr(safety, "scan_parquet", scan_parquet)
    assert safety.scan_files(files, threads=2) == serial  # the same findings, in path order
    assert len(threads) == 2
