"""Which split a sample belongs to: a salted hash of its persona (or of the sample itself).

Deliberately not `Dataset.train_test_split`: that shuffles the whole dataset, so splits would move as
data is appended and one persona could land in two splits. A hash of the group key depends on nothing
but that key and the seed, so a sample never changes split, and a persona is in exactly one.
"""

from __future__ import annotations

import hashlib

from ..config import SPLIT_NAMES, SplitBy
from ..schema import TrainingSample


def hash_fraction(key: str, seed: int) -> float:
    """A stable number in [0, 1) for `key` under `seed`."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, seed: int, ratios: dict[str, float]) -> str:
    point = hash_fraction(key, seed)
    cumulative = 0.0
    for name in SPLIT_NAMES:
        cumulative += ratios[name]
        if point < cumulative:
            return name
    # Floating-point sums can fall a hair short of 1: the last split with a share takes the rest.
    return [name for name in SPLIT_NAMES if ratios[name] > 0][-1]


class NeedsGroupsError(ValueError):
    """`split_by: persona_and_query` asked of something that sees one sample at a time."""


def split_key(sample: TrainingSample | dict, split_by: SplitBy) -> str:
    if split_by == "persona_and_query":  # a sample's group depends on every other sample (groups.py)
        raise NeedsGroupsError(
            "split_by persona_and_query groups the whole store before any split is given: export it with "
            "`personagym-hf export` or `export_store`, or use split_by persona or sample here"
        )
    get = sample.get if isinstance(sample, dict) else lambda name: getattr(sample, name)
    return get("persona_id") if split_by == "persona" else get("sample_id")


def split_of(sample: TrainingSample | dict, seed: int, ratios: dict[str, float], split_by: SplitBy = "persona") -> str:
    return assign_split(split_key(sample, split_by), seed, ratios)


SKEW_POINTS = 0.04  # how far a split may drift from its ratio before the export says so


def skew_warnings(counts: dict[str, int], personas: int, ratios: dict[str, float], split_by: SplitBy) -> list[str]:
    """A line for each split that is empty or more than 4 points off its ratio. Persona hashing puts whole
    personas in a split, so few personas give lumpy splits; hashing samples would not, at a price."""
    total = sum(counts.values())
    lines = []
    for name, ratio in ratios.items():
        count = counts.get(name, 0)
        if not total or ratio <= 0 or (count and abs(count / total - ratio) <= SKEW_POINTS):
            continue
        state = "is empty" if not count else f"has {count / total:.1%} of the samples"
        line = f"split {name} {state} ({count} of {total}, ratio {ratio:.0%})"
        if split_by == "persona":
            even = round(ratio * total)
            line += (
                f": {personas} personas are too few to split evenly; split_by: sample would give ~{even} but put a "
                "persona in several splits"
            )
        lines.append(line)
    return lines
