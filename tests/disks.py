"""Small disks to fill: a tmpfs of a given size (root and mount needed; the test is skipped elsewhere)."""

import subprocess
from pathlib import Path

import pytest


def mounted_tmpfs(folder: Path, size: str):
    """A tmpfs of `size` at `folder` (needs root and mount; skipped where the machine does not allow it)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)
