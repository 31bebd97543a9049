"""Benchmark `plan.py`: planning a large JSON Lines file (or JSON array), and reading it back in byte ranges (or
pieces) against reading it whole.

Run it from the repository root with the project's venv:

    python scripts/bench_plan.py                      # a 1 GB file to plan, a 200 MB file to read
    python scripts/bench_plan.py --plan-mb 100 --read-mb 50 --repeat 3 --keep
    python scripts/bench_plan.py --layout array       # one JSON array per file: its structural scan

The files are JSON Lines (or, with `--layout array`, one pretty-printed JSON array) of the synthetic store's
interactions (`testing/synth.py`: 4,000 of them, ~2.9 KB a line,
written again and again up to the size asked for), in `--dir` (a temporary folder by default, removed unless
`--keep`). Each file is read once before it is timed, so the figures are for a file in the page cache.

  planning   `plan_chunks([file], ...)` for each `--chunk-bytes`: every byte read and its newlines counted (for an
             array: scanned for its strings, brackets and commas). GB/s is
             the file's size over the best time; `peak MB` what tracemalloc saw allocated at most while planning.
  reading    records/s of `store.iter_file` over the whole file, and of `plan.iter_chunk` over every range of its
             plan for each `--chunk-bytes` (the two alternate, best of `--repeat`); both must give the same records.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent.parent))
from personagym_hf.read.plan import Items, Range, iter_chunk, plan_chunks  # noqa: E402
from personagym_hf.read.sizes import READ_SIZES, ReadSizes  # noqa: E402
from personagym_hf.read.store import iter_file  # noqa: E402
from personagym_hf.testing.synth import iter_interactions  # noqa: E402

MB = 1 << 20


def write_jsonl(path: Path, size: int) -> Path:
    """A JSON Lines file of at least `size` bytes, whole lines."""
    block = b"".join(orjson.dumps(record) + b"\n" for record in iter_interactions(4000, 200))
    with path.open("wb") as f:
        while f.tell() < size:
            f.write(block)
    return path


def write_array(path: Path, size: int) -> Path:
    """A file of one JSON array, pretty-printed as upstream's files are, of at least `size` bytes."""
    block = b",\n".join(orjson.dumps(record, option=orjson.OPT_INDENT_2) for record in iter_interactions(4000, 200))
    with path.open("wb") as f:
        f.write(b"[\n" + block)
        while f.tell() < size:
            f.write(b",\n" + block)
        f.write(b"\n]\n")
    return path


def warm(path: Path) -> None:
    with path.open("rb", buffering=0) as f:
        while f.read(64 * MB):
            pass


def best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_planning(path: Path, chunk_sizes: list[int], repeat: int) -> None:
    size = path.stat().st_size
    warm(path)
    print(f"planning {path.name}: {size / 1e9:.2f} GB")
    print("| chunk_bytes | ranges | best s | GB/s | peak MB |\n|---|---|---|---|---|")
    for chunk_bytes in chunk_sizes:
        chunks = plan_chunks([str(path)], 1000, chunk_bytes)
        seconds = best(lambda: plan_chunks([str(path)], 1000, chunk_bytes), repeat)
        tracemalloc.start()
        plan_chunks([str(path)], 1000, chunk_bytes)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rate = size / seconds / 1e9
        print(f"| {chunk_bytes // MB} MiB | {len(chunks)} | {seconds:.3f} | {rate:.2f} | {peak / MB:.1f} |")


def count(records) -> tuple[int, str]:
    total, where = 0, ""
    for record in records:
        total, where = total + 1, record.where
    return total, where


def bench_reading(path: Path, chunk_sizes: list[int], repeat: int) -> None:
    source = str(path)
    warm(path)
    whole = count(iter_file(source))
    print(f"reading {path.name}: {path.stat().st_size / 1e6:.0f} MB, {whole[0]} records")
    plans = {chunk_bytes: plan_chunks([source], 1000, chunk_bytes) for chunk_bytes in chunk_sizes}
    for chunks in plans.values():
        assert all(isinstance(chunk, (Range, Items)) for chunk in chunks)
        assert count(record for chunk in chunks for record in iter_chunk([source], chunk)) == whole

    def ranges(chunks: list, buffer: int = READ_SIZES.range_buffer):
        sizes = ReadSizes(range_buffer=buffer)
        return lambda: count(record for chunk in chunks for record in iter_chunk([source], chunk, sizes))

    # iter_file reads through `open(fd, "rb")`, whose buffer is the file system's block size: the last step reads
    # ranges through a buffer of that size too, to tell the cost of the ranges from the cost of the buffer.
    block = os.stat(source).st_blksize
    steps = {"iter_file, whole": lambda: count(iter_file(source))}
    for chunk_bytes, chunks in plans.items():
        steps[f"iter_chunk, {len(chunks)} ranges of {chunk_bytes // MB} MiB"] = ranges(chunks)
    chunk_bytes, chunks = next(iter(plans.items()))
    steps[f"iter_chunk, {len(chunks)} ranges of {chunk_bytes // MB} MiB, {block} B buffer"] = ranges(chunks, block)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):  # alternating, so that a noisy neighbour slows each of them alike
        for name, step in steps.items():
            times[name].append(best(step, 1))
    base = min(times["iter_file, whole"])
    print(f"| read ({READ_SIZES.range_buffer // MB} MiB buffer unless said) | best s | records/s | vs whole |")
    print("|---|---|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {min(runs):.3f} | {whole[0] / min(runs):,.0f} | {min(runs) / base - 1:+.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--plan-mb", type=int, default=1000, help="size of the file to plan, in MB (default 1000)")
    parser.add_argument("--read-mb", type=int, default=200, help="size of the file to read, in MB (default 200)")
    parser.add_argument("--chunk-bytes", default="64,16,1", help="range sizes to try, in MiB (default 64,16,1)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each step; the best is shown (default 5)")
    parser.add_argument(
        "--layout", choices=("jsonl", "array"), default="jsonl", help="the files' layout (default jsonl)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_plan_"))
    folder.mkdir(parents=True, exist_ok=True)
    chunk_sizes = [int(mb) * MB for mb in args.chunk_bytes.split(",")]
    write, suffix = (write_jsonl, "jsonl") if args.layout == "jsonl" else (write_array, "json")
    plan_file, read_file = folder / f"plan_{args.plan_mb}mb.{suffix}", folder / f"read_{args.read_mb}mb.{suffix}"
    try:
        bench_planning(write(plan_file, args.plan_mb * 10**6), chunk_sizes, args.repeat)
        if not args.keep:
            plan_file.unlink()
        read_sizes = [size for size in chunk_sizes if size < args.read_mb * 10**6]
        bench_reading(write(read_file, args.read_mb * 10**6), read_sizes, args.repeat)
    finally:
        if not args.keep:
            plan_file.unlink(missing_ok=True)
            read_file.unlink(missing_ok=True)
            if args.dir is None:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
