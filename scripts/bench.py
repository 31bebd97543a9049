"""Benchmark `personagym-hf export` against a component floor, reading the store, and a naive `datasets` script.

Run it from the repository root with the project's venv:

    python scripts/bench.py -n 100000 --keep              # floor, components, export, naive, --help at N=100000
    python scripts/bench.py -n 20000 --keep --num-proc 2  # reuse the store; also export with 2 processes
    python scripts/bench.py -n 100000 --keep --rounds 3   # each step 3 times back to back: medians, and ratios
                                                          # as the median of the rounds' own ratios
    python scripts/bench.py --rss-sweep 20000,100000      # export only: peak RSS at each size
    python scripts/bench.py -n 20000 --keep --steps       # the export's steps one at a time: us per record
    python scripts/bench.py -n 100000 --keep --parent-cpu --num-proc 2   # what the parent process costs
    python scripts/bench.py --profile synthetic ...       # the same on the synthetic store

Two stores (`--profile`), both in the upstream per-file layout (pretty-printed JSON per interaction, index.json):
  realistic  (the default) `personagym_hf.testing.realistic.write_realistic_store`: N // 5 personas, a pool of
             N // 50 base queries, 5 per persona (so every `original_query` reaches ~50 personas and half the
             `initial_query`s are styled near duplicates of each other), every dialogue distinct, assistant turns of
             tens of bytes to tens of KB (Markdown, code blocks), 12% of personas writing German, Spanish, Russian,
             Chinese or Japanese, noise in both layouts: ~7 KB per interaction. What real PersonaGym stores look like.
  synthetic  `personagym_hf.testing.synth.write_store`: N // 20 personas, ~5 KB per interaction of a few templates
             and sentences, so texts repeat (11,219 distinct conversations in 100k): it flatters whatever caches by
             text, such as the leakage audit. Kept to compare with the figures measured on it before.
Each step runs in a fresh subprocess, after the store has been read once untimed so every step sees a warm page
cache, and after `sync`, so that no step pays for writing back the GBs the one before it left in the page cache.

Figures: `seconds` is the wall time of the whole subprocess (interpreter start and imports included);
`interactions/s` is N / seconds; `ratio to floor` is seconds / the component floor's seconds; `peak RSS MB` is the
child's `ru_maxrss` from `wait4` (the largest single process of its tree, not a sum over worker processes;
spawned from a bare interpreter, so ~8 MB is the lowest it can read). The load average is printed with them.
  read+parse   list the files, read each one and parse it with orjson (json if missing), nothing else
  serialise    the export's rows (read back from its JSONL, untimed) dumped as its JSON items and JSONL lines
  parquet      the export's Arrow tables (read back from its shards, untimed) written to Parquet with the export's
               own writer and options (row groups, statistics columns, content-defined chunking, page index)
  component floor   read+parse + serialise + parquet: the work no implementation of the export can skip
  export       `personagym-hf export --interactions STORE --output OUT -q`: every output, all configs, the
               leakage audit on (the default)
  naive        `Dataset.from_generator` over `interaction_to_sample`, then `to_json` and `to_parquet` (one config,
               no audit)
  --help       `personagym-hf --help`, best of 5

`--steps` times the export's own code over the store's first 20,000 files, one more stage at a time, in this
process, with the garbage collector off, best of 3: reading and parsing (`store.iter_file`), then `encode.encode`
into sinks that keep more of its outputs (nothing, the JSON rows, the Arrow tables, with the audit), then the
whole `export_store`; each line gives what its stage adds.

`--parent-cpu` runs `export_store` with `--num-proc` workers (and, with `--engine ray`, on a new local Ray
instance) in a fresh process and prints the CPU time of that process alone (`getrusage(RUSAGE_SELF)`: the parent,
or Ray's driver) per record, and its peak RSS: the share of the work that does not spread over workers, which
bounds how far more cores or nodes can speed an export up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from personagym_hf.read.store import discover_files

REPLY_CHARS = 1300  # synthetic profile: a mean file of ~5.2 KB (most files 2.5-8 KB)
PROFILES = ("realistic", "synthetic")
DEFAULT_STORE = str(Path(tempfile.gettempdir()) / "bench_store" / "{profile}-{n}")
FLOOR_PARTS = ("read+parse", "serialise rows (JSON)", "write Parquet")
STEP_FILES = 20000  # --steps holds every step's output for this many interactions in memory
MARKER = ".bench_store"  # only folders holding it are ever deleted (dot files are not interactions)
CLI = Path(sys.executable).with_name("personagym-hf")
CLI_CMD = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "personagym_hf"]

# Spawns the measured command and reports its wall time and wait4() rusage: peak RSS, and the CPU time of the
# command and its workers (on a shared machine the wall time depends on the others' load, the CPU time much less).
# A child's ru_maxrss starts at the RSS of the process that spawned it, so the spawner is this bare interpreter
# (~8 MB), not the bench.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
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
from personagym_hf.transform.collect import interaction_to_sample
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


# The components of an export that no implementation can skip, from an export's own output (read back untimed):
# serialising its rows as its JSON items and JSONL lines, and writing its Arrow tables with its Parquet writer.
COMPONENTS_SCRIPT = """
import glob, json, os, sys, tempfile, time
import orjson, pyarrow.parquet as pq
from personagym_hf.write.files import dumps_line, pretty_item
from personagym_hf.write.parquet import ShardFile
export = sys.argv[1]
serialise = serialise_cpu = 0.0
for path in sorted(glob.glob(os.path.join(export, "*_samples.jsonl"))):
    with open(path, "rb") as f:
        rows = [orjson.loads(line) for line in f]
    start, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        pretty_item(row)
        dumps_line(row)
    serialise += time.perf_counter() - start
    serialise_cpu += time.process_time() - cpu
    del rows
parquet = parquet_cpu = 0.0
with tempfile.TemporaryDirectory() as out:
    for number, path in enumerate(sorted(glob.glob(os.path.join(export, "hf_dataset", "data", "*", "*.parquet")))):
        source = pq.ParquetFile(path)
        groups = [source.read_row_group(i) for i in range(source.num_row_groups)]
        start, cpu = time.perf_counter(), time.process_time()
        shard = ShardFile(__import__("pathlib").Path(out), "split", number, source.schema_arrow)
        for group in groups:
            shard.write(group)
        shard.close()
        parquet += time.perf_counter() - start
        parquet_cpu += time.process_time() - cpu
        del groups
print(json.dumps({"serialise": serialise, "parquet": parquet, "serialise_cpu": serialise_cpu,
                  "parquet_cpu": parquet_cpu}))
"""

PARENT_SCRIPT = """
import resource, sys, tempfile, time
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.config import RunOptions
from personagym_hf.request import ExportRequest
from personagym_hf.run.job import export_store
store, num_proc, engine = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with tempfile.TemporaryDirectory(prefix="bench_export_") as out:
    start = time.perf_counter()
    request = ExportRequest(store, out, run=RunOptions(num_proc=num_proc, engine=engine))
    done = export_store(request, interaction_to_sample)
    wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, done.result.new_samples)
"""


def watch_memory(process: subprocess.Popen, every: float = 0.1) -> dict[str, int]:
    """The most of each of a running process's RssAnon (its private memory), RssFile (mapped files) and RssShmem
    (shared memory: Ray's object store), in KiB, read from /proc by this process every `every` s until it ends
    (from outside: a thread of the process itself would not run while a library holds the GIL)."""
    peaks = {"RssAnon:": 0, "RssFile:": 0, "RssShmem:": 0}
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text(encoding="ascii")
        except OSError:
            break
        for line in status.splitlines():
            key, _, value = line.partition("\t")
            if key in peaks:
                peaks[key] = max(peaks[key], int(value.split()[0]))
        time.sleep(every)
    return peaks


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss_mb: float
    load: float = 0.0  # the 1-minute load average when it ended
    output: str = ""
    cpu_seconds: float = 0.0  # user + system, of the process and its workers


def prepare_store(template: str, n: int, keep: bool, profile: str = "realistic") -> tuple[Path, float]:
    """The store for N interactions of the profile (reused with --keep when it holds N files) and its mean file
    size."""
    store = Path(template.format(n=n, profile=profile))
    files = discover_files(store) if store.is_dir() else []
    if not (keep and len(files) == n):
        remove_store(store)
        print(f"generating {n} interactions ({profile} profile) in {store} ...", flush=True)
        write_profile_store(store, n, profile)
        (store / MARKER).touch()
        files = discover_files(store)
    else:
        print(f"reusing the store in {store}")
    return store, sum(f.stat().st_size for f in files) / max(1, len(files))


def write_profile_store(store: Path, n: int, profile: str) -> None:
    if profile == "synthetic":
        from personagym_hf.testing.synth import write_store

        write_store(store, n, personas=max(1, n // 20), seed=0, reply_chars=REPLY_CHARS)
    else:
        from personagym_hf.testing.realistic import write_realistic_store

        write_realistic_store(store, n, personas=max(1, n // 5), queries=max(1, n // 50), seed=0)


def remove_store(store: Path) -> None:
    if store.exists() and any(store.iterdir()) and not (store / MARKER).exists():
        sys.exit(f"{store} exists and was not made by this script; pick another --store-dir")
    shutil.rmtree(store, ignore_errors=True)


def warm_cache(store: Path) -> None:
    """Read every file once, untimed, so each step starts with the store in the page cache."""
    for path in store.rglob("*"):
        if path.is_file():
            path.read_bytes()


def settle_disk() -> None:
    """Write out every dirty page before a timed step (`sync`). An export leaves GBs of them, and the kernel writes
    them back while the next step runs, throttling its writes: unsynced, exports took 25.6 to 37.6 s back to back on
    this project's machine, synced 24.9 to 25.7 s (docs/performance.md)."""
    os.sync()


def run_child(
    name: str, cmd: list[str], store: Path | None, env: dict[str, str] | None = None, stdout: bool = False
) -> Step:
    """Run `cmd` in a fresh process via LAUNCHER, the page cache warm and no dirty page left (`settle_disk`); its
    wall time and peak RSS (ru_maxrss of its tree, KiB). With `stdout`, what it printed is in the step's `output`."""
    if store is not None:
        warm_cache(store)
    settle_disk()
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tmp:
        figures = Path(tmp) / "figures"
        launcher = [sys.executable, "-S", "-E", "-c", LAUNCHER, str(figures), *cmd]
        errors = subprocess.PIPE if stdout else subprocess.STDOUT
        done = subprocess.run(launcher, stdout=log, stderr=errors, env=env)
        log.seek(0)
        if done.returncode != 0:
            sys.exit(f"{name} failed: {' '.join(cmd)}\n{log.read().decode(errors='replace')}")
        seconds, maxrss_kib, cpu = figures.read_text().split()
        output = log.read().decode() if stdout else ""
    return Step(name, float(seconds), int(maxrss_kib) / 1024, load(), output, float(cpu))


def load() -> float:
    return round(os.getloadavg()[0], 2)


def export_step(store: Path, name: str, extra: tuple[str, ...] = (), keep: Path | None = None) -> Step:
    """The export in a fresh process; its output is left in `keep` when given (for the components)."""
    with tempfile.TemporaryDirectory(prefix="bench_export_") as out:
        target = str(keep) if keep is not None else out
        cmd = [*CLI_CMD, "export", "--interactions", str(store), "--output", target, "-q", *extra]
        return run_child(name, cmd, store)


def component_steps(export: Path) -> list[Step]:
    """Serialising the export's rows and writing its Arrow tables to Parquet, timed inside a fresh process (the
    reading back is not timed)."""
    step = run_child("components", [sys.executable, "-c", COMPONENTS_SCRIPT, str(export)], None, stdout=True)
    parts = json.loads(step.output.splitlines()[-1])
    return [
        Step("serialise rows (JSON)", parts["serialise"], 0.0, step.load, cpu_seconds=parts["serialise_cpu"]),
        Step("write Parquet", parts["parquet"], 0.0, step.load, cpu_seconds=parts["parquet_cpu"]),
    ]


def ray_step(store: Path) -> Step:
    """The export with `--engine ray` on a new local Ray instance (its start included), in a temp HOME and RAY_TMPDIR.
    Ray listens on every interface and probes outside addresses: only inside a namespace with nothing but lo."""
    check_loopback_only()
    with (
        tempfile.TemporaryDirectory(prefix="bench_ray_", dir="/tmp") as root,
        tempfile.TemporaryDirectory(prefix="bench_export_") as out,
    ):
        cmd = [*CLI_CMD, "export", "--interactions", str(store), "--output", out, "-q", "--engine", "ray"]
        return run_child("export (engine ray)", cmd, store, ray_env(root))


def check_loopback_only() -> None:
    import socket

    others = [name for _index, name in socket.if_nameindex() if name != "lo"]
    if others:
        sys.exit(
            f"--engine ray: network interfaces {others} are visible; run the benchmark inside a loopback-only "
            "namespace: unshare -n sh -c 'ip link set lo up && python scripts/bench.py ... --engine ray'"
        )


def ray_env(root: str) -> dict[str, str]:
    """Ray's state and temp folders in `root`, and no cloud metadata probe."""
    home = Path(root) / "home"
    home.mkdir(exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text("{}\n")
    return {**os.environ, "HOME": str(home), "RAY_TMPDIR": root, "RAY_USAGE_STATS_ENABLED": "0"}


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


def measure_round(store: Path, args: argparse.Namespace) -> dict[str, Step]:
    """One round of the timed steps, in order: the floor's parts, the export (whose output the components read), the
    export with --num-proc, with Ray, the naive script. By name, the floor's sum included."""
    steps = [run_child("read+parse", [sys.executable, "-c", FLOOR_SCRIPT, str(store)], store)]
    with tempfile.TemporaryDirectory(prefix="bench_export_") as kept:
        export = export_step(store, "export (1 process)", keep=Path(kept) / "out")
        steps += component_steps(Path(kept) / "out")
    floor = Step(
        "component floor",
        sum(step.seconds for step in steps),
        0.0,
        steps[-1].load,
        cpu_seconds=sum(step.cpu_seconds for step in steps),
    )
    steps += [floor, export]
    if args.num_proc > 1 and supports_num_proc():
        steps.append(export_step(store, f"export (num_proc {args.num_proc})", ("--num-proc", str(args.num_proc))))
    if args.engine == "ray":
        steps.append(ray_step(store))
    if not args.skip_naive:
        steps.append(naive_step(store))
    return {step.name: step for step in steps}


def median_step(runs: list[Step]) -> Step:
    """The run of median wall time (the lower middle one of an even number): one real run, not a mix of runs."""
    return sorted(runs, key=lambda step: step.seconds)[(len(runs) - 1) // 2]


def benchmark(args: argparse.Namespace) -> dict:
    store, mean_size = prepare_store(args.store_dir, args.n, args.keep, args.profile)
    print(
        f"store: {store} ({args.profile} profile, {args.n} interactions, mean file size {mean_size:,.0f} B = "
        f"{mean_size / 1024:.2f} KiB)"
    )
    print("page cache: the store is read once, untimed, before every timed step (warm cache)")
    subprocess.run([sys.executable, "-c", "import datasets, pyarrow.parquet"], check=True)  # warm the imports too
    if args.num_proc > 1 and not supports_num_proc():
        print("num-proc: not supported by this version")
    # Rounds run the steps back to back, so each round's ratios compare runs under about the same load; a ratio's
    # figure is the median of the rounds' ratios, as the machine's load moves single runs by a third.
    rounds = []
    for number in range(args.rounds):
        if args.rounds > 1:
            print(f"round {number + 1} of {args.rounds} ...", flush=True)
        rounds.append(measure_round(store, args))
    help_ = help_step()
    if not args.keep:
        remove_store(store)

    names = list(rounds[0])
    steps = [median_step([one[name] for one in rounds]) for name in names] + [help_]
    # The floor's parts from the round of its median, so that they add up to it
    middle = next(one for one in rounds if one["component floor"] is steps[names.index("component floor")])
    steps = [middle[step.name] if step.name in FLOOR_PARTS else step for step in steps]
    by_name = {step.name: step for step in steps}
    floor, export = by_name["component floor"], by_name["export (1 process)"]
    parallel = by_name.get(f"export (num_proc {args.num_proc})")
    naive = by_name.get("naive datasets")

    def ratio(name: str, base: str, cpu: bool = False) -> float:
        field = "cpu_seconds" if cpu else "seconds"
        return statistics.median(getattr(one[name], field) / getattr(one[base], field) for one in rounds)

    seconds = {name: [one[name].seconds for one in rounds] for name in names}
    print(
        f"\n{'step':<24} {'seconds':>8} {'interactions/s':>15} {'ratio to floor':>15} {'CPU s':>8} "
        f"{'CPU ratio':>9} {'peak RSS MB':>12} {'load':>5}" + ("  rounds' seconds" if args.rounds > 1 else "")
    )
    for step in steps:
        timed = step is not help_
        rate = f"{args.n / step.seconds:,.0f}" if timed else "-"
        to_floor = f"{ratio(step.name, floor.name):.2f}" if timed else "-"
        cpu_ratio = f"{ratio(step.name, floor.name, cpu=True):.2f}" if timed and floor.cpu_seconds else "-"
        rss = f"{step.peak_rss_mb:.1f}" if step.peak_rss_mb else "-"
        span = f"  {min(seconds[step.name]):.2f}-{max(seconds[step.name]):.2f}" if timed and args.rounds > 1 else ""
        print(
            f"{step.name:<24} {step.seconds:>8.3f} {rate:>15} {to_floor:>15} {step.cpu_seconds:>8.2f} {cpu_ratio:>9} "
            f"{rss:>12} {step.load:>5.2f}{span}"
        )
    if args.rounds > 1:
        print(
            f"(each step: its run of median seconds, the floor's parts those of the floor's; ratios: the median of "
            f"the {args.rounds} rounds' ratios, each against the floor of its own round)"
        )

    two = parallel if args.num_proc == 2 else None
    targets = {
        "export <= 1.5x component floor (1 process)": (
            f"{ratio(export.name, floor.name):.2f}x (CPU time {ratio(export.name, floor.name, cpu=True):.2f}x)",
            ratio(export.name, floor.name) <= 1.5,
        ),
        "export <= 0.6x naive datasets (1 process)": (
            f"{ratio(export.name, naive.name):.2f}x (CPU time {ratio(export.name, naive.name, cpu=True):.2f}x)"
            if naive
            else "skipped",
            ratio(export.name, naive.name) <= 0.6 if naive else None,
        ),
        "export peak RSS <= 400 MB (1 process)": (f"{export.peak_rss_mb:.0f} MB", export.peak_rss_mb <= 400),
        "export (num_proc 2) vs 1 process": (
            f"{ratio(two.name, export.name):.2f}x" if two else "not measured (run with --num-proc 2)",
            None,
        ),
        "--help < 0.25 s": (f"{help_.seconds:.3f} s", help_.seconds < 0.25),
    }
    print("\ntargets:")
    for target, (value, ok) in targets.items():
        print(f"  {verdict(ok):<4}  {target:<44} {value}")
    return {
        "n": args.n,
        "profile": args.profile,
        "mean_file_bytes": round(mean_size),
        "rounds": args.rounds,
        "steps": [{k: v for k, v in asdict(s).items() if k != "output"} for s in steps],
        "round_seconds": seconds,
        "targets": {t: {"value": v, "result": verdict(ok)} for t, (v, ok) in targets.items()},
    }


def parent_cpu(args: argparse.Namespace) -> dict:
    """The parent's (or Ray driver's) own CPU per record in an export with workers (see the module docstring)."""
    store, _mean_size = prepare_store(args.store_dir, args.n, args.keep, args.profile)
    warm_cache(store)
    env = None
    if args.engine == "ray":
        check_loopback_only()
        root = tempfile.mkdtemp(prefix="bench_ray_", dir="/tmp")
        env = ray_env(root)
    try:
        command = [sys.executable, "-c", PARENT_SCRIPT, str(store), str(args.num_proc), args.engine]
        settle_disk()
        with tempfile.TemporaryFile("w+") as stdout:
            process = subprocess.Popen(command, stdout=stdout, text=True, env=env)
            peaks = watch_memory(process)
            if process.wait():
                raise subprocess.CalledProcessError(process.returncode, command)
            stdout.seek(0)
            printed = stdout.read().split()
    finally:
        if args.engine == "ray":
            shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            remove_store(store)
    wall, cpu, maxrss_kib, records = float(printed[0]), float(printed[1]), int(printed[2]), int(printed[3])
    private_kib, files_kib, shared_kib = peaks.values()
    where = "Ray's driver" if args.engine == "ray" else f"the parent of {args.num_proc} workers"
    print(
        f"{where}: {cpu:.2f} s of CPU for {records} records = {cpu / records * 1e6:.1f} us per record; peak RSS "
        f"{maxrss_kib / 1024:.0f} MB (read every 0.1 s: at most {private_kib / 1024:.0f} MB private, "
        f"{files_kib / 1024:.0f} MB of mapped files, {shared_kib / 1024:.0f} MB of shared memory such as Ray's "
        f"object store); the export took {wall:.2f} s"
    )
    return {
        "parent_cpu_us_per_record": cpu / records * 1e6,
        "parent_peak_rss_mb": maxrss_kib / 1024,
        "parent_peak_private_mb": private_kib / 1024,
        "parent_peak_files_mb": files_kib / 1024,
        "parent_peak_shared_mb": shared_kib / 1024,
        "wall": wall,
    }


def rss_sweep(args: argparse.Namespace, sizes: list[int]) -> dict:
    template = args.store_dir if "{n}" in args.store_dir else os.path.join(args.store_dir, "{n}")
    steps = {}
    for n in sizes:
        store, mean_size = prepare_store(template, n, args.keep, args.profile)
        steps[n] = export_step(store, f"export N={n}")
        print(
            f"N={n}: mean file {mean_size / 1024:.2f} KiB, export {steps[n].seconds:.1f} s, "
            f"peak RSS {steps[n].peak_rss_mb:.1f} MB (load {steps[n].load:.2f})"
        )
        if not args.keep:
            remove_store(store)
    small, large = steps[min(sizes)], steps[max(sizes)]
    growth = large.peak_rss_mb / small.peak_rss_mb
    print(f"\nRSS growth N={max(sizes)} vs N={min(sizes)}: {growth:.2f}x")
    print(f"  {verdict(large.peak_rss_mb <= 400):<4}  peak RSS <= 400 MB at N={max(sizes)} (the target is for 100000)")
    print(f"  {verdict(growth <= 1.2):<4}  RSS growth <= 1.2x (the target is for 100000 vs 20000)")
    return {"rss_sweep": {str(n): asdict(s) for n, s in steps.items()}, "growth": growth}


def step_costs(args: argparse.Namespace) -> dict:
    """Microseconds per record of each stage of the export's own code, one more stage at a time (see the module
    docstring): `encode` into sinks that keep more and more of its outputs, then the whole in-process export."""
    import gc
    import time

    from personagym_hf.config import ExportConfig, RunOptions
    from personagym_hf.read.store import discover_paths, iter_file
    from personagym_hf.request import ExportRequest
    from personagym_hf.run.chunks import ChunkResult, InMemory
    from personagym_hf.run.job import assign_store, export_store
    from personagym_hf.run.runner import InProcess
    from personagym_hf.transform.collect import interaction_to_sample
    from personagym_hf.transform.encode import Encoder, NoOutput, encode
    from personagym_hf.transform.views import CONFIG_NAMES

    store, _ = prepare_store(args.store_dir, args.n, args.keep, args.profile)
    files, cfg = discover_paths(store)[:STEP_FILES], ExportConfig()
    costs: dict[str, float] = {}
    totals: dict[str, float] = {}  # each stage with the ones before it

    def timed(name: str, work) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
        total = totals[name] = best / len(files) * 1e6
        costs[name] = total - sum(costs.values())  # this stage's own cost: what it adds to the stages before
        print(f"  {name:<44} {costs[name]:6.2f} us/record  (all so far {total:6.2f})", flush=True)
        return total

    def records() -> None:
        for path in files:
            for _record in iter_file(path):
                pass

    def prepass():
        options = RunOptions()
        return assign_store(files, cfg, interaction_to_sample, InProcess(options), options)

    def run(views: bool, audit: str | None, rows: bool) -> None:
        encoder = Encoder(cfg, split=True, views=views, audit=audit, assignment=assignment)
        sink = InMemory(ChunkResult(0, None), encoder.split_names) if rows else NoOutput()
        encode((record for path in files for record in iter_file(path)), encoder, interaction_to_sample, sink)

    print(f"the export's stages, one more at a time, over {len(files)} interactions:")
    with tempfile.TemporaryDirectory() as tmp:
        gc.disable()
        try:
            timed("read + parse (store.iter_file)", records)
            # The splits' pre-pass (split_assignment: balanced) reads the store once more before the export's pass:
            # timed alone, outside the sum of the stages below; the export_store stage includes it.
            assignment = prepass()
            started = time.perf_counter()
            prepass()
            alone = (time.perf_counter() - started) / len(files) * 1e6
            label = "(the splits' pre-pass, alone)"
            print(f"  {label:<44} {alone:6.2f} us/record", flush=True)
            timed("encode: convert, split, statistics", lambda: run(False, None, False))
            timed("encode: + JSON items and JSONL lines", lambda: run(False, None, True))
            timed(f"encode: + Arrow tables, {len(CONFIG_NAMES)} configs", lambda: run(True, None, True))
            timed("encode: + leakage audit", lambda: run(True, "near", True))
            small = Path(tmp) / "store"  # the same files, as a store of their own
            small.mkdir()
            for index, path in enumerate(files):
                os.symlink(path, small / f"{index:06d}.json")
            out = Path(tmp) / "out"
            request = ExportRequest(small, out, cfg)
            timed("export_store: + writing, Parquet, card", lambda: export_store(request, interaction_to_sample))
        finally:
            gc.enable()
    floor = costs["read + parse (store.iter_file)"]
    total = sum(costs.values())
    print(f"  {'sum':<44} {total:6.2f} us/record = {total / floor:.2f}x read + parse ({floor:.2f} us)")
    if not args.keep:
        remove_store(store)
    return {"steps_us_per_record": costs, "totals_us_per_record": totals, "sum_over_floor": total / floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--n", type=int, default=20000, help="number of interactions (default 20000)")
    parser.add_argument("--num-proc", type=int, default=1, help="also run the export with this many processes")
    parser.add_argument("--keep", action="store_true", help="keep the store, and reuse it when it holds N files")
    parser.add_argument(
        "--profile", choices=PROFILES, default="realistic", help="the store to measure on (default %(default)s)"
    )
    parser.add_argument(
        "--store-dir",
        default=DEFAULT_STORE,
        help="store folder; {n} becomes N and {profile} the profile (default %(default)s)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive datasets script")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the timed steps this many times back to back; report each step's median run and the median of "
        "the rounds' ratios (default 1)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: also export with --engine ray on a new local Ray instance (in a loopback-only namespace)",
    )
    parser.add_argument("--rss-sweep", metavar="N1,N2", help="only the export, at each size: peak RSS and its growth")
    parser.add_argument("--steps", action="store_true", help="only the export's steps, one at a time: us per record")
    parser.add_argument(
        "--parent-cpu",
        action="store_true",
        help="only the export with --num-proc workers (or --engine ray): the parent's own CPU per record and RSS",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected an integer >= 1, got {args.rounds}")

    facts = machine()
    print("machine: " + ", ".join(f"{key} {value}" for key, value in facts.items()))
    if args.rss_sweep:
        figures = rss_sweep(args, sorted(int(size) for size in args.rss_sweep.split(",")))
    elif args.steps:
        figures = step_costs(args)
    elif args.parent_cpu:
        figures = parent_cpu(args)
    else:
        figures = benchmark(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": facts, **figures}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
