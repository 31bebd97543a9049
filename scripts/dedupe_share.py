"""How much of each Parquet shard the Hub's storage can reuse after an append.

Exports a store, appends 5% more interactions, and for every shard that both exports have, cuts the old and
the new file into content-defined chunks the way Xet storage does before upload — a gear rolling hash over
the file's bytes, 64 KiB chunks on average (8 KiB to 128 KiB) — and prints the share of the new file's bytes
that lie in chunks the old file already has: what a re-push does not upload again. It does so twice: with the
shards written as the export writes them (content-defined pages, `shards.CDC_OPTIONS`) and with that turned
off (pyarrow's fixed-size pages), so the README can give both figures.

    python scripts/dedupe_share.py --store /tmp/bench_store/100000 [--extra-share 0.05]

The chunker is this script's own: it measures the file-level reuse an upload sees, which is what matters for a
re-push; it is not part of the package.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from personagym_hf.config import parse_config  # noqa: E402
from personagym_hf.request import ExportRequest, Outputs  # noqa: E402
from personagym_hf.run.job import export_store  # noqa: E402
from personagym_hf.testing.synth import iter_interactions  # noqa: E402
from personagym_hf.training_data import TrainingDataCollector  # noqa: E402
from personagym_hf.write import parquet as shards  # noqa: E402
from personagym_hf.write.files import dumps_line  # noqa: E402

GEAR = np.random.default_rng(0).integers(0, 2**64 - 1, size=256, dtype=np.uint64)
MASK = np.uint64(0xFFFF << 48)  # 16 bits: a boundary every 64 KiB on average
MIN_CHUNK, MAX_CHUNK = 8 << 10, 128 << 10
BLOCK = 8 << 20


def boundaries(data: bytes) -> list[int]:
    """Chunk ends: where the gear hash of the last 64 bytes has its top 16 bits clear, within MIN/MAX sizes."""
    candidates: list[np.ndarray] = []
    for start in range(0, len(data), BLOCK):
        lead = min(start, 63)  # the 63 bytes before the block, so the hash is the same as one pass would give
        values = GEAR[np.frombuffer(data, np.uint8, count=min(BLOCK, len(data) - start) + lead, offset=start - lead)]
        hashes = np.zeros(len(values), np.uint64)
        for shift in range(64):
            hashes[shift:] += values[: len(values) - shift] << np.uint64(shift)
        found = np.flatnonzero((hashes[lead:] & MASK) == 0) + start
        candidates.append(found)
    ends, last = [], 0
    for end in (int(c) + 1 for c in np.concatenate(candidates)):
        while end - last > MAX_CHUNK:
            last += MAX_CHUNK
            ends.append(last)
        if end - last >= MIN_CHUNK:
            ends.append(end)
            last = end
    while len(data) - last > MAX_CHUNK:
        last += MAX_CHUNK
        ends.append(last)
    if last < len(data):
        ends.append(len(data))
    return ends


def chunk_digests(data: bytes) -> list[tuple[bytes, int]]:
    out, start = [], 0
    for end in boundaries(data):
        out.append((hashlib.sha256(data[start:end]).digest(), end - start))
        start = end
    return out


def reused_share(old: Path, new: Path) -> float:
    known = {digest for digest, _ in chunk_digests(old.read_bytes())}
    chunks = chunk_digests(new.read_bytes())
    return sum(size for digest, size in chunks if digest in known) / max(1, sum(size for _, size in chunks))


def measure(store: Path, extra: Path, work: Path, cdc: bool) -> dict[str, tuple[float, int]]:
    shards.CDC_OPTIONS = saved if cdc else False
    out = work / ("cdc" if cdc else "plain")
    convert = TrainingDataCollector().interaction_to_training_sample
    export_store(ExportRequest(store, out, parse_config({})), convert)
    before = work / "before"
    shutil.rmtree(before, ignore_errors=True)
    shutil.copytree(out / "hf_dataset" / "data", before)
    export_store(ExportRequest((store, extra), out, parse_config({}), Outputs(append=True)), convert)
    figures = {}
    for path in sorted((out / "hf_dataset" / "data").glob("*/*.parquet")):
        name = path.relative_to(out / "hf_dataset" / "data").as_posix()
        if (before / name).exists():
            figures[name] = (reused_share(before / name, path), path.stat().st_size)
    shutil.rmtree(out)
    return figures


saved = getattr(shards, "CDC_OPTIONS", False)  # False: a version of the export without CDC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, type=Path, help="a store folder (e.g. bench.py's --keep store)")
    parser.add_argument("--extra-share", type=float, default=0.05, help="interactions appended, as a share")
    args = parser.parse_args()
    count = sum(1 for p in args.store.rglob("interaction_*.json"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        extra = work / "extra.jsonl"  # new interactions of the same personas, with ids of their own
        with extra.open("wb") as f:
            for interaction in iter_interactions(int(count * args.extra_share), max(1, count // 20), 99, 1300):
                interaction["interaction_id"] += "_appended"
                f.write(dumps_line(interaction))
        results = {cdc: measure(args.store, extra, work, cdc) for cdc in ((False, True) if saved else (False,))}
        results.setdefault(True, {})
    if not (results[True] or results[False]):
        sys.exit("no shard is in both exports")
    # `datasets` only writes content_defined_chunking into the metadata when it is on; so does the export.
    print(f"store {args.store} ({count:,} interactions) + {int(count * args.extra_share):,} appended")
    print(f"{'shard':45} {'MB':>8} {'reused, fixed pages':>20} {'reused, CDC pages':>18}")
    for name in sorted(set(results[True]) | set(results[False])):
        plain, cdc = results[False].get(name, (float("nan"), 0)), results[True].get(name, (float("nan"), 0))
        print(f"{name:45} {cdc[1] / 1e6:8.1f} {plain[0]:20.1%} {cdc[0]:18.1%}")
    for cdc in (cdc for cdc in (False, True) if results[cdc]):
        total = sum(size for _, size in results[cdc].values())
        reused = sum(share * size for share, size in results[cdc].values())
        print(f"all shards, {'CDC' if cdc else 'fixed'} pages: {reused / total:.1%} of {total / 1e6:.1f} MB reused")


if __name__ == "__main__":
    main()
