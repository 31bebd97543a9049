"""Benchmark the leakage audit: its cost inside exports, its memory at scale, its recall, and its sketch.

Run it from the repository root with the project's venv:

    python scripts/bench_audit.py --export 100000 --keep --num-proc 1 --num-proc 2 --rounds 3   # whole exports
    python scripts/bench_audit.py --store 100000 --keep     # the audit alone, on the same store
    python scripts/bench_audit.py --memory 1000000          # the audit's memory over 1M interactions, no files
    python scripts/bench_audit.py --recall 2000             # its figures against every pair, brute force
    python scripts/bench_audit.py --sketch 20000            # signatures: the audit's sketch against rensa's

The store is `bench.py`'s (`--profile realistic`, the default, or `synthetic`).

`--export` times whole `personagym-hf export` runs over the store, with the audit and with `--no-audit`,
alternating (one of each, for each `--num-proc`, then again, `--rounds` times): on a shared machine only runs taken
back to back compare, and the best of each is the least disturbed. `--cli [LABEL=]PATH` times another install's
`personagym-hf` (say, the commit before a change) in the same rounds. Wall time and CPU time (user + system,
workers included) of the whole process, the `ru_maxrss` of its largest process, the load average.

`--store` times, each in a fresh process over the store: reading and converting every record and computing its
split (what an export does before writing), and the same plus `LeakageAudit.add` for each row and `to_dict`. The
audit's cost is the difference; `audit add + to_dict` is its own time, measured inside the second.

`--memory` runs the same two in fresh processes over N interactions of the realistic profile made in memory
(`iter_realistic_interactions`: no store on disk, so N can be a million): the audit's memory is the difference of
the two peak RSS, and its time the difference of the CPU times. The audit spills its rows to a temporary folder,
as an export does to its staging folder.

`--recall` builds a realistic store of N interactions, audits its rows and compares, row by row of each pair's
smaller split, what the audit found with the truth computed over every pair of texts: an exact duplicate is an
equal normalised text, a near one a Jaccard similarity of the whole texts' 3-gram sets of at least the threshold.
It prints the recall (rows with a true duplicate the audit found) and the precision (rows the audit flagged that
have one), per pair and text.

`--sketch` signs the distinct texts of N realistic interactions (queries and conversations) with the audit's
sketch and, when installed, with rensa's `RMinHash` (120 permutations; its signatures come back as Python lists):
texts per second, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import (  # noqa: E402
    CLI_CMD,
    DEFAULT_STORE,
    LAUNCHER,
    PROFILES,
    prepare_store,
    remove_store,
    settle_disk,
    warm_cache,
)

STORE_CHILD = r"""
import json, resource, sys, time
import numpy  # imported by both runs, so that the difference is the audit's data and work
from personagym_hf.measure.leakage import LeakageAudit
from personagym_hf.config import parse_config
from personagym_hf.run.job import iter_store
from personagym_hf.transform.policy import Rejections, iter_samples
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.encode import Encoder

store, with_audit = sys.argv[1], sys.argv[2] == "audit"
# Each persona in the split of its hash: no pre-pass to time here (this measures the audit alone).
encoder = Encoder(parse_config({"training_data": {"split_assignment": "hashed"}}), split=True, views=False)
audit = LeakageAudit() if with_audit else None
spent = 0.0
start = time.perf_counter()
for sample, _record in iter_samples(iter_store(store), interaction_to_sample, Rejections("skip")):
    data = sample.to_dict()
    split = encoder.split_of(data)
    if audit is not None:
        began = time.perf_counter()
        audit.add(encoder.row(data), split)
        spent += time.perf_counter() - began
figures = {}
if audit is not None:
    began = time.perf_counter()
    leakage = audit.to_dict()
    figures["to_dict_seconds"] = time.perf_counter() - began
    spent += figures["to_dict_seconds"]
    figures["audit_seconds"] = spent
    figures["max_share"] = leakage["max_share"]
figures["seconds"] = time.perf_counter() - start
figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(figures))
"""

MEMORY_CHILD = r"""
import json, resource, sys, tempfile, time
import numpy
from personagym_hf.config import parse_config
from personagym_hf.measure.leakage import LeakageAudit
from personagym_hf.testing.realistic import iter_realistic_interactions
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.encode import Encoder

n, with_audit = int(sys.argv[1]), sys.argv[2] == "audit"
encoder = Encoder(parse_config({"training_data": {"split_assignment": "hashed"}}), split=True, views=False)
with tempfile.TemporaryDirectory(prefix="bench_audit_") as spill:
    audit = LeakageAudit(spill_dir=spill) if with_audit else None
    for record in iter_realistic_interactions(n, max(1, n // 5), max(1, n // 50)):
        data = interaction_to_sample(record).to_dict()
        row, split = encoder.row(data), encoder.split_of(data)
        if audit is not None:
            audit.add(row, split)
    shares = audit.to_dict()["max_share"] if audit is not None else None
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024, "max_share": shares}))
"""

SKETCH_CHILD = r"""
import json, sys, time
import numpy as np
from personagym_hf.measure.leakage import _turns_of, normalise
from personagym_hf.measure.minhash import signatures, shingles
from personagym_hf.testing.realistic import iter_realistic_interactions
from personagym_hf.transform.collect import interaction_to_sample

n, library = int(sys.argv[1]), sys.argv[2]
texts = {}
for record in iter_realistic_interactions(n, max(1, n // 5), max(1, n // 50)):
    for _field, turns in _turns_of(interaction_to_sample(record).to_dict()):
        text = "\n".join(normalise(turn)[:1000] for turn in turns)[:4000]
        if text:
            texts[text] = None
texts = list(texts)
start = time.perf_counter()
if library == "audit":
    for at in range(0, len(texts), 1000):
        part = texts[at : at + 1000]
        signatures(part, np.arange(len(part)), len(part))
else:
    import rensa
    for at in range(0, len(texts), 1000):
        part = [shingles(text) for text in texts[at : at + 1000]]
        rows = rensa.RMinHash.digest_matrix_from_token_sets(part, 120, 42).to_rows()
        np.array(rows, dtype=np.uint32)
seconds = time.perf_counter() - start
print(json.dumps({"texts": len(texts), "chars": sum(map(len, texts)), "seconds": seconds}))
"""


def run_measured(cmd: list[str]) -> tuple[float, float, str, float]:
    """Run `cmd` in a fresh process, no dirty page left (`bench.settle_disk`): wall seconds, peak RSS MB, its
    stdout, CPU seconds (user + system)."""
    with tempfile.TemporaryDirectory() as tmp:
        figures, output = Path(tmp) / "figures", Path(tmp) / "stdout"
        settle_disk()
        with output.open("wb") as out:
            launcher = [sys.executable, "-S", "-E", "-c", LAUNCHER, str(figures), *cmd]
            done = subprocess.run(launcher, stdout=out, stderr=subprocess.PIPE)
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr.decode(errors='replace')}")
        seconds, maxrss_kib, cpu = figures.read_text().split()
        return float(seconds), int(maxrss_kib) / 1024, output.read_text(), float(cpu)


def load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def store_cost(args: argparse.Namespace) -> dict:
    store, _ = prepare_store(args.store_dir, args.store, args.keep, args.profile)
    results = {}
    for name in ("convert", "audit"):
        warm_cache(store)
        _, _, out, _ = run_measured([sys.executable, "-c", STORE_CHILD, str(store), name])
        results[name] = json.loads(out)
    if not args.keep:
        remove_store(store)
    convert, audited = results["convert"], results["audit"]
    print(f"{'step':<34} {'seconds':>8} {'peak RSS MB':>12}   (load {load():.2f})")
    print(f"{'read + convert + split':<34} {convert['seconds']:>8.2f} {convert['peak_rss_mb']:>12.0f}")
    print(f"{'  + LeakageAudit add + to_dict':<34} {audited['seconds']:>8.2f} {audited['peak_rss_mb']:>12.0f}")
    added_rss = audited["peak_rss_mb"] - convert["peak_rss_mb"]
    print(
        f"audit: {audited['audit_seconds']:.2f} s (of which to_dict {audited['to_dict_seconds']:.2f} s), "
        f"{audited['audit_seconds'] / args.store * 1e6:.1f} us per interaction; +{added_rss:.0f} MB peak RSS"
    )
    return results


def memory_cost(n: int) -> dict:
    results = {}
    for name in ("convert", "audit"):
        _, _, out, _ = run_measured([sys.executable, "-c", MEMORY_CHILD, str(n), name])
        results[name] = json.loads(out)
        print(f"{name}: {results[name]['cpu']:.1f} s CPU, peak RSS {results[name]['peak_rss_mb']:.0f} MB", flush=True)
    added = results["audit"]["peak_rss_mb"] - results["convert"]["peak_rss_mb"]
    cpu = results["audit"]["cpu"] - results["convert"]["cpu"]
    print(
        f"the audit of {n} interactions: +{added:.0f} MB peak RSS, +{cpu:.1f} s CPU "
        f"({cpu / n * 1e6:.1f} us per interaction) (load {load():.2f})"
    )
    results["added_peak_rss_mb"], results["added_cpu_seconds"] = added, cpu
    return results


def recall(n: int) -> dict:
    """The audit's figures against brute force on a realistic store of n interactions (see the module docstring)."""
    import numpy as np

    from personagym_hf.config import parse_config
    from personagym_hf.measure import leakage
    from personagym_hf.measure.minhash import digest, shingles
    from personagym_hf.read.store import iter_records
    from personagym_hf.testing.realistic import write_realistic_store
    from personagym_hf.transform.collect import interaction_to_sample
    from personagym_hf.transform.encode import Encoder

    encoder = Encoder(parse_config({"training_data": {"split_assignment": "hashed"}}), split=True, views=False)
    with tempfile.TemporaryDirectory(prefix="bench_recall_") as folder:
        store = write_realistic_store(Path(folder) / "store", n, max(1, n // 5), max(1, n // 50), seed=1)
        rows = []
        for record in iter_records(store):
            data = interaction_to_sample(record.data).to_dict()
            rows.append((encoder.row(data), encoder.split_of(data)))
    audit = leakage.LeakageAudit().add_all(rows)
    audit._flush()
    threshold, names = audit.options.threshold, audit.split_names
    texts = [leakage.texts_of(row) for row, _split in rows]
    splits = {f"{a}-{b}": (a, b) for a in names for b in names}
    never = np.iinfo(np.int64).max
    result = {}
    totals = {"exact": [0, 0, 0], "near": [0, 0, 0]}  # found and true, true, found
    for key, pair in audit.to_dict()["pairs"].items():
        small_name = pair["smaller"]
        other_name = next(name for name in splits[key] if name != small_name)
        small, other = names.index(small_name), names.index(other_name)
        for field, name in enumerate(leakage.FIELDS):
            # What the audit found, text by text: `to_dict`'s own index, streamed as it streams.
            mine = audit.rows.get((small, field))
            if mine is None:
                continue
            index = leakage._Index(
                leakage._Distinct(np.concatenate(list(mine.iter_blocks(1 << 16)))), slice(None), True, audit.options
            )
            stream = audit.rows.get((other, field))
            for block in stream.iter_blocks(audit.options.block_rows) if stream else ():
                index.exact_block(block)
                index.near_block(block, leakage._first_occurrences(block["digest"]))
            exact = index.exact_first != never
            found_exact = dict(zip(index.keys.tolist(), exact.tolist()))
            found_near = dict(zip(index.keys.tolist(), (index.reached | exact).tolist()))
            # The truth: every text of the other split, exactly.
            theirs = {t[name] for t, (_row, split) in zip(texts, rows) if split == other_name and name in t}
            their_grams = [set(shingles(text)) for text in theirs]
            counts = {"exact": [0, 0, 0], "near": [0, 0, 0]}
            best: dict[str, float] = {}
            for t, (_row, split) in zip(texts, rows):
                if split != small_name or name not in t:
                    continue
                text = t[name]
                if text not in best:
                    grams = set(shingles(text))
                    best[text] = max((len(grams & g) / len(grams | g) for g in their_grams), default=0.0)
                key_of = digest(text)
                for kind, truth, found in (
                    ("exact", text in theirs, found_exact[key_of]),
                    ("near", best[text] >= threshold, found_near[key_of]),
                ):
                    counts[kind][0] += truth and found
                    counts[kind][1] += truth
                    counts[kind][2] += found
            for kind in counts:
                for at in range(3):
                    totals[kind][at] += counts[kind][at]
            result[f"{key} {name}"] = counts
            exact_counts, near = counts["exact"], counts["near"]
            print(
                f"{key:<18} {name:<15} exact: {exact_counts[1]:>5} true, recall "
                f"{_ratio(*exact_counts[:2])}, precision {_ratio(exact_counts[0], exact_counts[2])}; exact or near: "
                f"{near[1]:>5} true, recall {_ratio(near[0], near[1])}, precision {_ratio(near[0], near[2])}"
            )
    for kind, (both, true, found) in totals.items():
        print(
            f"all rows, {kind if kind == 'exact' else 'exact or near'}: recall {_ratio(both, true)} "
            f"({both} of {true}), precision {_ratio(both, found)} ({both} of {found})"
        )
    (exact_both, exact_true, exact_found), (near_both, near_true, near_found) = totals["exact"], totals["near"]
    both, true, found = near_both - exact_both, near_true - exact_true, near_found - exact_found
    print(
        f"all rows with a near duplicate and no exact one: recall {_ratio(both, true)} ({both} of {true}), "
        f"precision {_ratio(both, found)} ({both} of {found})"
    )
    result["totals"] = totals
    return result


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.4f}" if whole else "-"


def sketch(n: int) -> dict:
    results = {}
    for library in ("audit", "rensa"):
        if library == "rensa" and subprocess.run([sys.executable, "-c", "import rensa"]).returncode:
            print("rensa: not installed (pip install rensa to measure it)")
            continue
        _, rss, out, _ = run_measured([sys.executable, "-c", SKETCH_CHILD, str(n), library])
        measured = results[library] = {**json.loads(out), "peak_rss_mb": rss}
        print(
            f"{library:<6} {measured['texts']} texts ({measured['chars'] / measured['texts']:.0f} characters on "
            f"average): {measured['seconds']:.2f} s, {measured['seconds'] / measured['texts'] * 1e6:.1f} us a text "
            f"(load {load():.2f})"
        )
    return results


def export_cost(args: argparse.Namespace) -> dict:
    """Whole exports with and without the audit, alternating (see the module docstring): every run and the best."""
    store, _ = prepare_store(args.store_dir, args.export, args.keep, args.profile)
    clis = {"": CLI_CMD}
    for given in args.cli or ():
        label, _, path = given.rpartition("=")
        clis[f" [{label or path}]"] = [path]
    variants = [
        (f"np{num_proc} {audit}{label}", [*cli, *(("--num-proc", str(num_proc)) if num_proc > 1 else ())], audit)
        for num_proc in args.num_proc or [1]
        for label, cli in clis.items()
        for audit in ("no-audit", "audit")
    ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    for round_ in range(args.rounds):
        for name, cli, audit in variants:
            warm_cache(store)
            with tempfile.TemporaryDirectory(prefix="bench_export_") as output:
                command = [cli[0], "export", "--interactions", str(store), "--output", output, "-q", *cli[1:]]
                seconds, rss, _, cpu = run_measured(command + (["--no-audit"] if audit == "no-audit" else []))
            runs[name].append({"seconds": seconds, "peak_rss_mb": rss, "cpu_seconds": cpu, "load": load()})
            print(
                f"round {round_ + 1}: {name:<28} {seconds:7.2f} s {cpu:7.2f} s CPU {rss:6.0f} MB (load {load():.2f})",
                flush=True,
            )
    if not args.keep:
        remove_store(store)

    def spread(name: str, key: str, digits: int) -> str:
        values = [run[key] for run in runs[name]]
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

    def best(name: str, key: str) -> float:
        return min(run[key] for run in runs[name])

    print(f"\n{'export':<28} {'best s':>7} {'runs s':>12} {'best CPU s':>10} {'peak RSS MB':>12}")
    for name in runs:
        print(
            f"{name:<28} {best(name, 'seconds'):>7.2f} {spread(name, 'seconds', 2):>12} "
            f"{best(name, 'cpu_seconds'):>10.2f} {spread(name, 'peak_rss_mb', 0):>12}"
        )
    for name, _, audit in variants:
        if audit == "audit":
            base = name.replace(" audit", " no-audit", 1)
            added = best(name, "seconds") / best(base, "seconds") - 1
            added_cpu = best(name, "cpu_seconds") / best(base, "cpu_seconds") - 1
            added_rss = max(r["peak_rss_mb"] for r in runs[name]) - max(r["peak_rss_mb"] for r in runs[base])
            print(f"{name}: {added:+.1%} time, {added_cpu:+.1%} CPU time (best against best), {added_rss:+.0f} MB")
            # Each round's two runs were taken back to back: their ratio is less at the mercy of one lucky run.
            paired = [a["seconds"] / b["seconds"] - 1 for a, b in zip(runs[name], runs[base])]
            paired_cpu = [a["cpu_seconds"] / b["cpu_seconds"] - 1 for a, b in zip(runs[name], runs[base])]
            print(
                f"{' ' * len(name)}  {statistics.median(paired):+.1%} time, {statistics.median(paired_cpu):+.1%} CPU "
                f"time (median of the rounds' pairs; each {min(paired):+.1%} to {max(paired):+.1%})"
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=int, metavar="N", help="whole exports with and without the audit, N files")
    parser.add_argument("--num-proc", type=int, action="append", help="with --export: N processes (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="with --export: runs of each (default 3)")
    parser.add_argument(
        "--cli", action="append", help="with --export: also time this personagym-hf executable ([LABEL=]PATH)"
    )
    parser.add_argument("--store", type=int, metavar="N", help="the audit alone on the store of N interactions")
    parser.add_argument("--memory", type=int, metavar="N", help="the audit's memory over N interactions, no files")
    parser.add_argument("--recall", type=int, metavar="N", help="the audit against brute force on N interactions")
    parser.add_argument("--sketch", type=int, metavar="N", help="signatures of N interactions' texts: audit, rensa")
    parser.add_argument("--profile", choices=PROFILES, default="realistic", help="the store (default %(default)s)")
    parser.add_argument("--store-dir", default=DEFAULT_STORE, help="where the store is ({n}: its size)")
    parser.add_argument("--keep", action="store_true", help="reuse the store when it has the right size")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if not (args.export or args.store or args.memory or args.recall or args.sketch):
        parser.error("pass --export N, --store N, --memory N, --recall N and/or --sketch N")
    figures = {}
    if args.sketch:
        figures["sketch"] = sketch(args.sketch)
    if args.recall:
        figures["recall"] = recall(args.recall)
    if args.store:
        figures["store"] = store_cost(args)
    if args.memory:
        figures["memory"] = memory_cost(args.memory)
    if args.export:
        figures["export"] = export_cost(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
