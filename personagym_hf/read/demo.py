"""The demo interaction store bundled with the package (made by `scripts/make_demo_store.py`)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def demo_store_path() -> Path:
    return Path(str(files("personagym_hf") / "demo" / "interactions"))
