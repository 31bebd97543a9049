"""Whole exports of two checkouts of personagym-hf, back to back on one store: time, CPU, peak RSS, output size.

    python scripts/bench_ab.py --a /path/to/old/checkout --b . --store STORE [--rounds 3] [-- EXPORT OPTIONS]

Each round exports with A, then with B (alternating, so a machine whose speed drifts shifts both alike), each in a
process of its own run as `python -m personagym_hf export` with PYTHONPATH set to the checkout (as `golden.py`
does), from a working folder outside both checkouts. Prints every run, then per checkout the median and the range of
wall time, CPU time (user + system of the export and its workers), peak RSS (the largest single process) and the
size on disk of the export and of its `hf_dataset/`, and last the rounds' ratios of B's wall time to A's: their
median, in how many rounds B was faster, and their range. Options after `--` go to both exports (e.g. `--no-audit`,
`--num-proc 2`, `--split-by grid`).

On a shared machine one round says little: give the same checkout as A and B first (an A/A run) to see how far
apart two runs of the same code fall that day, and judge a change by many rounds' ratios, not by one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def export(code: Path, store: str, out: Path, extra: list[str], work: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    # No dirty page left from the run before (GBs of output): the kernel would write them back during this one,
    # throttling its writes (as `bench.settle_disk`).
    os.sync()
    command = [sys.executable, "-m", "personagym_hf", "export", "--interactions", store, "--output", str(out), "-q"]
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    process = subprocess.Popen([*command, *extra], env=env, cwd=work, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the export of {code} failed (exit {os.waitstatus_to_exitcode(status)})")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    hf = sum(p.stat().st_size for p in (out / "hf_dataset").rglob("*") if p.is_file())
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,  # the export and the workers it waited for
        "rss": usage.ru_maxrss / 1024,
        "disk": size / 1e6,
        "hf_dataset": hf / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, type=Path, help="the first checkout (e.g. the commit before a change)")
    parser.add_argument("--b", required=True, type=Path, help="the second checkout")
    parser.add_argument("--store", required=True, help="the interaction store both export")
    parser.add_argument("--rounds", type=int, default=3)
    args, extra = parser.parse_known_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected an integer >= 1, got {args.rounds}")
    extra = [arg for arg in extra if arg != "--"]
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="bench_ab_") as tmp:
        work = Path(tmp)
        for number in range(args.rounds):
            for name, code in (("A", args.a.resolve()), ("B", args.b.resolve())):
                run = export(code, str(Path(args.store).resolve()), work / f"out-{name}", extra, work)
                runs[name].append(run)
                load = os.getloadavg()[0]
                print(f"round {number + 1} {name}: wall {run['wall']:.2f} s, cpu {run['cpu']:.2f} s, peak RSS "
                      f"{run['rss']:.0f} MB, export {run['disk']:.1f} MB (hf_dataset/ {run['hf_dataset']:.1f} MB); "
                      f"load {load:.1f}", flush=True)  # fmt: skip
    for name, code in (("A", args.a), ("B", args.b)):
        figures = []
        for key, unit in (("wall", "s"), ("cpu", "s"), ("rss", "MB")):
            values = [run[key] for run in runs[name]]
            figures.append(f"{key} {statistics.median(values):.2f} {unit} ({min(values):.2f}-{max(values):.2f})")
        last = runs[name][-1]
        print(f"{name} ({code}): " + ", ".join(figures) + f", export {last['disk']:.1f} MB, hf_dataset/ "
              f"{last['hf_dataset']:.1f} MB")  # fmt: skip
    print(ratio_line([run["wall"] for run in runs["A"]], [run["wall"] for run in runs["B"]]))


def ratio_line(a: list[float], b: list[float]) -> str:
    """The rounds' ratios of B's wall time to A's: their median, how many rounds B was faster in, their range."""
    ratios = [after / before for before, after in zip(a, b)]
    faster = sum(ratio < 1 for ratio in ratios)
    return (
        f"B/A wall, median of the rounds' ratios: {statistics.median(ratios):.3f} (B faster in {faster} of "
        f"{len(ratios)} rounds; each {min(ratios):.3f}-{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
