"""Each `split_by` mode on one store: the split sizes, what leaks into train (computed from the rows written), and
what the export cost (wall time, peak RSS of the export's process tree), one Markdown table row per mode.

    python scripts/split_table.py --interactions STORE [--modes persona,query,grid] [--num-proc N] [--keep DIR]

"eval" is every split but train. "persona in train": the share of eval samples whose persona has samples in train;
"target in train": the share of eval samples whose `original_query` (normalised as the audit does) is the target
of a train sample too — what a query rewriter would be scored on having seen.
Each export runs as `personagym-hf export` in a process of its own, with `--no-audit` off (the default export).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from personagym_hf.config import FILE_PREFIX  # noqa: E402
from personagym_hf.measure.leakage import normalise  # noqa: E402

MODES = ("persona", "query", "grid", "persona_and_query", "sample")
COLUMNS = ("train", "validation", "test", "test_unseen_persona", "test_unseen_query")


def export(store: str, out: Path, split_by: str, assignment: str, num_proc: int) -> tuple[float, float]:
    """Run the export; (wall seconds, peak RSS in MB of the export and its workers)."""
    config = out.parent / f"{out.name}.yaml"
    config.write_text(f"training_data:\n  split_by: {split_by}\n  split_assignment: {assignment}\n", encoding="utf-8")
    command = [sys.executable, "-m", "personagym_hf", "export", "--interactions", store, "--output", str(out)]
    command += ["--config", str(config), "-q", "--num-proc", str(num_proc)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export with split_by {split_by} failed")
    return wall, usage.ru_maxrss / 1024  # the largest of the process and its waited-for children


def rows(out: Path) -> dict[str, list[dict]]:
    found = {}
    for split, prefix in FILE_PREFIX.items():
        path = out / f"{prefix}_samples.jsonl"
        if path.exists():
            with path.open("rb") as f:
                found[split] = [json.loads(line) for line in f]
    return found


def target(row: dict) -> str:
    return normalise(row["original_query"])


def figures(out: Path) -> dict:
    by_split = rows(out)
    train = by_split.get("train", [])
    personas, targets = {row["persona_id"] for row in train}, {target(row) for row in train}
    evaluation = [row for name, split_rows in by_split.items() if name != "train" for row in split_rows]
    statistics = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    share = (lambda hits: f"{hits / len(evaluation):.1%}") if evaluation else (lambda hits: "-")
    return {
        "sizes": {name: len(split_rows) for name, split_rows in by_split.items()},
        "held_out": statistics.get("held_out", 0),
        "persona_in_train": share(sum(row["persona_id"] in personas for row in evaluation)),
        "target_in_train": share(sum(target(row) in targets for row in evaluation)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", required=True, metavar="STORE")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated split_by modes")
    parser.add_argument("--hashed", action="store_true", help="also persona with split_assignment: hashed")
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="write the exports here and keep them")
    args = parser.parse_args()
    runs = [(mode, "balanced") for mode in args.modes.split(",")]
    if args.hashed:
        runs.append(("persona", "hashed"))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="split_table_"))
    work.mkdir(parents=True, exist_ok=True)
    print("| split_by | " + " | ".join(COLUMNS) + " | held out | eval: persona in train | eval: target in train "
          "| export | peak RSS |")  # fmt: skip
    print("|---" * (len(COLUMNS) + 6) + "|")
    try:
        for mode, assignment in runs:
            out = work / f"{mode}-{assignment}"
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = export(args.interactions, out, mode, assignment, args.num_proc)
            # In a process of its own: the rows it reads would stay in this one, and the next export's peak RSS
            # would count them (a child forked from a big parent starts big; it read 1.1 GB at 100k instead of 0.35)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                found = pool.submit(figures, out).result()
            name = mode if assignment == "balanced" else f"{mode} (hashed)"
            sizes = " | ".join(str(found["sizes"][column]) if column in found["sizes"] else "" for column in COLUMNS)
            print(
                f"| {name} | {sizes} | {found['held_out']} | {found['persona_in_train']} | "
                f"{found['target_in_train']} | {wall:.2f} s | {rss:.0f} MB |",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
