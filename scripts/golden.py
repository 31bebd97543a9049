"""Golden comparison: the outputs of two checkouts of personagym-hf, file by file, over a matrix of exports.

    python scripts/golden.py run  --code /path/to/old/checkout --out /tmp/golden/old
    python scripts/golden.py run  --code .                     --out /tmp/golden/new
    python scripts/golden.py compare /tmp/golden/old /tmp/golden/new

`run` exports the bundled demo store and a synthetic store (with an id repeated chunks later, a JSON Lines file
with bad lines, and token usage files) with every layout and flag combination below, with 1 and 2 processes, and
an append, through the command line of the checkout given (so any commit can be measured), then writes
`sums.json`: the sha256 of every file of every export, `hf_dataset/` included. `compare` prints the cases and files
that differ, and exits 1 when any does. A case a checkout cannot run (an option it lacks) is listed as skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT = 600  # seconds an export may take before it counts as hung
CONFIGS = {
    "default": "",
    "minimal": "training_data:\n  format:\n    include_persona: false\n    include_trajectory: true\n"
    "    include_full_conversation: true\n",
    "no-persona": "training_data:\n  format:\n    include_persona: false\n",
    "by-sample": "training_data:\n  split_by: sample\n",
    "persona-and-query": "training_data:\n  split_by: persona_and_query\n",
    "query": "training_data:\n  split_by: query\n",
    "grid": "training_data:\n  split_by: grid\n",
    "hashed": "training_data:\n  split_assignment: hashed\n",
    "ratios": "training_data:\n  split: {train: 0.5, validation: 0.25, test: 0.25}\nexperiment:\n  seed: 7\n",
}
# (case name, config, extra options); every case runs with --num-proc 1 and 2
CASES = [
    ("default", "default", []),
    ("minimal", "minimal", []),
    ("no-persona", "no-persona", []),
    ("by-sample", "by-sample", []),
    ("persona-and-query", "persona-and-query", []),
    ("query", "query", []),
    ("grid", "grid", []),
    ("hashed", "hashed", []),
    ("ratios", "ratios", []),
    ("no-split", "default", ["--no-split"]),
    ("no-hf-dataset", "default", ["--no-hf-dataset"]),
    ("no-audit", "default", ["--no-audit"]),
]


def make_store(folder: Path, count: int) -> Path:
    """A synthetic store of `count` interaction files plus what real stores have that is awkward: an interaction_id
    repeated after the first chunk, and a JSON Lines file with a line that is no interaction, one that is no JSON,
    and a duplicate."""
    sys.path.insert(0, str(HERE.parent))
    from personagym_hf.testing.synth import write_store

    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    write_store(folder, count, personas=max(10, count // 8), seed=3)
    files = sorted(p for p in folder.rglob("*.json") if not p.name.startswith(("token_usage", "index")))
    first = json.loads(files[0].read_text(encoding="utf-8"))
    (folder / "zz_late_copy.json").write_text(json.dumps(first), encoding="utf-8")
    (folder / "bad.jsonl").write_text(
        '{"not": "an interaction"}\nnot json\n' + json.dumps(first) + "\n", encoding="utf-8"
    )
    (folder / ".complete").write_text("", encoding="utf-8")
    return folder


def export(code: Path, store: str | None, out: Path, config: str, extra: list[str], num_proc: int) -> str | None:
    """Run one export with the checkout `code`; returns the error's last line when it fails."""
    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text(CONFIGS[config], encoding="utf-8")
    source = ["--demo"] if store is None else ["--interactions", store]
    cmd = [sys.executable, "-m", "personagym_hf", "export", *source, "--output", str(out), "--config", str(cfg)]
    cmd += ["-q", "--on-bad-records", "skip", "--num-proc", str(num_proc), *extra]
    env = dict(os.environ, PYTHONPATH=str(code))
    # cwd outside any checkout: a checkout in the working directory would shadow PYTHONPATH
    process = subprocess.Popen(cmd, env=env, cwd=out.parent, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the export and its workers
        process.communicate()
        return f"still running after {TIMEOUT} s (killed)"
    if process.returncode != 0:
        return (stderr.strip().splitlines() or [f"exit {process.returncode}"])[-1]
    return None


def sums(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run(args: argparse.Namespace) -> None:
    code, out = Path(args.code).resolve(), Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    store = str(make_store(Path(args.store).resolve(), args.n))
    results: dict[str, dict] = {}

    def record(case: str, folder: Path, error: str | None) -> None:
        results[case] = {"error": error} if error else {"files": sums(folder)}
        print(f"{case}: {error or 'ok'}", flush=True)

    for store_name, source in (("demo", None), ("synth", store)):
        for name, config, extra in CASES:
            for num_proc in (1, 2):
                folder = out / store_name / f"{name}-np{num_proc}"
                folder.parent.mkdir(parents=True, exist_ok=True)
                record(
                    f"{store_name}/{name}/np{num_proc}", folder, export(code, source, folder, config, extra, num_proc)
                )
    # An append: half of the synthetic store, then all of it, into the same folder.
    half = out / "synth-half"
    half.mkdir()
    files = sorted(Path(store).iterdir())
    for path in files[: len(files) // 2]:
        (half / path.name).symlink_to(path)
    for num_proc in (1, 2):
        folder = out / "synth" / f"append-np{num_proc}"
        error = export(code, str(half), folder, "default", [], num_proc)
        error = error or export(code, store, folder, "default", ["--append"], num_proc)
        record(f"synth/append/np{num_proc}", folder, error)
    (out / "sums.json").write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")


def compare(args: argparse.Namespace) -> int:
    old = json.loads((Path(args.old) / "sums.json").read_text(encoding="utf-8"))
    new = json.loads((Path(args.new) / "sums.json").read_text(encoding="utf-8"))
    differ = same = skipped = 0
    for case in sorted(set(old) | set(new)):
        a, b = old.get(case, {}), new.get(case, {})
        if "files" not in a or "files" not in b:
            skipped += 1
            state = {
                name: run.get("error", "ok" if "files" in run else "absent") for name, run in (("old", a), ("new", b))
            }
            print(f"skipped {case}: old: {state['old']}; new: {state['new']}")
            continue
        names = sorted(set(a["files"]) | set(b["files"]))
        changed = [name for name in names if a["files"].get(name) != b["files"].get(name)]
        if changed:
            differ += 1
            print(f"DIFFERS {case}: {', '.join(changed)}")
        else:
            same += 1
    files = sum(len(case.get("files", {})) for case in new.values())
    print(f"{same} cases identical, {differ} differ, {skipped} skipped; {files} files in the new run")
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="export the matrix with one checkout and write sums.json")
    runner.add_argument("--code", required=True, help="checkout whose personagym_hf runs the exports")
    runner.add_argument("--out", required=True, help="folder for the exports and sums.json (replaced)")
    runner.add_argument("-n", type=int, default=20000, help="interactions in the synthetic store (default 20000)")
    runner.add_argument("--store", default="/tmp/golden-store", help="synthetic store folder, reused when complete")
    comparer = commands.add_parser("compare", help="print the differences of two runs; exit 1 when any")
    comparer.add_argument("old")
    comparer.add_argument("new")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        sys.exit(compare(args))


if __name__ == "__main__":
    main()
