"""A Hub that cannot be reached is one line, for every command and script that talks to it.

Only loopback is ever contacted: "connection refused" is a bound but not listening port on 127.0.0.1, and "name
not resolved" is the resolver's own error raised by a patched `socket.getaddrinfo` (a name under `.invalid` would
still be sent to this machine's DNS server).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.cli.main import main
from personagym_hf.config import parse_config
from personagym_hf.testing.synth import write_store

ROOT = Path(__file__).parents[2]
REPO = "alice/personagym"
UNRESOLVABLE = "https://hub.invalid"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("unreachable")
    store = write_store(base / "interactions", count=8, personas=4, seed=3, reply_chars=40)
    export_store(store, base / "out", parse_config({}), TrainingDataCollector().interaction_to_training_sample)
    return base / "out" / "hf_dataset"


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, never listening (held, so no one else takes it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def no_resolver(monkeypatch) -> None:
    """Names other than loopback fail as an unknown name does, without a DNS query leaving the machine."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def endpoint(monkeypatch):
    """Point the client at another endpoint, as HF_ENDPOINT does (it is read when huggingface_hub is imported)."""
    from huggingface_hub import constants

    def point(url: str) -> str:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        return url

    return point


REFUSED = "cannot reach http://127.0.0.1:{port} (connection refused): check the network or HF_ENDPOINT"
NOT_RESOLVED = f"cannot reach {UNRESOLVABLE} (name not resolved): check the network or HF_ENDPOINT"


@pytest.mark.parametrize("dry_run", [False, True], ids=["push", "dry_run"])
def test_push_to_a_closed_port_is_one_line(folder, closed_port, endpoint, capsys, dry_run):
    endpoint(f"http://127.0.0.1:{closed_port}")
    code = main(["push", "--repo", REPO, "--data", str(folder), "-q", *(["--dry-run"] if dry_run else [])])
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"personagym-hf push: error: {REFUSED.format(port=closed_port)}\n"


@pytest.mark.parametrize("dry_run", [False, True], ids=["push", "dry_run"])
def test_push_to_a_name_that_does_not_resolve_is_one_line(folder, endpoint, monkeypatch, capsys, dry_run):
    endpoint(UNRESOLVABLE)
    no_resolver(monkeypatch)
    code = main(["push", "--repo", REPO, "--data", str(folder), "-q", *(["--dry-run"] if dry_run else [])])
    assert code == 1
    assert capsys.readouterr().err == f"personagym-hf push: error: {NOT_RESOLVED}\n"


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
    )


CLI = "import sys; from personagym_hf.cli.main import main; sys.exit(main(sys.argv[1:]))"
PATCHED = (  # the same resolver failure as no_resolver, in a fresh interpreter
    "import socket, sys, runpy\n"
    "real = socket.getaddrinfo\n"
    "def getaddrinfo(host, *a, **k):\n"
    "    if host not in ('127.0.0.1', '::1', 'localhost'):\n"
    "        raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')\n"
    "    return real(host, *a, **k)\n"
    "socket.getaddrinfo = getaddrinfo\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.mark.parametrize("dry_run", [False, True], ids=["push", "dry_run"])
def test_offline_mode_is_one_line(folder, dry_run):
    done = run_python(
        CLI,
        "push",
        "--repo",
        REPO,
        "--data",
        str(folder),
        "-q",
        *(["--dry-run"] if dry_run else []),
        HF_HUB_OFFLINE="1",
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"personagym-hf push: error: cannot reach {os.environ['HF_ENDPOINT']} (HF_HUB_OFFLINE is set): "
        "unset HF_HUB_OFFLINE to talk to the Hub\n"
    )


@pytest.fixture
def ppopt_file(tmp_path) -> Path:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"sample_id": "s1", "persona_id": "p", "persona_features": {}, "variant": "styled", "query": "q", '
        '"noise_type": "none", "applied_strategies": [], "original_query": "Q"}\n',
        encoding="utf-8",
    )
    return path


def upload_script(file: Path, **env: str) -> subprocess.CompletedProcess:
    script = str(ROOT / "scripts" / "upload_hf_dataset.py")
    return run_python(PATCHED, script, "--file", str(file), "--repo", "bob/pp", **env)


def test_upload_script_to_a_closed_port_is_one_line(ppopt_file, closed_port):
    done = upload_script(ppopt_file, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}")
    assert done.returncode == 1
    assert done.stderr == f"upload_hf_dataset: error: {REFUSED.format(port=closed_port)}\n"


def test_upload_script_to_a_name_that_does_not_resolve_is_one_line(ppopt_file):
    done = upload_script(ppopt_file, HF_ENDPOINT=UNRESOLVABLE)
    assert done.returncode == 1
    assert done.stderr == f"upload_hf_dataset: error: {NOT_RESOLVED}\n"


def test_upload_script_offline_is_one_line(ppopt_file):
    done = upload_script(ppopt_file, HF_HUB_OFFLINE="1")
    assert done.returncode == 1
    assert done.stderr == (
        f"upload_hf_dataset: error: cannot reach {os.environ['HF_ENDPOINT']} (HF_HUB_OFFLINE is set): "
        "unset HF_HUB_OFFLINE to talk to the Hub\n"
    )


def test_card_with_a_repo_id_does_not_talk_to_the_hub(folder, closed_port, endpoint, capsys):
    endpoint(f"http://127.0.0.1:{closed_port}")
    assert main(["card", "--data", str(folder), "--repo", REPO]) == 0
    assert f'load_dataset("{REPO}")' in capsys.readouterr().out


def test_upload_script_without_a_token_is_one_line_and_uploads_nothing(hub, ppopt_file):
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "upload_hf_dataset.py"),
            "--file",
            str(ppopt_file),
            "--repo",
            "bob/pp",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "upload_hf_dataset: error: cannot upload: no Hub token found; pass --token, set HF_TOKEN or run "
        "`hf auth login`\n"
    )
    assert hub.count_requests("POST") == 0
