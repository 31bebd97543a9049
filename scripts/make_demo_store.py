"""Regenerate the demo store shipped in personagym_hf/demo/interactions (deterministic)."""

import shutil
from pathlib import Path

from personagym_hf.testing.synth import write_store

DEMO = Path(__file__).resolve().parent.parent / "personagym_hf" / "demo" / "interactions"

if __name__ == "__main__":
    shutil.rmtree(DEMO, ignore_errors=True)
    write_store(DEMO, count=80, personas=40, seed=7, reply_chars=300)
    print(f"wrote {DEMO}")
