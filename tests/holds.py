"""Signal tests without a race: the run is held at a named instant (`PERSONAGYM_HF_HOLD_AT`, `write.folder.hold`)
until the test's signal ends it, so it cannot finish before the signal arrives, however loaded the machine."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def hold_env(folder: Path, at: str = "chunk") -> dict[str, str]:
    """The environment of a run held at `at`: each process that gets there makes `folder/<at>.<pid>` and waits."""
    folder.mkdir(exist_ok=True)
    return {**os.environ, "PERSONAGYM_HF_HOLD_AT": f"{at}:{folder}"}


def held(folder: Path, count: int, process: subprocess.Popen, at: str = "chunk", timeout: float = 60) -> list[int]:
    """The pids of the `count` processes of `process` held at `at`, once they all are (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while len(markers := sorted(folder.glob(f"{at}.*"))) < count:
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before it reached the hold"
        assert time.monotonic() < deadline, f"{len(markers)} of {count} processes reached the hold in {timeout} s"
        time.sleep(0.01)
    return [int(marker.suffix[1:]) for marker in markers]
