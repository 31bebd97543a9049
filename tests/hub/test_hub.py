"""Pushes tested for real: the real `huggingface_hub` and `datasets` clients against the local
Hub-compatible server of hub_server.py (no mocks)."""

import json
import logging

import datasets
import pytest
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import RunOptions, parse_config
from personagym_hf.hub.push import PushError, push_to_hub
from personagym_hf.measure.secrets import digest
from personagym_hf.testing.secrets_corpus import _Maker
from personagym_hf.testing.synth import write_store

REPO = "alice/personagym"
CONFIGS = ["full", "minimal", "messages", "last_turn", "query_rewrite", "rewrite"]


def export(store, out, **options):
    export_store(store, out, parse_config({}), TrainingDataCollector().interaction_to_training_sample, **options)
    return out / "hf_dataset"


def uploaded(hub) -> int:
    return hub.lfs_bytes_received + hub.inline_bytes_received


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "interactions", count=40, personas=20, seed=11, reply_chars=100)


def test_push_then_load_every_config_equals_the_local_folder(hub, store, tmp_path):
    folder = export(store, tmp_path / "out")
    result = push_to_hub(folder, REPO, backoff=0)
    assert result.committed and hub.commit_count(REPO) == 1
    assert result.commit_url == f"{hub.url}/datasets/{REPO}/commit/{result.commit_sha}"
    assert result.verified == result.plan.splits
    files = hub.files(REPO)
    assert {"README.md", "statistics.json", "provenance.json", ".gitattributes"} <= set(files)
    assert files["statistics.json"] == (folder / "statistics.json").read_bytes()
    assert f'load_dataset("{REPO}", "messages")' in files["README.md"].decode()
    for name in CONFIGS:
        remote = datasets.load_dataset(REPO, name, cache_dir=str(tmp_path / "c1"))
        local = datasets.load_dataset(str(folder), name, cache_dir=str(tmp_path / "c2"))
        assert list(remote) == list(local)
        for split in local:
            assert remote[split].features == local[split].features
            assert remote[split].to_list() == local[split].to_list()
        streamed = datasets.load_dataset(REPO, name, streaming=True)
        assert list(streamed["train"]) == local["train"].to_list()


def test_pushing_the_same_data_again_makes_no_commit_and_uploads_nothing(hub, store, tmp_path):
    push_to_hub(export(store, tmp_path / "a"), REPO, backoff=0)
    before = uploaded(hub)
    again = push_to_hub(export(store, tmp_path / "a"), REPO, backoff=0)
    assert not again.committed and again.plan.files == []
    reexported = push_to_hub(export(store, tmp_path / "b"), REPO, backoff=0)  # a fresh export of the same store
    assert not reexported.committed
    assert hub.commit_count(REPO) == 1 and uploaded(hub) == before


def test_append_uploads_only_changed_files_and_deletes_stale_shards(hub, store, tmp_path):
    several = RunOptions(row_group_rows=5, max_shard_bytes=1)  # several shards per split
    out = tmp_path / "out"
    push_to_hub(export(store, out, options=several), REPO, backoff=0)
    first_files = set(hub.files(REPO))
    before = uploaded(hub)
    write_store(store, count=44, personas=22, seed=11, reply_chars=100)
    one = RunOptions(row_group_rows=5)  # one shard per split now
    result = push_to_hub(export(store, out, append=True, options=one), REPO, backoff=0)
    assert result.committed and hub.commit_count(REPO) == 2
    deleted = {f.path for f in result.plan.files if f.action == "delete"}
    assert deleted and deleted <= first_files and not deleted & set(hub.files(REPO))
    assert 0 < uploaded(hub) - before == result.plan.upload_bytes
    local = datasets.load_dataset(str(out / "hf_dataset"), cache_dir=str(tmp_path / "c"))
    assert datasets.load_dataset(REPO, cache_dir=str(tmp_path / "c2"))["train"].to_list() == local["train"].to_list()


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "after_handling": True},
        {"drop_connection": True, "after_handling": True},
        {"status": 500},
        {"status": 412},
        {"status": 429, "retry_after": 0},
    ],
    ids=[
        "lost_response_500",
        "lost_response_dropped",
        "server_error_before_commit",
        "parent_conflict",
        "rate_limited",
    ],
)
def test_commit_faults_end_in_exactly_one_commit(hub, store, tmp_path, fault):
    folder = export(store, tmp_path / "out")
    hub.inject(method="POST", path_regex=r"/commit/", **fault)
    result = push_to_hub(folder, REPO, backoff=0)
    assert result.committed and hub.commit_count(REPO) == 1
    assert result.verified == result.plan.splits


def test_upload_faults_are_retried_by_the_client(hub, store, tmp_path):
    folder = export(store, tmp_path / "out")
    hub.inject(method="POST", path_regex=r"/preupload/", status=429, retry_after=0)
    hub.inject(method="POST", path_regex=r"/info/lfs/objects/batch", status=500)
    assert push_to_hub(folder, REPO, backoff=0).committed and hub.commit_count(REPO) == 1


def test_a_concurrent_commit_is_replanned_not_overwritten(hub, store, tmp_path):
    from huggingface_hub import HfApi

    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, backoff=0)
    HfApi().upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.md", repo_id=REPO, repo_type="dataset")
    write_files(store, [make_interaction(1, persona="persona_x")])
    hub.inject(method="POST", path_regex=r"/commit/", status=412)
    result = push_to_hub(export(store, tmp_path / "out"), REPO, backoff=0)
    assert result.committed and hub.commit_count(REPO) == 3
    assert hub.files(REPO)["NOTES.md"] == b"notes"


def test_dry_run_uploads_nothing(hub, store, tmp_path, capsys):
    export(store, tmp_path / "out")
    assert main(["push", "--repo", REPO, "--output", str(tmp_path / "out"), "--dry-run", "-q"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:3] == [
        f"create dataset repo {REPO} (revision main, public (the Hub's default))",
        "  token: test-user (write)",
        "  license: none set; pass --license with an identifier from https://huggingface.co/docs/hub/repositories-licenses",
    ]
    assert lines[3].startswith("  language: en, ") and lines[4].startswith("  add    README.md (")
    assert "  config full: train " in out and out.endswith("dry run: nothing was uploaded\n")
    assert hub.count_requests("POST", r"/api/repos/create") == 0 and uploaded(hub) == 0


def test_push_options_are_one_object_and_a_misspelt_one_is_an_error(hub, store, tmp_path):
    from personagym_hf.hub import PushOptions

    folder = export(store, tmp_path / "out")
    by_keyword = push_to_hub(folder, REPO, private=True, dry_run=True)
    as_object = push_to_hub(folder, REPO, PushOptions(private=True, dry_run=True))
    assert by_keyword.plan.describe() == as_object.plan.describe()
    assert "private" in by_keyword.plan.describe().splitlines()[0]
    with pytest.raises(TypeError, match="dry_rn"):
        push_to_hub(folder, REPO, dry_rn=True)
    assert hub.count_requests("POST", r"/api/repos/create") == 0 and uploaded(hub) == 0


def test_secrets_block_the_push_unless_allowed(hub, tmp_path):
    record = make_interaction(1)
    fake_key = _Maker(1).openai_legacy()  # made up from parts, so token scanners leave the repo alone
    record["messages"][1]["content"] = f"use the key {fake_key} for that"
    folder = export(write_files(tmp_path / "s", [record]), tmp_path / "out", split=False)
    with pytest.raises(PushError) as raised:
        push_to_hub(folder, REPO)
    message = str(raised.value)
    assert message.startswith(f"refusing to push: 3 strings in {folder} look like secrets (3 openai_api_key)")
    assert (
        "data/full/train-00000-of-00001.parquet, row 0 (sample sample_persona_001_0001), full_conversation[].content: "
        f"openai_api_key (sk-{fake_key[3:6]}…[51 chars], sha256 {digest(fake_key)[:12]})" in message
    )
    assert fake_key not in message
    assert uploaded(hub) == 0 and hub.count_requests("POST", r"/api/repos/create") == 0
    assert push_to_hub(folder, REPO, allow_secrets=True, backoff=0).committed


def test_private_is_applied_on_create_and_on_an_existing_repo(hub, store, tmp_path):
    from huggingface_hub import HfApi

    folder = export(store, tmp_path / "out")
    assert push_to_hub(folder, REPO, private=False, backoff=0).plan.notices == []
    assert HfApi().repo_info(REPO, repo_type="dataset").private is False
    result = push_to_hub(folder, REPO, private=True, backoff=0)
    assert HfApi().repo_info(REPO, repo_type="dataset").private is True
    assert result.plan.notices == [f"{REPO} was public; made it private"] and not result.committed
    assert push_to_hub(folder, REPO, private=False, backoff=0).plan.notices == [f"{REPO} was private; made it public"]


def test_user_card_sections_survive_a_repush(hub, store, tmp_path):
    from huggingface_hub import DatasetCard, HfApi

    push_to_hub(export(store, tmp_path / "out"), REPO, backoff=0)
    card = DatasetCard(hub.files(REPO)["README.md"].decode())
    card.data["annotations_creators"] = ["machine-generated"]
    card.text = "My intro, written by hand.\n\n" + card.text + "\n## Citation\n\nCite us, please.\n"
    HfApi().upload_file(
        path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=REPO, repo_type="dataset"
    )
    write_files(store, [make_interaction(1, persona="persona_y")])
    push_to_hub(export(store, tmp_path / "out"), REPO, backoff=0)
    after = DatasetCard(hub.files(REPO)["README.md"].decode())
    assert after.text.startswith("My intro, written by hand.\n\n<!-- personagym-hf:generated:start -->")
    assert after.text.rstrip().endswith("## Citation\n\nCite us, please.")
    assert after.data["annotations_creators"] == ["machine-generated"]
    assert [c["config_name"] for c in after.data["configs"]] == CONFIGS
    assert len(after.data["dataset_info"]) == len(CONFIGS)
    assert "**41** samples" in after.text


def test_create_pr_leaves_the_branch_alone(hub, store, tmp_path):
    from huggingface_hub import HfApi

    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, backoff=0, verify=False)
    write_files(store, [make_interaction(1, persona="persona_z")])
    head = hub.head(REPO, "main")
    result = push_to_hub(export(store, tmp_path / "out"), REPO, create_pr=True, backoff=0)
    assert result.committed and hub.head(REPO, "main") == head
    refs = HfApi().list_repo_refs(REPO, repo_type="dataset", include_pull_requests=True)
    assert [ref.ref for ref in refs.pull_requests] == ["refs/pr/1"]


def test_cli_push_exports_then_pushes_and_never_shows_the_token(hub, store, tmp_path, capsys, caplog):
    token = "hf_" + "T0kenValue" * 4
    with caplog.at_level(logging.DEBUG):
        code = main(
            [
                "push",
                "--repo",
                REPO,
                "--interactions",
                str(store),
                "--output",
                str(tmp_path / "out"),
                "--token",
                token,
                "-q",
                "--private",
            ]
        )
    assert code == 0
    out, err = capsys.readouterr()
    assert f"committed: {hub.url}/datasets/{REPO}/commit/" in out
    assert "verified at " in out and "features match" in out
    assert token not in out + err + caplog.text
    assert all(token.encode() not in content for content in hub.files(REPO).values())
    assert all(token not in p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_card_command_renders_with_the_repo_id(store, tmp_path, capsys):
    export(store, tmp_path / "out")
    assert main(["card", "--output", str(tmp_path / "out"), "--repo", REPO]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and f'load_dataset("{REPO}")' in out
    assert (
        json.loads((tmp_path / "out" / "hf_dataset" / "provenance.json").read_text())["generator"] == "personagym-hf"
    )


def test_revision_pushes_to_a_new_branch_and_leaves_main_alone(hub, store, tmp_path):
    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, backoff=0, verify=False)
    main_head = hub.head(REPO, "main")
    write_files(store, [make_interaction(1, persona="persona_dev")])
    result = push_to_hub(export(store, tmp_path / "out"), REPO, revision="dev", backoff=0)
    assert result.committed and hub.head(REPO, "main") == main_head
    assert hub.head(REPO, "dev") == result.commit_sha
    statistics = json.loads(hub.files(REPO, "dev")["statistics.json"])
    assert statistics["total_samples"] == 41


def plan_lines(out: str) -> list[str]:
    """The plan's lines without the per-file ones (their sizes depend on the export)."""
    return [line for line in out.splitlines() if not line.startswith(("  add ", "  update ", "  delete "))]


NO_TOKEN = "no Hub token found; pass --token, set HF_TOKEN or run `hf auth login`"


def test_dry_run_without_a_token_says_so_and_does_not_call_a_private_repo_new(
    hub, store, tmp_path, capsys, monkeypatch
):
    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, private=True, backoff=0, verify=False)
    monkeypatch.delenv("HF_TOKEN")
    capsys.readouterr()
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 1
    out, err = capsys.readouterr()
    assert plan_lines(out)[:2] == [
        f"create dataset repo {REPO} (revision main, public (the Hub's default)), or update it if it is private: "
        "without a token the Hub shows no private repo",
        "  token: none found",
    ]
    assert out.endswith("dry run: nothing was uploaded\n")
    assert err == f"personagym-hf push: error: the push would fail: {NO_TOKEN}\n"
    assert hub.commit_count(REPO) == 1


def test_dry_run_with_a_token_says_update_and_who(hub, store, tmp_path, capsys):
    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, private=True, backoff=0, verify=False)
    write_files(store, [make_interaction(1, persona="persona_new")])
    export(store, tmp_path / "out")
    capsys.readouterr()
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q"]) == 0
    out, err = capsys.readouterr()
    assert plan_lines(out)[:2] == [
        f"update dataset repo {REPO} (revision main, private)",
        "  token: test-user (write)",
    ]
    assert err == ""


def test_dry_run_with_a_refused_token_plans_anonymously_and_says_so(hub, store, tmp_path, capsys):
    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, backoff=0, verify=False)
    hub.tokens.invalid.add("hf_expired")
    capsys.readouterr()
    assert main(["push", "--repo", REPO, "--data", str(folder), "--dry-run", "-q", "--token", "hf_expired"]) == 1
    out, err = capsys.readouterr()
    assert [plan_lines(out)[index] for index in (0, 1, 4)] == [
        f"update dataset repo {REPO} (revision main, public)",
        "  token: refused by the Hub (401)",
        "  nothing to upload: the repo already holds this data",
    ]
    assert err == (
        "personagym-hf push: error: the push would fail: the Hub refused the token (401: invalid or expired); "
        "pass another --token or run `hf auth login`\n"
    )


@pytest.mark.parametrize(
    "token, message",
    [
        (None, NO_TOKEN),
        (
            "hf_reader",
            "the token of test-user can only read; pass a token with write access (--token or `hf auth login`)",
        ),
    ],
    ids=["no_token", "read_only"],
)
def test_push_that_cannot_authenticate_stops_before_uploading(
    hub, store, tmp_path, capsys, monkeypatch, token, message
):
    folder = export(store, tmp_path / "out")
    monkeypatch.delenv("HF_TOKEN")
    hub.tokens.read_only.add("hf_reader")
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q", *(["--token", token] if token else [])]) == 1
    assert capsys.readouterr().err == f"personagym-hf push: error: cannot push: {message}\n"
    assert uploaded(hub) == 0 and hub.count_requests("POST", r"/api/repos/create") == 0


def test_a_private_push_with_only_token_given_verifies(hub, store, tmp_path, capsys, monkeypatch):
    folder = export(store, tmp_path / "out")
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q", "--private", "--token", "hf_only_here"]) == 0
    assert "features match" in capsys.readouterr().out


def test_quiet_push_on_a_terminal_draws_no_bars_and_still_shows_the_visibility_notice(hub, store, tmp_path):
    import os
    import sys
    from pathlib import Path

    from terminal import run_with_terminal_stderr, with_progress_bars

    folder = export(store, tmp_path / "out")
    push_to_hub(folder, REPO, private=False, backoff=0, verify=False)
    write_files(store, [make_interaction(1, persona="persona_q")])
    export(store, tmp_path / "out")
    done = run_with_terminal_stderr(
        [sys.executable, "-m", "personagym_hf", "push", "--repo", REPO, "--data", str(folder), "-q", "--private"],
        env=with_progress_bars(dict(os.environ)),
        cwd=str(Path(__file__).parents[2]),
    )
    assert done.returncode == 0, done.terminal
    assert done.terminal == ""
    assert f"{REPO} was public; made it private\n" in done.stdout
    assert "features match" in done.stdout and hub.commit_count(REPO) == 2


def test_secrets_in_json_columns_block_the_push_too(hub, tmp_path):
    fake_key = _Maker(2).huggingface()  # made up from parts, so token scanners leave the repo alone
    record = make_interaction(1, persona_features={"role": "engineer", "notes": f"token {fake_key}"})
    folder = export(write_files(tmp_path / "s", [record]), tmp_path / "out", split=False)
    with pytest.raises(PushError) as raised:
        push_to_hub(folder, REPO)
    places = [line.strip() for line in str(raised.value).splitlines()[1:-1]]
    assert places == [
        f"data/{config}/train-00000-of-00001.parquet, row 0 (sample sample_persona_001_0001), persona_features: "
        f"huggingface_token ({fake_key[:6]}…[37 chars], sha256 {digest(fake_key)[:12]})"
        for config in ["full", "last_turn", "messages", "query_rewrite"]
    ] + [
        "data/rewrite/train-00000-of-00001.parquet, row 0 (sample sample_persona_001_0001), prompt[].content: "
        f"huggingface_token ({fake_key[:6]}…[37 chars], sha256 {digest(fake_key)[:12]})"
    ]
    assert uploaded(hub) == 0


def test_the_push_describes_itself_as_its_dry_run_did(hub, store, tmp_path, capsys):
    folder = export(store, tmp_path / "out")
    for flags in (["--private"], []):  # a new repo, then an existing one
        assert main(["push", "--repo", REPO, "--data", str(folder), "-q", "--dry-run", *flags]) == 0
        planned = capsys.readouterr().out.splitlines()
        assert main(["push", "--repo", REPO, "--data", str(folder), "-q", *flags]) == 0
        done = capsys.readouterr().out.splitlines()
        assert done[: len(planned) - 1] == planned[:-1]  # all but "dry run: nothing was uploaded"
        write_files(store, [make_interaction(1, persona="persona_again")])
        export(store, tmp_path / "out")
    assert planned[0] == f"update dataset repo {REPO} (revision main, private)"


def test_push_counts_of_one_are_singular(hub, tmp_path, capsys):
    from huggingface_hub import HfApi

    folder = export(write_files(tmp_path / "s", [make_interaction(1)]), tmp_path / "out", split=False)
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  config full: train 1 row" in out
    assert out[-1].endswith(
        ": full 1 row, minimal 1 row, messages 1 row, last_turn 1 row, query_rewrite 1 row, rewrite 1 row; "
        "features match"
    )
    title = HfApi().list_repo_commits(REPO, repo_type="dataset")[0].title
    assert title == f"Upload dataset ({len(hub.files(REPO)) - 1} files) with personagym-hf"
    record = make_interaction(2, persona="persona_k")
    record["messages"][1]["content"] = "key " + _Maker(3).openai_legacy()
    folder = export(write_files(tmp_path / "k", [record]), tmp_path / "k_out", split=False, hf_dataset=True)
    for config in ("messages", "last_turn"):  # leave one config that holds the key
        (folder / "data" / config).rename(tmp_path / config)
    with pytest.raises(PushError, match=r"^refusing to push: 1 string in .* looks like secrets \(1 openai_api_key\) "
                       "and is not accepted:\n"):  # fmt: skip
        push_to_hub(folder, REPO)


def test_push_draws_no_progress_bar_when_stderr_is_not_a_terminal(hub, store, tmp_path):
    import os
    import subprocess
    import sys

    from terminal import BAR, with_progress_bars

    folder = export(store, tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-m", "personagym_hf", "push", "--repo", REPO, "--data", str(folder)],
        capture_output=True,
        text=True,
        env=with_progress_bars(dict(os.environ)),
    )
    assert done.returncode == 0, done.stderr
    assert not BAR.search(done.stderr), done.stderr
    assert "features match" in done.stdout


def test_a_re_export_in_the_other_layout_plans_the_deletes_of_what_it_no_longer_has(hub, store, tmp_path):
    out = tmp_path / "out"
    push_to_hub(export(store, out), REPO, backoff=0)
    pushed = set(hub.files(REPO))
    plan = push_to_hub(export(store, out, split=False), REPO, backoff=0, dry_run=True).plan
    deleted = sorted(f.path for f in plan.files if f.action == "delete")
    assert deleted == sorted(p for p in pushed if p.startswith("data/") and "/train-" not in p)
    assert deleted and all("/validation-" in p or "/test-" in p for p in deleted)


def test_a_grid_export_pushes_and_verifies_every_split(hub, tmp_path):
    """`split_by: grid`'s extra splits are files, YAML entries and `dataset_info` splits like the others: the push
    sends them, verifies them, and `datasets` loads them back from the repo."""
    from shaped import write_shaped_store

    store = write_shaped_store(tmp_path / "shaped", personas=40, queries=8, per_persona=2)
    cfg = parse_config({"training_data": {"split_by": "grid"}})
    export_store(store, tmp_path / "out", cfg, TrainingDataCollector().interaction_to_training_sample)
    folder = tmp_path / "out" / "hf_dataset"
    result = push_to_hub(folder, REPO, backoff=0)
    assert result.committed and result.verified == result.plan.splits
    assert {"test_unseen_persona", "test_unseen_query"} <= set(result.verified["full"])
    assert "data/full/test_unseen_persona-00000-of-00001.parquet" in hub.files(REPO)
    remote = datasets.load_dataset(REPO, "full", cache_dir=str(tmp_path / "c1"))
    local = datasets.load_dataset(str(folder), "full", cache_dir=str(tmp_path / "c2"))
    assert {split: remote[split]["sample_id"] for split in remote} == {
        split: local[split]["sample_id"] for split in local
    }
