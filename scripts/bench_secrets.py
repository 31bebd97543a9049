"""What the secrets scanner costs: an export with and without `--redact-secrets`, and the push's gate over the export.

    python scripts/bench_secrets.py -n 100000 --store chat     # dialogues with code, configuration and logs
    python scripts/bench_secrets.py -n 100000 --store synth    # scripts/bench.py's store (~5 KB per interaction)
    python scripts/bench_secrets.py -n 100000 --store PATH     # any store, e.g. a realistic benchmark profile's
    python scripts/bench_secrets.py -n 100000 --keep --steps 20000 --rounds 3   # in-process CPU per record
    python scripts/bench_secrets.py --corpus                   # the labelled corpus, and random keys missed

The stores are written once under the temp folder (`--keep` reuses them). `chat` is
`personagym_hf.testing.secrets_corpus.write_store`: `synth`'s dialogues (replies of ~1,300 characters) whose every
assistant turn ends with a code block, a configuration snippet or a console log holding placeholders (`xoxp-your-
token-here`, `sk-your-api-key-here`, `postgres://user:password@…`) and words holding `sk-`, and two users who pasted
a key: most samples hold a rule's keyword there, the worst case for the redaction, which then searches every string.

Export rounds alternate off / on (`personagym-hf export -q --no-audit` in a fresh process, so that they differ by
the redaction alone; wall time and the CPU time of the process and its workers from `wait4`); the gate is
`hub.safety.scan_folder` over the on-round's `hf_dataset/` (what `push` scans before uploading), in this process.
Each figure is printed with the 1-minute load average: the machine may be shared, so compare figures taken back to
back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import CLI_CMD, LAUNCHER, MARKER  # noqa: E402  (the spawner bench.py times its steps with)


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def store_for(kind: str, n: int, keep: bool) -> Path:
    if kind not in ("chat", "synth"):
        return Path(kind)
    folder = Path(tempfile.gettempdir()) / "bench_secrets" / f"{kind}-{n}"
    if keep and (folder / MARKER).exists():
        return folder
    if (folder / MARKER).exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    if kind == "chat":
        from personagym_hf.testing.secrets_corpus import write_store

        write_store(folder, n, max(1, n // 20), seed=1, real_keys=2, reply_chars=1300)
    else:
        from personagym_hf.testing.synth import write_store

        write_store(folder, n, max(1, n // 20), seed=1, reply_chars=1300)
    (folder / MARKER).write_text("")
    print(f"wrote the {kind} store of {n:,} interactions in {time.perf_counter() - start:.0f} s: {folder}")
    return folder


def export(store: Path, out: Path, redact: bool) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*CLI_CMD, "export", "--interactions", str(store), "--output", str(out), "-q", "--no-audit"]
    if redact:
        cmd.append("--redact-secrets")
    executable = shutil.which(cmd[0]) or cmd[0]
    with tempfile.NamedTemporaryFile("r", suffix=".times") as times:
        subprocess.run([sys.executable, "-S", "-E", "-c", LAUNCHER, times.name, executable, *cmd[1:]], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        wall, _rss, cpu = (float(value) for value in times.read().split())
    return wall, cpu


def gate(folder: Path) -> tuple[float, float, int]:
    from personagym_hf.hub.safety import scan_folder

    start, cpu = time.perf_counter(), time.process_time()
    found = scan_folder(folder)
    return time.perf_counter() - start, time.process_time() - cpu, len(found)


def corpus(keys: int = 20000) -> None:
    """The labelled corpus's figures, then what the placeholder filters cost: of `keys` random keys of each format
    (seeded), how many the scanner misses."""
    from personagym_hf.measure.secrets import find_secrets
    from personagym_hf.testing.secrets_corpus import _Maker, figures

    for name, value in figures().items():
        print(f"{name:>16}: {value}")
    maker = _Maker(123)
    formats = {
        "google_api_key": maker.google,
        "openai_api_key": maker.openai_project,
        "anthropic_api_key": maker.anthropic,
        "sk_api_key": maker.sk_other,
        "github_token": maker.github,
        "gitlab_token": maker.gitlab,
        "huggingface_token": maker.huggingface,
        "aws_access_key_id": maker.aws_id,
        "slack_token": maker.slack_bot,
        "stripe_secret_key": maker.stripe,
    }
    for kind, make in formats.items():
        missed = sum(1 for _ in range(keys) if not find_secrets(f" {make()} "))
        print(f"random {kind:>18}: {missed} of {keys:,} missed")


def steps(store: Path, count: int, rounds: int) -> None:
    """In this process, over the store's first `count` files, GC off, alternating off / on, best of `rounds`: CPU time
    per record of `encode` (rows and every config's Arrow tables, no audit) and of a whole `export_store`, each
    without and with redaction, then of the gate over that export. Less sensitive to a shared machine's load than
    the exports in their own processes."""
    import gc
    from dataclasses import replace

    from personagym_hf.config import ExportConfig
    from personagym_hf.hub.safety import scan_folder
    from personagym_hf.read.store import discover_paths, iter_file
    from personagym_hf.request import ExportRequest, Measures
    from personagym_hf.run.chunks import ChunkResult, InMemory
    from personagym_hf.run.job import export_store
    from personagym_hf.transform.collect import interaction_to_sample
    from personagym_hf.transform.encode import Encoder, encode

    files = discover_paths(store)[:count]
    configs = {False: ExportConfig(), True: ExportConfig(redact_secrets=True)}
    no_audit = Measures(audit=None)
    best: dict[str, float] = {}

    def timed(name: str, work) -> None:
        start = time.process_time()
        work()
        best[name] = min(best.get(name, float("inf")), (time.process_time() - start) / len(files) * 1e6)

    def run(redact: bool) -> None:  # `encode` alone: splits by a hash of the persona (no pre-pass to run first)
        encoder = Encoder(replace(configs[redact], split_assignment="hashed"), split=True, views=True)
        sink = InMemory(ChunkResult(0, None), encoder.split_names)
        encode((record for path in files for record in iter_file(path)), encoder, interaction_to_sample, sink)

    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "store"
        small.mkdir()
        for index, path in enumerate(files):
            os.symlink(path, small / f"{index:06d}.json")
        gc.disable()
        try:
            for _ in range(rounds):
                for redact in (False, True):
                    timed(f"encode{' --redact-secrets' if redact else ''}", lambda: run(redact))
                    request = ExportRequest(small, Path(tmp) / f"out-{redact}", configs[redact], measures=no_audit)
                    timed(f"export_store{' --redact-secrets' if redact else ''}",
                          lambda: export_store(request, interaction_to_sample))  # fmt: skip
                timed("gate (scan_folder)", lambda: scan_folder(Path(tmp) / "out-True" / "hf_dataset"))
        finally:
            gc.enable()
    print(f"CPU per record over {len(files):,} interactions, best of {rounds} ({load()}):")
    for name, value in best.items():
        print(f"  {name:<32} {value:7.2f} us")
    for stage in ("encode", "export_store"):
        extra = best[f"{stage} --redact-secrets"] - best[stage]
        print(f"  redaction in {stage:<19} {extra:+7.2f} us ({extra / best[stage]:+.1%})")
    print(f"  gate / export_store              {best['gate (scan_folder)'] / best['export_store']:7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100000, help="interactions in a written store (default 100000)")
    parser.add_argument("--store", default="chat", help="chat, synth, or the path of a store (default chat)")
    parser.add_argument("--rounds", type=int, default=2, help="export rounds, each off then on (default 2)")
    parser.add_argument("--keep", action="store_true", help="reuse a store written by an earlier run")
    parser.add_argument("--corpus", action="store_true", help="print the labelled corpus's figures and stop")
    parser.add_argument(
        "--steps", type=int, metavar="FILES", help="in-process CPU per record over the store's first FILES files, only"
    )
    args = parser.parse_args()
    if args.corpus:
        corpus()
        return
    store = store_for(args.store, args.n, args.keep)
    if args.steps:
        steps(store, args.steps, args.rounds)
        return
    size = sum(path.stat().st_size for path in store.rglob("*.json"))
    print(f"store {store}: {size / 1e6:,.0f} MB of JSON")
    work = Path(tempfile.mkdtemp(prefix="bench_secrets_out_"))
    try:
        for round_ in range(1, args.rounds + 1):
            for redact in (False, True):
                wall, cpu = export(store, work / f"out-{redact}", redact)
                label = "export --redact-secrets" if redact else "export                 "
                print(f"round {round_}  {label}  {wall:7.1f} s wall  {cpu:7.1f} s CPU  ({load()})")
        folder = work / "out-True" / "hf_dataset"
        data = sum(path.stat().st_size for path in folder.rglob("*.parquet"))
        for round_ in range(1, args.rounds + 1):
            wall, cpu, found = gate(folder)
            print(f"round {round_}  push gate (scan_folder)  {wall:7.1f} s wall  {cpu:7.1f} s CPU  over "
                  f"{data / 1e6:,.0f} MB of Parquet, {found} findings  ({load()})")  # fmt: skip
        folder = work / "out-False" / "hf_dataset"
        wall, cpu, found = gate(folder)
        print(f"         gate, unredacted export  {wall:7.1f} s wall  {cpu:7.1f} s CPU  {found} findings  ({load()})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
