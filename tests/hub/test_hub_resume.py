"""A push stopped half way resumes: the second run sends only what the Hub lacks and makes one commit, and says
how much it reused. Killed for real (SIGKILL while uploads hang), or stopped by a commit that kept failing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exporting import export_store
from terminal import BAR, run_with_terminal_stderr, with_progress_bars

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import parse_config
from personagym_hf.hub.push import push_to_hub
from personagym_hf.testing.synth import write_store

ROOT = Path(__file__).parents[2]
REPO = "alice/personagym"


@pytest.fixture
def folder(tmp_path):
    store = write_store(tmp_path / "s", count=40, personas=20, seed=8, reply_chars=200)
    export_store(store, tmp_path / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return tmp_path / "out" / "hf_dataset"


def parquet_bytes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*.parquet")}


def held(hub) -> int:
    """LFS objects the repo holds (0 before the push has created it)."""
    with hub.state.lock:
        repo = hub.state.repos.get(("dataset", REPO))
        return 0 if repo is None else len(repo.lfs_objects)


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_push_killed_during_its_uploads_resumes_with_the_rest_and_one_commit(hub, folder, capsys, tmp_path):
    shards = parquet_bytes(folder)
    assert len(shards) > 3
    hub.inject(method="PUT", path_regex=r"/lfs-upload/", hang=True, times=1000, skip=3)  # 3 uploads, then silence
    push = subprocess.Popen(
        [sys.executable, "-m", "personagym_hf", "push", "--repo", REPO, "--data", str(folder), "-q"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # a killed push cannot remove its staging folder
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: held(hub) == 3 and hub.count_requests("PUT") > 3, 60)
    finally:
        push.send_signal(signal.SIGKILL)
        push.wait(timeout=30)
    hub.faults.clear()
    hub.release_hung()
    stored = {oid: len(data) for oid, data in hub.repo(REPO).lfs_objects.items()}
    assert len(stored) == 3 and hub.commit_count(REPO) == 0

    before = hub.lfs_bytes_received
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q"]) == 0
    assert hub.commit_count(REPO) == 1
    assert hub.lfs_bytes_received - before == sum(shards.values()) - sum(stored.values())  # only the rest
    out = capsys.readouterr().out
    files = hub.files(REPO)
    inline = sum(len(files[p]) for p in ("README.md", "statistics.json", "provenance.json"))
    sent = sum(shards.values()) - sum(stored.values()) + inline
    assert f"  sent {sent:,} bytes; {sum(stored.values()):,} bytes (3 files) already on the Hub, reused\n" in out


def test_a_push_whose_commit_kept_failing_sends_nothing_again(hub, folder):
    from huggingface_hub.errors import HfHubHTTPError

    hub.inject(method="POST", path_regex=r"/commit/", status=500, times=2)
    with pytest.raises(HfHubHTTPError):
        push_to_hub(folder, REPO, max_attempts=2, backoff=0, verify=False)
    shards = parquet_bytes(folder)
    assert hub.lfs_bytes_received == sum(shards.values()) and hub.commit_count(REPO) == 0
    result = push_to_hub(folder, REPO, backoff=0, verify=False)
    assert result.committed and hub.commit_count(REPO) == 1
    assert hub.lfs_bytes_received == sum(shards.values())  # no shard sent twice
    assert result.upload.reused == sum(shards.values()) and result.upload.reused_files == len(shards)
    assert result.upload.sent == hub.inline_bytes_received  # the card and the JSON files, inline in the commit
    assert result.upload.stored == set(shards)


def test_push_draws_one_bar_over_the_bytes_it_sends_unless_quiet(hub, folder):
    args = [sys.executable, "-m", "personagym_hf", "push", "--repo", REPO, "--data", str(folder), "--no-verify"]
    env = with_progress_bars(dict(os.environ))  # huggingface_hub's own bars would be drawn, if the push let them
    drawn = run_with_terminal_stderr(args, env=env, cwd=str(ROOT))
    assert drawn.returncode == 0, drawn.terminal
    assert "Uploading" in drawn.terminal and BAR.search(drawn.terminal)
    assert "train-00000-of-00001.parquet:" not in drawn.terminal  # no bar per file (huggingface_hub's)
    hub.reset()
    quiet = run_with_terminal_stderr([*args, "-q"], env=env, cwd=str(ROOT))
    assert (quiet.returncode, quiet.terminal) == (0, "")


def test_a_push_of_data_the_hub_holds_says_it_reused_everything(hub, folder, capsys):
    push_to_hub(folder, REPO, backoff=0, verify=False)
    files = {path: len(data) for path, data in hub.files(REPO).items() if path != ".gitattributes"}
    capsys.readouterr()
    assert main(["push", "--repo", REPO, "--data", str(folder), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        f"{REPO} already holds this data: no commit made",
        f"  sent 0 bytes; {sum(files.values()):,} bytes ({len(files)} files) already on the Hub, reused",
    ]
