"""Benchmark `personagym-hf export` against reading the store (the floor) and a naive `datasets` script.

Run it from the repository root with the project's venv:

    python scripts/bench.py -n 20000                      # floor, export, naive, --help at N=20000
    python scripts/bench.py -n 20000 --keep --num-proc 2  # reuse the store; also export with 2 processes
    python scripts/bench.py --rss-sweep 50000,200000      # export only: peak RSS at each size
    python scripts/bench.py -n 20000 --keep --steps       # the export's steps one at a time: us per record

The store is synthetic (`personagym_hf.testing.synth.write_store`, N // 20 personas, ~5 KB pretty-printed JSON
per interaction, a quarter noisy) in the upstream per-file layout. Each step runs in a fresh
subprocess, after the store has been read once untimed so every step sees a warm page cache.

Figures: `seconds` is the wall time of the whole subprocess (interpreter start and imports included);
`interactions/s` is N / seconds; `ratio to floor` is seconds / floor seconds; `peak RSS MB` is the child's
`ru_maxrss` from `wait4` (the largest single process of its tree, not a sum over worker processes;
spawned from a bare interpreter, so ~8 MB is the lowest it can read).
  floor   list the files, read each one and parse it with orjson (json if missing), nothing else
  export  `personagym-hf export --interactions STORE --output OUT -q`: every output, all configs
  naive   `Dataset.from_generator` over `interaction_to_sample`, then `to_json` and `to_parquet`
  --help  `personagym-hf --help`, best of 5

`--steps` times the steps of an export one at a time over the store (its first 20,000 files: each step's
output is held in memory), in this process, with the garbage collector off, best of 3: the cost of each
output on its own, with no start-up and no glue. Their sum over read + parse is the least ratio to the
floor that these steps allow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from personagym_hf.store import discover_files
from personagym_hf.testing.synth import write_store

REPLY_CHARS = 1300  # gives a mean file of ~5.2 KB (most files 2.5-8 KB)
DEFAULT_STORE = str(Path(tempfile.gettempdir()) / "bench_store" / "{n}")
STEP_FILES = 20000  # --steps holds every step's output for this many interactions in memory
MARKER = ".bench_store"  # only folders holding it are ever deleted (dot files are not interactions)
CLI = Path(sys.executable).with_name("personagym-hf")
CLI_CMD = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "personagym_hf"]

# Spawns the measured command and reports its wall time and wait4() rusage. A child's ru_maxrss starts at
# the RSS of the process that spawned it, so the spawner is this bare interpreter (~8 MB), not the bench.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""

FLOOR_SCRIPT = """
import os, sys
try:
    from orjson import loads
except ImportError:
    from json import loads
for root, _, names in os.walk(sys.argv[1]):
    for name in names:
        if name.endswith(".json") and name != "index.json":
            with open(os.path.join(root, name), "rb") as f:
                loads(f.read())
"""

NAIVE_SCRIPT = """
import json, sys
from pathlib import Path
import datasets
from personagym_hf.collect import interaction_to_sample
from personagym_hf.schema import FEATURE_SPECS, features
store, out = Path(sys.argv[1]), Path(sys.argv[2])
def generate():
    for path in sorted(store.rglob("*.json")):
        if path.name != "index.json" and not path.name.startswith("token_usage"):
            with path.open(encoding="utf-8") as f:
                yield interaction_to_sample(json.load(f)).to_dict()
ds = datasets.Dataset.from_generator(generate, features=features(FEATURE_SPECS))
ds.to_json(out / "naive.jsonl")
ds.to_parquet(out / "naive.parquet")
"""


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss_mb: float


def prepare_store(template: str, n: int, keep: bool) -> tuple[Path, float]:
    """The store for N interactions (reused with --keep when it holds N files) and its mean file size."""
    store = Path(template.format(n=n))
    files = discover_files(store) if store.is_dir() else []
    if not (keep and len(files) == n):
        remove_store(store)
        print(f"generating {n} interactions in {store} ...", flush=True)
        write_store(store, n, personas=max(1, n // 20), seed=0, reply_chars=REPLY_CHARS)
        (store / MARKER).touch()
        files = discover_files(store)
    else:
        print(f"reusing the store in {store}")
    return store, sum(f.stat().st_size for f in files) / max(1, len(files))


def remove_store(store: Path) -> None:
    if store.exists() and any(store.iterdir()) and not (store / MARKER).exists():
        sys.exit(f"{store} exists and was not made by this script; pick another --store-dir")
    shutil.rmtree(store, ignore_errors=True)


def warm_cache(store: Path) -> None:
    """Read every file once, untimed, so each step starts with the store in the page cache."""
    for path in store.rglob("*"):
        if path.is_file():
            path.read_bytes()


def run_child(name: str, cmd: list[str], store: Path | None, env: dict[str, str] | None = None) -> Step:
    """Run `cmd` in a fresh process via LAUNCHER; its wall time and peak RSS (ru_maxrss of its tree, KiB)."""
    if store is not None:
        warm_cache(store)
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures"
        launcher = [sys.executable, "-S", "-E", "-c", LAUNCHER, str(figures), *cmd]
        if subprocess.run(launcher, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
            log.seek(0)
            sys.exit(f"{name} failed: {' '.join(cmd)}\n{log.read().decode(errors='replace')}")
        seconds, maxrss_kib = figures.read_text().split()
    return Step(name, float(seconds), int(maxrss_kib) / 1024)


def export_step(store: Path, name: str, extra: tuple[str, ...] = ()) -> Step:
    with tempfile.TemporaryDirectory(prefix="bench_export_") as out:
        cmd = [*CLI_CMD, "export", "--interactions", str(store), "--output", out, "-q", *extra]
        return run_child(name, cmd, store)


def naive_step(store: Path) -> Step:
    with tempfile.TemporaryDirectory(prefix="bench_naive_") as out, tempfile.TemporaryDirectory() as cache:
        env = {
            **os.environ,
            "HF_DATASETS_CACHE": cache,
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_OFFLINE": "1",
        }
        return run_child("naive datasets", [sys.executable, "-c", NAIVE_SCRIPT, str(store), out], store, env)


def help_step() -> Step:
    runs = [run_child("--help", [*CLI_CMD, "--help"], None) for _ in range(5)]
    return min(runs, key=lambda step: step.seconds)


def supports_num_proc() -> bool:
    result = subprocess.run([*CLI_CMD, "export", "--help"], capture_output=True, text=True, check=True)
    return "--num-proc" in result.stdout


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    facts = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "load avg (1 min)": f"{os.getloadavg()[0]:.2f}",
    }
    for package in ("datasets", "pyarrow", "orjson"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = "not installed"
    return facts


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def benchmark(args: argparse.Namespace) -> dict:
    store, mean_size = prepare_store(args.store_dir, args.n, args.keep)
    print(f"store: {store} ({args.n} interactions, mean file size {mean_size:,.0f} B = {mean_size / 1024:.2f} KiB)")
    print("page cache: the store is read once, untimed, before every timed step (warm cache)")
    subprocess.run([sys.executable, "-c", "import datasets, pyarrow.parquet"], check=True)  # warm the imports too
    steps = [run_child("floor (read+parse)", [sys.executable, "-c", FLOOR_SCRIPT, str(store)], store)]
    steps.append(export_step(store, "export (1 process)"))
    parallel, two_note = None, "not measured (run with --num-proc 2)"
    if args.num_proc > 1:
        if supports_num_proc():
            parallel = export_step(store, f"export (num_proc {args.num_proc})", ("--num-proc", str(args.num_proc)))
            steps.append(parallel)
        else:
            print("num-proc: not supported by this version")
            two_note = "num-proc not supported by this version"
    naive = None if args.skip_naive else naive_step(store)
    steps += [s for s in (naive, help_step()) if s is not None]
    if not args.keep:
        remove_store(store)

    floor, export, help_ = steps[0], steps[1], steps[-1]
    print(f"\n{'step':<22} {'seconds':>8} {'interactions/s':>15} {'ratio to floor':>15} {'peak RSS MB':>12}")
    for step in steps:
        rate = f"{args.n / step.seconds:,.0f}" if step is not help_ else "-"
        ratio = f"{step.seconds / floor.seconds:.2f}" if step is not help_ else "-"
        print(f"{step.name:<22} {step.seconds:>8.3f} {rate:>15} {ratio:>15} {step.peak_rss_mb:>12.1f}")

    two = parallel if args.num_proc == 2 else None
    targets = {
        "export <= 3.0x floor (1 process)": (
            f"{export.seconds / floor.seconds:.2f}x",
            export.seconds <= 3.0 * floor.seconds,
        ),
        "export <= 1.8x floor (num_proc 2)": (
            f"{two.seconds / floor.seconds:.2f}x" if two else two_note,
            two.seconds <= 1.8 * floor.seconds if two else None,
        ),
        "export >= 4x faster than naive": (
            f"{naive.seconds / export.seconds:.2f}x" if naive else "skipped",
            naive.seconds >= 4 * export.seconds if naive else None,
        ),
        "--help < 0.25 s": (f"{help_.seconds:.3f} s", help_.seconds < 0.25),
    }
    print("\ntargets:")
    for target, (value, ok) in targets.items():
        print(f"  {verdict(ok):<4}  {target:<35} {value}")
    return {
        "n": args.n,
        "mean_file_bytes": round(mean_size),
        "steps": [asdict(s) for s in steps],
        "targets": {t: {"value": v, "result": verdict(ok)} for t, (v, ok) in targets.items()},
    }


def rss_sweep(args: argparse.Namespace, sizes: list[int]) -> dict:
    template = args.store_dir if "{n}" in args.store_dir else os.path.join(args.store_dir, "{n}")
    steps = {}
    for n in sizes:
        store, mean_size = prepare_store(template, n, args.keep)
        steps[n] = export_step(store, f"export N={n}")
        print(
            f"N={n}: mean file {mean_size / 1024:.2f} KiB, export {steps[n].seconds:.1f} s, "
            f"peak RSS {steps[n].peak_rss_mb:.1f} MB"
        )
        if not args.keep:
            remove_store(store)
    small, large = steps[min(sizes)], steps[max(sizes)]
    growth = large.peak_rss_mb / small.peak_rss_mb
    print(f"\nRSS growth N={max(sizes)} vs N={min(sizes)}: {growth:.2f}x")
    print(f"  {verdict(large.peak_rss_mb <= 400):<4}  peak RSS <= 400 MB at N={max(sizes)} (target is for N=200000)")
    print(f"  {verdict(growth <= 1.2):<4}  RSS growth <= 20% (the target is for 200000 vs 50000)")
    return {"rss_sweep": {str(n): asdict(s) for n, s in steps.items()}, "growth": growth}


def step_costs(args: argparse.Namespace) -> dict:
    """Microseconds per record of each step of an export, each on its own (see the module docstring)."""
    import gc
    import hashlib
    import time

    import orjson

    from personagym_hf.chunks import Encoder
    from personagym_hf.collect import interaction_to_sample
    from personagym_hf.config import ExportConfig
    from personagym_hf.shards import ParquetSplitWriter
    from personagym_hf.stats import StatsAccumulator
    from personagym_hf.store import _read_whole, discover_paths
    from personagym_hf.tables import ViewTables
    from personagym_hf.views import config_specs
    from personagym_hf.writers import ITEM_SEPARATOR, dumps_line, pretty_item

    store, _ = prepare_store(args.store_dir, args.n, args.keep)
    files, cfg = discover_paths(store)[:STEP_FILES], ExportConfig()
    encoder, views, costs = Encoder(cfg, split=True, views=True), ViewTables(cfg.format), {}

    def timed(name: str, work):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            out = work()
            best = min(best, time.perf_counter() - start)
        costs[name] = best / len(files) * 1e6
        print(f"  {name:<34} {costs[name]:6.2f} us/record", flush=True)
        return out

    def write_json(folder: Path) -> None:
        with (
            open(folder / "s.json", "wb", buffering=1 << 20) as f,
            open(folder / "s.jsonl", "wb", buffering=1 << 20) as g,
        ):
            for start in range(0, len(files), 256):
                f.write(ITEM_SEPARATOR.join(items[start : start + 256]))
                g.write(b"".join(lines[start : start + 256]))

    def dicts_and_rows() -> list[tuple[dict, dict]]:
        pairs = []
        for sample in samples:
            data = sample.to_dict()
            pairs.append((data, encoder.row(data)))
        return pairs

    def accumulate() -> None:
        stats = StatsAccumulator()
        for data, split in zip(datas, splits):
            stats.add(data, split)

    def write_parquet(folder: Path) -> None:
        specs = config_specs(cfg.format)
        writers = {config: ParquetSplitWriter(folder / config, "train", specs[config]) for config in specs}
        for batch in tables:
            for config, table in batch.items():
                writers[config].add_table(table)
        for writer in writers.values():
            writer.close()

    print(f"steps of an export, one at a time, over {len(files)} interactions:")
    gc.disable()
    try:
        raw = timed("read (os.open/os.read)", lambda: [_read_whole(path) for path in files])
        records = timed("parse (orjson)", lambda: [orjson.loads(data) for data in raw])
        samples = timed("convert (interaction_to_sample)", lambda: [interaction_to_sample(r) for r in records])
        pairs = timed("sample dict + row", dicts_and_rows)
        datas, rows = [data for data, _ in pairs], [row for _, row in pairs]
        splits = timed("split", lambda: [encoder.split_of(data) for data in datas])
        timed("statistics", accumulate)
        items = timed("JSON item (orjson, indented)", lambda: [pretty_item(row) for row in rows])
        lines = timed("JSONL line (orjson)", lambda: [dumps_line(row) for row in rows])
        with tempfile.TemporaryDirectory() as tmp:
            timed("write JSON + JSONL", lambda: write_json(Path(tmp)))
            blocks = [b"".join(lines[start : start + 256]) for start in range(0, len(lines), 256)]
            timed("sha256 of the JSONL", lambda: [hashlib.sha256(block).digest() for block in blocks])
            batches = range(0, len(datas), 1000)
            tables = timed("Arrow tables, 4 configs", lambda: [views.build(datas[i : i + 1000]) for i in batches])
            timed("Parquet, 4 configs", lambda: write_parquet(Path(tmp)))
    finally:
        gc.enable()
    floor = costs["read (os.open/os.read)"] + costs["parse (orjson)"]
    total = sum(costs.values())
    print(f"  {'sum':<34} {total:6.2f} us/record = {total / floor:.2f}x read + parse ({floor:.2f} us)")
    if not args.keep:
        remove_store(store)
    return {"steps_us_per_record": costs, "sum_over_floor": total / floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--n", type=int, default=20000, help="number of interactions (default 20000)")
    parser.add_argument("--num-proc", type=int, default=1, help="also run the export with this many processes")
    parser.add_argument("--keep", action="store_true", help="keep the store, and reuse it when it holds N files")
    parser.add_argument("--store-dir", default=DEFAULT_STORE, help="store folder; {n} becomes N (default %(default)s)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive datasets script")
    parser.add_argument("--rss-sweep", metavar="N1,N2", help="only the export, at each size: peak RSS and its growth")
    parser.add_argument("--steps", action="store_true", help="only the export's steps, one at a time: us per record")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args()

    facts = machine()
    print("machine: " + ", ".join(f"{key} {value}" for key, value in facts.items()))
    if args.rss_sweep:
        figures = rss_sweep(args, sorted(int(size) for size in args.rss_sweep.split(",")))
    elif args.steps:
        figures = step_costs(args)
    else:
        figures = benchmark(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, **figures}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
