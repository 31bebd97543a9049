"""Every request of a push has a timeout: a Hub that accepts connections and never answers ends the push in a
bounded time with one line, and a request that hangs once is retried."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exporting import export_store
from hub_server import SilentServer

from personagym_hf import TrainingDataCollector
from personagym_hf.config import parse_config
from personagym_hf.hub.connection import HubUnreachableError
from personagym_hf.hub.push import push_to_hub
from personagym_hf.testing.synth import write_store

ROOT = Path(__file__).parents[2]
REPO = "alice/personagym"


def requests_seen(server: SilentServer) -> list[str]:
    """The requests of the push (huggingface_hub's own start-up lookup of AI agent names left out)."""
    return [line for line in server.request_lines if "/api/agent-harnesses" not in line]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("timeouts")
    store = write_store(base / "interactions", count=8, personas=4, seed=3, reply_chars=40)
    export_store(store, base / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return base / "out" / "hf_dataset"


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def line(url: str, seconds: str) -> str:
    return f"cannot reach {url} (no answer within {seconds} s): try again later, or pass a longer --timeout"


def test_cli_push_to_a_hub_that_never_answers_ends_in_bounded_time_with_one_line(folder, silent):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "personagym_hf", "push", "--repo", REPO, "--data", str(folder), "-q"]
        + ["--timeout", "1", "--retries", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_ENDPOINT": silent.url},
        timeout=60,  # without a timeout on every request this run never ends
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"personagym-hf push: error: {line(silent.url, '1')}\n"
    # 2 attempts of 1 s with 1 s between them, plus huggingface_hub's own start-up lookup (3 s at most)
    assert elapsed < 20
    assert requests_seen(silent) == ["GET /api/whoami-v2 HTTP/1.1"] * 2  # the first request of a push


def test_reads_are_retried_a_bounded_number_of_times(folder, silent, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", silent.url)
    started = time.monotonic()
    with pytest.raises(HubUnreachableError, match=f"^{re.escape(line(silent.url, '0.5'))}$"):
        push_to_hub(folder, REPO, timeout=0.5, max_attempts=3, backoff=0)
    assert time.monotonic() - started < 3 + 3 * 0.5 + 5
    assert requests_seen(silent) == ["GET /api/whoami-v2 HTTP/1.1"] * 3


@pytest.mark.parametrize(
    "method, path_regex",
    [("POST", r"/commit/"), ("GET", r"/api/datasets/[^/]+/[^/]+/revision/"), ("PUT", r"/lfs-upload/")],
    ids=["commit", "repo_info", "lfs_put"],
)
def test_a_request_that_hangs_once_is_retried_and_the_push_makes_one_commit(hub, folder, method, path_regex):
    fault = hub.inject(method=method, path_regex=path_regex, hang=True)
    started = time.monotonic()
    result = push_to_hub(folder, REPO, timeout=1, backoff=0, verify=False)
    assert fault.hits == 1
    assert result.committed and hub.commit_count(REPO) == 1
    assert time.monotonic() - started < 15
