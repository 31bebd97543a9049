"""Run a command with its stderr on a pseudo-terminal, as a user's shell would, and capture what it drew."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass

BAR = re.compile(r"\r|\d+%\||/s\]|\x1b\[")  # what tqdm draws: carriage returns, "42%|", rates, cursor moves


@dataclass
class TerminalRun:
    returncode: int
    stdout: str
    terminal: str  # everything written to the terminal (stderr), control characters included


def run_with_terminal_stderr(args: list[str], *, env: dict[str, str], cwd: str, timeout: float = 120) -> TerminalRun:
    """`args` with stdout piped and stderr on a pty (so `sys.stderr.isatty()` is true in the child)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, columns: a terminal's size
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal's last writer
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        stdout = process.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return TerminalRun(process.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace"))


def with_progress_bars(env: dict[str, str]) -> dict[str, str]:
    """The environment without the test session's switches that turn the libraries' progress bars off."""
    return {
        k: v for k, v in env.items() if k not in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
    }
