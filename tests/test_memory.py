"""What an export gives back to the system (`personagym_hf.memory`), shown in a process of its own: glibc's
thresholds fixed by `release_freed_memory` (unless the user set them), the heap trimmed by `trim_heap`, and the
export trimming it before its end."""

import os
import subprocess
import sys

import pytest

from personagym_hf.memory import _glibc

# A 20 MB block allocated and freed twice: the first is a mapping of its own, after which glibc's own rule raises
# its thresholds to 20 MB (mapping) and 40 MB (trim), so the second comes from the heap and stays when freed —
# unless the thresholds are fixed first, or the heap is trimmed after.
FREED_TWICE = """
import os, sys
from personagym_hf.memory import release_freed_memory, trim_heap
fixed = release_freed_memory() if sys.argv[1] == "fix" else None
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
block = bytearray(20 << 20)
del block
before = rss()
block = bytearray(20 << 20)  # written: its pages are in the process
del block
trimmed = trim_heap() if sys.argv[1] == "trim" else None
print(fixed, trimmed, (rss() - before) >> 20)
"""


glibc_only = pytest.mark.skipif(_glibc() is None, reason="the thresholds and the trim are glibc's")


def kept_after_free(how: str, env: dict | None = None) -> list[str]:
    """(thresholds fixed?, heap trimmed?, MB the second block left in the process)"""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run(
        [sys.executable, "-c", FREED_TWICE, how], capture_output=True, text=True, env=child_env | (env or {})
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@glibc_only
def test_glibc_keeps_a_freed_big_block_by_its_own_rule():
    fixed, trimmed, kept = kept_after_free("leave")
    assert (fixed, trimmed) == ("None", "None") and int(kept) >= 19


@glibc_only
def test_freed_big_blocks_go_back_to_the_system_once_the_thresholds_are_fixed():
    assert kept_after_free("fix") == ["True", "None", "0"]


@glibc_only
def test_a_trim_gives_the_freed_block_back():
    fixed, trimmed, kept = kept_after_free("trim")
    assert (fixed, trimmed, int(kept) <= 1) == ("None", "True", True)


@glibc_only
@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TRIM_THRESHOLD_": "1000000"},
        {"MALLOC_MMAP_THRESHOLD_": "1000000"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000"},
    ],
)
def test_thresholds_the_user_set_are_kept(env):
    assert kept_after_free("fix", env)[0] == "False"


def test_an_export_trims_the_heap_before_its_end(tmp_path, monkeypatch):
    """The export's pass is over, the audit's comparison and the card are to come: the peak is there, 14 MB lower at
    20k and 31 MB at 100k with the heap trimmed first (docs/performance.md)."""
    from personagym_hf.measure.leakage import LeakageAudit
    from personagym_hf.write import exporter

    calls = []
    monkeypatch.setattr(exporter, "trim_heap", lambda: calls.append("trim_heap"))
    compare = LeakageAudit.to_dict
    monkeypatch.setattr(LeakageAudit, "to_dict", lambda self: calls.append("audit") or compare(self))
    from personagym_hf.cli.main import main

    assert main(["export", "--demo", "--output", str(tmp_path / "out"), "-q"]) == 0
    assert calls == ["trim_heap", "audit"]
