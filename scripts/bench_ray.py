"""Ray's fixed costs on this machine, for `export --engine ray`: start-up, a task's round trip, small tasks per second,
a two-node cluster's start and the driver's memory.

Ray listens on the node's address and probes outside addresses, so this runs only in a loopback-only network
namespace, with the tests' setup (`tests/ray_support.py`: every Ray folder in a temp folder, usage stats off):

    unshare -n sh -c 'ip link set lo up && .venv/bin/python scripts/bench_ray.py --rounds 3'
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import ray_support  # noqa: E402  (sets RAY_ENV before ray is imported)


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text(encoding="ascii")
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def ray_processes_mb() -> tuple[float, float, int]:
    """The RSS of the running Ray instance's processes but the driver (summed: pages they share count in each), of
    its task workers among them, and how many workers there are (psutil comes with the test extra)."""
    import psutil

    total, workers, count = 0, 0, 0
    for child in psutil.Process().children(recursive=True):
        rss = child.memory_info().rss
        total += rss
        title = (child.cmdline() or [""])[0]  # a worker renames itself ray::IDLE, ray::<task>; the agents too
        if title.startswith("ray::") and not title.endswith("Agent"):
            workers += rss
            count += 1
    return total / 2**20, workers / 2**20, count


def one_round(root: Path, small_tasks: int) -> dict[str, float]:
    import ray

    folders = ray_support.RayFolders(root)
    folders.make()
    runtime = ray_support.RayRuntime(folders)
    figures = {}
    start = time.perf_counter()
    runtime.local()
    figures["ray.init (2 CPUs)"] = time.perf_counter() - start
    figures["driver RSS after init (MB)"] = rss_mb()

    @ray.remote
    def empty() -> None:
        return None

    @ray.remote
    def small(x: int) -> int:
        return x + 1

    @ray.remote
    def blob(size: int) -> bytes:
        return bytes(size)

    start = time.perf_counter()
    ray.get(empty.remote(), timeout=60)
    figures["first empty task (ms)"] = (time.perf_counter() - start) * 1000
    trips = []
    for _ in range(50):
        start = time.perf_counter()
        ray.get(empty.remote(), timeout=60)
        trips.append(time.perf_counter() - start)
    figures["empty task round trip, median of 50 (ms)"] = statistics.median(trips) * 1000
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        assert ray.get([small.remote(i) for i in range(small_tasks)], timeout=120) == list(range(1, small_tasks + 1))
        rates.append(small_tasks / (time.perf_counter() - start))
    figures[f"{small_tasks} small tasks, best of 3 (tasks/s)"] = max(rates)
    # a chunk's encoded rows are a few MB: what a task that hands them back through the object store costs
    trips = []
    for _ in range(10):
        start = time.perf_counter()
        assert len(ray.get(blob.remote(8 * 2**20), timeout=60)) == 8 * 2**20
        trips.append(time.perf_counter() - start)
    figures["task returning 8 MiB of bytes, median of 10 (ms)"] = statistics.median(trips) * 1000
    figures["driver RSS after the tasks (MB)"] = rss_mb()
    total, workers, count = ray_processes_mb()
    figures["Ray's other processes, RSS (MB)"] = total
    figures["  of which task workers (MB)"] = workers
    figures["  task workers"] = count
    start = time.perf_counter()
    runtime.stop()
    figures["ray.shutdown"] = time.perf_counter() - start
    start = time.perf_counter()
    runtime.cluster()
    figures["2-node Cluster start + connect, 1 CPU each"] = time.perf_counter() - start
    figures["2-node Cluster, Ray's processes RSS (MB)"] = ray_processes_mb()[0]
    runtime.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh runtimes to measure (each in this process)")
    parser.add_argument("--small-tasks", type=int, default=100)
    args = parser.parse_args(argv)
    reason = ray_support.ray_unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    import os

    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as root:
        os.environ.update(RAY_TMPDIR=root, HOME=f"{root}/home", TMPDIR=f"{root}/tmp")
        start = time.perf_counter()
        import ray  # noqa: F401

        import_seconds = time.perf_counter() - start
        for number in range(args.rounds):
            rounds.append(one_round(Path(root), args.small_tasks))
            print(f"round {number + 1} done", file=sys.stderr)
    print(f"| figure | {' | '.join(f'round {n + 1}' for n in range(args.rounds))} |")
    print(f"|---|{'---|' * args.rounds}")
    print(f"| import ray (s) | {import_seconds:.2f} |{' |' * (args.rounds - 1)}")
    for name in rounds[0]:
        unit = "" if "(" in name or name.endswith("workers") else " (s)"
        print(f"| {name}{unit} | {' | '.join(f'{figures[name]:.2f}' for figures in rounds)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
