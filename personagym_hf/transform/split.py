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
GROUP_WORDS = {"persona": "personas", "query": "original_queries", "persona_and_query": "groups", "grid": "groups"}


def skew_warnings(statistics: dict, ratios: dict[str, float], split_by: SplitBy, assignment: str) -> list[str]:
    """A line for each split that is empty or more than 4 points off its ratio (under `grid` the test splits count
    as one, against the test ratio), with the one thing that would bring it closer. Whole groups go to a split, so
    few groups give lumpy splits: hashing each group on its own (`split_assignment: hashed`) more than balancing
    them, which keeps a split within about one group's samples of its ratio."""
    counts = dict(statistics["samples_by_split"])
    if split_by == "grid":
        counts["test"] = sum(counts.pop(name, 0) for name in ("test", "test_unseen_persona", "test_unseen_query"))
    total = sum(counts.values())
    groups = statistics.get("split_assignment", {}).get("groups", {})
    lines = []
    for name, ratio in ratios.items():
        count = counts.get(name, 0)
        if not total or ratio <= 0 or (count and abs(count / total - ratio) <= SKEW_POINTS):
            continue
        state = "is empty" if not count else f"has {count / total:.1%} of the samples"
        what = "the test splits together" if split_by == "grid" and name == "test" else f"split {name}"
        line = f"{what} {state} ({count} of {total}, ratio {ratio:.0%})"
        if split_by == "sample":
            pass
        elif assignment == "hashed":
            line += (
                f": hashing {statistics['total_personas'] if split_by == 'persona' else 'the'} "
                f"{GROUP_WORDS[split_by]} one at a time gives lumpy splits; split_assignment: balanced (the default) "
                f"keeps every split within about one group's samples of its ratio"
            )
        else:
            line += f": {_groups(split_by, groups)} are too few to come closer to these ratios"
        lines.append(line)
    return lines


def _groups(split_by: str, groups: dict) -> str:
    if split_by == "grid":
        return f"{groups.get('personas', 0)} personas and {groups.get('queries', 0)} original_queries"
    count = groups.get({"persona": "personas", "query": "queries"}.get(split_by, split_by), 0)
    return f"{count} {GROUP_WORDS[split_by]}"


def split_notes(statistics: dict, ratios: dict[str, float]) -> list[str]:
    """What the export's summary says of its splits: what the mode keeps apart, what it lets cross, and the mode
    that would hold out what this one lets leak, with its cost (from the pre-pass's figures, `assign.py`)."""
    section = statistics.get("split_assignment")
    if not section or "groups" not in section:
        return []
    mode, groups = section["split_by"], section["groups"]
    personas, queries = groups["personas"], groups["queries"]
    crossing_p, crossing_q = section["personas_in_several_splits"], section["queries_in_several_splits"]
    other = section.get("alternatives", {})
    total = statistics["total_samples"]
    notes = []
    if mode == "persona" and crossing_q:
        query, grid = other["query"], other["grid"]
        notes.append(
            f"split_by persona keeps personas apart, not queries: {crossing_q} of {queries} original_queries are in "
            f"more than one split; split_by: query would keep each in one split "
            f"({query['personas_in_several_splits']} of {personas} personas would then be in more than one), "
            f"split_by: grid both ({grid['held_out']} of {total} samples in no split)"
        )
    elif mode == "query":
        notes.append(
            f"split_by query: each of {queries} original_queries in one split; {crossing_p} of {personas} personas "
            "are in more than one"
        )
    elif mode == "persona_and_query":
        largest = section["largest_group"]
        smallest = min((ratio for ratio in ratios.values() if ratio > 0), default=0.0)
        if largest["share"] > smallest:
            notes.append(
                f"split_by persona_and_query: one group holds {largest['share']:.1%} of the samples (its personas "
                "and queries are linked into one); split_by: grid keeps personas and queries apart "
                f"({other['grid']['held_out']} of {total} samples in no split)"
            )
    elif mode == "grid":
        notes.append(
            f"split_by grid: no test persona or query in train or validation, no validation persona or query in "
            f"train or a test split; {statistics['held_out']} of {total} samples in no split"
        )
    if section.get("across_splits"):
        notes.append(
            f"{section['across_splits']} groups have earlier rows in more than one split (a new sample joins groups "
            "already apart); an append never moves a row: re-export with --no-append to regroup"
        )
    moved = section.get("rebuild_would_move")
    if moved and moved["samples"]:
        notes.append(
            f"an export without --append would put {moved['samples']} samples ({moved['groups']} groups) in other "
            "splits than this append keeps them in"
        )
    return notes
