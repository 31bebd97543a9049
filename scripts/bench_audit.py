"""Benchmark the leakage audit: the MinHash libraries on their own, and the audit's cost on the bench store.

Run it from the repository root with the project's venv (datasketch is not a dependency: `pip install datasketch`
to measure it too):

    python scripts/bench_audit.py --libraries 100000        # datasketch vs rensa vs the audit, N synthetic queries
    python scripts/bench_audit.py --libraries 100000 --library audit   # one of them
    python scripts/bench_audit.py --store 100000 --keep     # the audit's cost on the bench store of bench.py
    python scripts/bench_audit.py --export 100000 --keep --num-proc 1 --num-proc 2 --rounds 3   # whole exports

`--libraries` makes N queries from the synthetic store's templates with random word edits (insertions, drops,
one-letter typos, a follow-up appended; ~72% distinct at N = 100,000), normalises them and cuts them into the
audit's character 3-grams once; each step below then runs in a fresh process on the same shingles:
  signatures   the library's bulk API: datasketch `MinHash.bulk` (tokens as bytes), rensa `RMinHash.from_token_sets`
  LSH insert   every signature into the library's index (threshold 0.8, 120 permutations)
  LSH query    every signature queried back: the candidate lists a near-duplicate search would verify
  audit        `LeakageAudit` over the same queries (as `initial_query`, a tenth of them in `test`): signatures of
               the distinct texts with rensa, LSH bands sorted with numpy, verification; `add` and `to_dict`

`--store` times, each in a fresh process over the bench store (`bench.py`'s, N // 20 personas): reading and
converting every record and computing its split (what an export does before writing), the same plus
`LeakageAudit.add` for each sample and `to_dict`, and `personagym-hf export` for scale. The audit's cost is the
difference of the first two; `audit add + to_dict` is its own time, measured inside the second.

`--export` times whole `personagym-hf export` runs over the bench store, with the audit and with `--no-audit`,
alternating (one of each, for each `--num-proc`, then again, `--rounds` times): on a shared machine only runs taken
back to back compare, and the best of each is the least disturbed. `--cli [LABEL=]PATH` times another install's
`personagym-hf` (say, the commit before a change) in the same rounds.

`seconds` is the wall time of the step inside its process, `peak RSS MB` the process's `ru_maxrss`, and
`RSS before MB` its RSS when the step started (the texts and shingles already in memory). For `--export` they are
bench.py's: the wall time of the whole process and the `ru_maxrss` of its largest process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import CLI_CMD, DEFAULT_STORE, LAUNCHER, prepare_store, remove_store, warm_cache  # noqa: E402

LIBRARY_STEPS = {
    "datasketch": ("signatures", "LSH insert", "LSH query"),
    "rensa": ("signatures", "LSH insert", "LSH query"),
    "audit": ("audit",),
}

CHILD = r"""
import json, random, resource, sys, time
sys.path.insert(0, sys.argv[1])
from bench_audit import synthetic_queries
from personagym_hf.measure.leakage import NUM_PERM, SEED, THRESHOLD, BANDS, LeakageAudit, normalise, shingles

library, n = sys.argv[2], int(sys.argv[3])
queries = synthetic_queries(n)

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

figures = {}
def timed(name, work):
    before, start = rss_mb(), time.perf_counter()
    result = work()
    figures[name] = {"seconds": time.perf_counter() - start, "rss_before_mb": before,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return result

if library == "audit":
    rng = random.Random(0)
    rows = [({"sample_id": f"s{i}", "initial_query": q}, "test" if rng.random() < 0.1 else "train")
            for i, q in enumerate(queries)]
    leakage = timed("audit", lambda: LeakageAudit().add_all(rows).to_dict())
    figures["near_share"] = leakage["pairs"]["train-test"]["initial_query"]["near_share"]
else:
    sets = [shingles(normalise(q)) for q in queries]
    if library == "datasketch":
        from datasketch import LeanMinHash, MinHash, MinHashLSH
        def sign():
            return [LeanMinHash(m) for m in MinHash.bulk([[s.encode() for s in x] for x in sets],
                                                        num_perm=NUM_PERM, seed=SEED)]
        def insert(hashes):
            lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
            for key, m in enumerate(hashes):
                lsh.insert(key, m)
            return lsh
        def query(lsh, hashes):
            return sum(len(lsh.query(m)) for m in hashes)
    else:
        import rensa
        def sign():
            return rensa.RMinHash.from_token_sets(sets, NUM_PERM, SEED)
        def insert(hashes):
            lsh = rensa.RMinHashLSH(THRESHOLD, NUM_PERM, BANDS)
            lsh.insert_many(hashes, 0)
            return lsh
        def query(lsh, hashes):
            return sum(len(found) for found in lsh.query_all(hashes))
    hashes = timed("signatures", sign)
    lsh = timed("LSH insert", lambda: insert(hashes))
    figures["candidates"] = timed("LSH query", lambda: query(lsh, hashes))
print(json.dumps(figures))
"""

STORE_CHILD = r"""
import json, resource, sys, time
import numpy, rensa  # imported by both runs, so that the difference is the audit's data and work
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
        audit.add(data, split)
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


def synthetic_queries(n: int, seed: int = 0) -> list[str]:
    """N queries from the synthetic store's templates with random word edits: near duplicates in large clusters."""
    from personagym_hf.testing.synth import FOLLOWUPS, SENTENCES, STYLED, TASKS

    words = sorted({word for sentence in SENTENCES for word in sentence.lower().split()})
    rng = random.Random(seed)
    queries = []
    for _ in range(n):
        task = rng.choice(TASKS)[0]
        tokens = rng.choice(list(STYLED.values())).format(q=task[0].lower() + task[1:]).split()
        for _ in range(rng.randint(0, 4)):
            edit = rng.random()
            if edit < 0.4:
                tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(words))
            elif edit < 0.7 and len(tokens) > 3:
                tokens.pop(rng.randrange(len(tokens)))
            else:
                at = rng.randrange(len(tokens))
                word = tokens[at]
                if len(word) > 2:
                    letter = rng.randrange(len(word))
                    tokens[at] = word[:letter] + rng.choice("aeiou3") + word[letter + 1 :]
        if rng.random() < 0.5:
            tokens += rng.choice(FOLLOWUPS).split()
        queries.append(" ".join(tokens))
    return queries


def run_measured(cmd: list[str]) -> tuple[float, float, str, float]:
    """Run `cmd` in a fresh process: wall seconds, peak RSS MB, its stdout, CPU seconds (user + system)."""
    with tempfile.TemporaryDirectory() as tmp:
        figures, output = Path(tmp) / "figures", Path(tmp) / "stdout"
        with output.open("wb") as out:
            launcher = [sys.executable, "-S", "-E", "-c", LAUNCHER, str(figures), *cmd]
            done = subprocess.run(launcher, stdout=out, stderr=subprocess.PIPE)
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr.decode(errors='replace')}")
        seconds, maxrss_kib, cpu = figures.read_text().split()
        return float(seconds), int(maxrss_kib) / 1024, output.read_text(), float(cpu)


def libraries(n: int, only: list[str] | None = None) -> dict:
    results = {}
    print(f"{n} synthetic queries: {len(set(synthetic_queries(n)))} distinct")
    print(f"{'library':<11} {'step':<11} {'seconds':>8} {'RSS before MB':>14} {'peak RSS MB':>12}  notes")
    for library, steps in LIBRARY_STEPS.items():
        if only and library not in only:
            continue
        if library == "datasketch" and subprocess.run([sys.executable, "-c", "import datasketch"]).returncode:
            print("datasketch  (not installed: pip install datasketch to measure it)")
            continue
        _, _, out, _ = run_measured([sys.executable, "-c", CHILD, str(Path(__file__).parent), library, str(n)])
        figures = json.loads(out)
        results[library] = figures
        for step in steps:
            f = figures[step]
            note = ""
            if step == "LSH query":
                note = f"{figures['candidates']:,} candidates"
            elif step == "audit":
                note = f"near share train <-> test {figures['near_share']:.1%}"
            print(
                f"{library:<11} {step:<11} {f['seconds']:>8.2f} {f['rss_before_mb']:>14.0f} "
                f"{f['peak_rss_mb']:>12.0f}  {note}"
            )
    return results


def store_cost(args: argparse.Namespace) -> dict:
    store, _ = prepare_store(args.store_dir, args.store, args.keep)
    results = {}
    for name in ("convert", "audit"):
        warm_cache(store)
        _, _, out, _ = run_measured([sys.executable, "-c", STORE_CHILD, str(store), name])
        results[name] = json.loads(out)
    warm_cache(store)
    with tempfile.TemporaryDirectory(prefix="bench_export_") as output:
        seconds, rss, _, _ = run_measured([*CLI_CMD, "export", "--interactions", str(store), "--output", output, "-q"])
    results["export"] = {"seconds": seconds, "peak_rss_mb": rss}
    if not args.keep:
        remove_store(store)
    convert, audited, export = results["convert"], results["audit"], results["export"]
    print(f"{'step':<34} {'seconds':>8} {'peak RSS MB':>12}")
    print(f"{'read + convert + split':<34} {convert['seconds']:>8.2f} {convert['peak_rss_mb']:>12.0f}")
    print(f"{'  + LeakageAudit add + to_dict':<34} {audited['seconds']:>8.2f} {audited['peak_rss_mb']:>12.0f}")
    print(f"{'personagym-hf export':<34} {export['seconds']:>8.2f} {export['peak_rss_mb']:>12.0f}")
    added_seconds = audited["audit_seconds"]
    added_rss = audited["peak_rss_mb"] - convert["peak_rss_mb"]
    print(
        f"audit: {added_seconds:.2f} s (of which to_dict {audited['to_dict_seconds']:.2f} s) = "
        f"{added_seconds / export['seconds']:.1%} of the export; +{added_rss:.0f} MB peak RSS"
    )
    return results


def export_cost(args: argparse.Namespace) -> dict:
    """Whole exports with and without the audit, alternating (see the module docstring): every run and the best."""
    store, _ = prepare_store(args.store_dir, args.export, args.keep)
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
            runs[name].append({"seconds": seconds, "peak_rss_mb": rss, "cpu_seconds": cpu})
            print(f"round {round_ + 1}: {name:<28} {seconds:7.2f} s {cpu:7.2f} s CPU {rss:6.0f} MB", flush=True)
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
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libraries", type=int, metavar="N", help="datasketch vs rensa vs the audit on N queries")
    parser.add_argument(
        "--library", action="append", choices=list(LIBRARY_STEPS), help="with --libraries: only this one (repeatable)"
    )
    parser.add_argument("--store", type=int, metavar="N", help="the audit's cost on the bench store of N interactions")
    parser.add_argument("--export", type=int, metavar="N", help="whole exports with and without the audit, N files")
    parser.add_argument("--num-proc", type=int, action="append", help="with --export: N processes (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="with --export: runs of each (default 3)")
    parser.add_argument(
        "--cli", action="append", help="with --export: also time this personagym-hf executable ([LABEL=]PATH)"
    )
    parser.add_argument("--store-dir", default=DEFAULT_STORE, help="where the bench store is ({n}: its size)")
    parser.add_argument("--keep", action="store_true", help="reuse the store when it has the right size")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if not (args.libraries or args.store or args.export):
        parser.error("pass --libraries N, --store N and/or --export N")
    figures = {}
    if args.libraries:
        figures["libraries"] = libraries(args.libraries, args.library)
    if args.store:
        figures["store"] = store_cost(args)
    if args.export:
        figures["export"] = export_cost(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
