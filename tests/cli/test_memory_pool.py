"""`export` takes Arrow's buffers from jemalloc (cli.common.use_jemalloc), unless the user chose a pool."""

import os
import subprocess
import sys

import pytest

EXPORT_THEN_POOL = """
import sys
from personagym_hf.cli.main import main
code = main(["export", "--demo", "--output", sys.argv[1], "-q", *sys.argv[2:]])
import pyarrow as pa
print(code, pa.default_memory_pool().backend_name)
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="jemalloc is chosen on Linux only")


def pool_after_export(tmp_path, env: dict, *options: str) -> str:
    child_env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    command = [sys.executable, "-c", EXPORT_THEN_POOL, str(tmp_path / "out"), *options]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning from Arrow about the pool
    return done.stdout.split()[-2:]


def test_an_export_process_uses_jemalloc(tmp_path):
    assert pool_after_export(tmp_path, {}) == ["0", "jemalloc"]


def test_an_export_with_worker_processes_keeps_the_default_pool(tmp_path):
    """Its workers are forked: jemalloc's fork handlers hung 2 exports in 50 that a SIGTERM reached while forking."""
    default = subprocess.run(
        [sys.executable, "-c", "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"},
    ).stdout.strip()
    assert pool_after_export(tmp_path, {}, "--num-proc", "2") == ["0", default]


def test_a_pool_the_user_chose_is_kept(tmp_path):
    assert pool_after_export(tmp_path, {"ARROW_DEFAULT_MEMORY_POOL": "system"}) == ["0", "system"]


def test_nothing_changes_once_pyarrow_is_loaded():
    probe = "import argparse\nimport pyarrow as pa\nfrom personagym_hf.cli.common import use_jemalloc\n"
    probe += "use_jemalloc(argparse.Namespace(num_proc=1, engine='local'))\n"
    probe += "import os\nprint(os.environ.get('ARROW_DEFAULT_MEMORY_POOL'))"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["None"]  # too late to choose: the variable is left alone
