"""`split_by: persona_and_query`: samples that share a persona, a normalised `original_query` or a `query_id` are
one group, and a group's samples go to one split, so neither personas nor target queries cross splits.

Groups are the connected components of the graph whose nodes are samples and their keys (union-find). A group's
split is the salted hash of its smallest key digest. That needs every sample's keys before any split is given:
`job.export_store` reads the store once for them (the pre-pass) before the normal pass. Memory: per sample one
8-byte digest per key and of its id (numpy arrays at the end); no text is kept.

An append never moves a row. The earlier export's rows are added with their split (`add(row, earlier=split)`,
their sample id joining them to their store record, whose keys the row may lack under the format flags). Then:
- a group without earlier rows goes where its hash says;
- a group whose earlier rows are all in one split stays there, new samples included, even when the group now
  hashes elsewhere (a new sample brought it a smaller key): counted as `kept_by_append` (an export without
  `--append` would put the group in its hash's split);
- a group whose earlier rows are in several splits — a new sample joined groups already apart — is a leak no
  append can undo: counted as `across_splits`, with a warning, and its new samples go to the split holding most
  of its earlier rows (ties: train, validation, test).
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Any

import numpy as np

from ..config import SPLIT_NAMES

KEY_FIELDS = ("persona", "original_query", "query_id")


def _digest(kind: str, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{kind}\x1f{text}".encode(), digest_size=8).digest(), "little")


def keys_of(sample: dict) -> list[int]:
    """Digests of a sample's group keys: its persona, normalised original_query and query_id, where it has them."""
    from ..measure.leakage import normalise

    keys = []
    persona = sample.get("persona_id")
    if isinstance(persona, str) and persona:
        keys.append(_digest("persona", persona))
    original = sample.get("original_query")
    if isinstance(original, str) and normalise(original):
        keys.append(_digest("original_query", normalise(original)))
    query_id = (sample.get("metadata") or {}).get("query_id") or sample.get("query_id")
    if isinstance(query_id, str) and query_id:
        keys.append(_digest("query_id", query_id))
    return keys


class SplitGroups:
    """Samples' group keys (`add`), then `resolve` gives every sample its split (`split_of`) and `to_dict`."""

    def __init__(self, seed: int, ratios: dict[str, float]):
        self.seed, self.ratios = seed, ratios
        self.edge_sample, self.edge_key = array("Q"), array("Q")  # one edge per (sample, key), (sample, sample)
        self.earlier_sample, self.earlier_split = array("Q"), array("B")  # rows of the earlier export
        self.resolved: dict[str, Any] | None = None

    def add(self, sample: dict, earlier: str | None = None) -> None:
        node = _digest("sample", str(sample.get("sample_id") or ""))
        self.edge_sample.append(node)
        self.edge_key.append(node)
        for key in keys_of(sample):
            self.edge_sample.append(node)
            self.edge_key.append(key)
        if earlier is not None:
            self.earlier_sample.append(node)
            self.earlier_split.append(SPLIT_NAMES.index(earlier))

    def resolve(self) -> None:
        from .split import assign_split

        samples = np.frombuffer(self.edge_sample, dtype=np.uint64)
        keys = np.frombuffer(self.edge_key, dtype=np.uint64)
        nodes, inverse = np.unique(np.concatenate([samples, keys]), return_inverse=True)
        a, b = inverse[: len(samples)], inverse[len(samples) :]
        parent = list(range(len(nodes)))
        for x, y in zip(a.tolist(), b.tolist()):
            while parent[x] != x:  # path halving
                parent[x] = x = parent[parent[x]]
            while parent[y] != y:
                parent[y] = y = parent[parent[y]]
            if x != y:
                parent[max(x, y)] = min(x, y)
        root = np.array(parent, dtype=np.int64)
        while True:  # every node straight to its root
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
        sample_nodes = np.unique(a)  # node numbers of the samples, in digest order
        is_key = np.ones(len(nodes), dtype=bool)
        is_key[sample_nodes] = False
        # A group's hash key: its smallest key digest (nodes are sorted), or its smallest sample's when it has none.
        key_of = np.full(len(nodes), len(nodes), dtype=np.int64)
        np.minimum.at(key_of, root[is_key], np.flatnonzero(is_key))
        fallback = np.full(len(nodes), len(nodes), dtype=np.int64)
        np.minimum.at(fallback, root[sample_nodes], sample_nodes)
        key_of = np.where(key_of < len(nodes), key_of, fallback)
        groups, group_of = np.unique(root[sample_nodes], return_inverse=True)
        hashed = np.array(
            [SPLIT_NAMES.index(assign_split(f"{int(nodes[key_of[g]]):016x}", self.seed, self.ratios)) for g in groups],
            dtype=np.int64,
        )
        rows = np.zeros((len(groups), len(SPLIT_NAMES)), dtype=np.int64)  # earlier rows per group and split
        if len(self.earlier_sample):
            where = np.searchsorted(nodes[sample_nodes], np.frombuffer(self.earlier_sample, dtype=np.uint64))
            np.add.at(rows, (group_of[where], np.frombuffer(self.earlier_split, dtype=np.uint8)), 1)
        splits_with_rows = (rows > 0).sum(1)
        split = np.where(splits_with_rows > 0, rows.argmax(1), hashed)  # argmax: the first of the most
        sizes = np.bincount(group_of, minlength=len(groups))
        self.sample_digests = nodes[sample_nodes]
        self.sample_split = split[group_of].astype(np.uint8)
        total = len(sample_nodes)
        largest = int(sizes.max()) if total else 0
        self.resolved = {
            "groups": len(groups),
            "samples": total,
            "largest_group": {"samples": largest, "share": round(largest / total, 4) if total else 0.0},
            "kept_by_append": int(((splits_with_rows == 1) & (split != hashed)).sum()),
            "across_splits": int((splits_with_rows > 1).sum()),
        }
        self.edge_sample, self.edge_key = array("Q"), array("Q")  # the graph is no longer needed

    def split_of(self, sample_id: str) -> str:
        node = np.uint64(_digest("sample", sample_id))
        where = int(np.searchsorted(self.sample_digests, node))
        if where == len(self.sample_digests) or self.sample_digests[where] != node:
            raise KeyError(f"split_by persona_and_query: sample {sample_id!r} was not in the pre-pass over the store")
        return SPLIT_NAMES[self.sample_split[where]]

    def to_dict(self) -> dict[str, Any]:
        """The `split_groups` section of `statistics.json`, with its warnings."""
        if self.resolved is None:
            self.resolve()
        section = dict(self.resolved)
        section["warnings"] = warning_lines(section, self.ratios)
        return section


def warning_lines(section: dict[str, Any], ratios: dict[str, float]) -> list[str]:
    """What an export's summary says about its groups: a group too big for the ratios, groups across splits."""
    lines = []
    largest = section["largest_group"]
    shares = [(name, ratio) for name, ratio in ratios.items() if ratio > 0]
    name, ratio = min(shares, key=lambda item: item[1])
    if len(shares) > 1 and largest["share"] > ratio:
        lines.append(
            f"split groups: the largest group holds {largest['share']:.1%} of the samples ({largest['samples']} of "
            f"{section['samples']}), more than the smallest split ratio ({name} {ratio:g}): the splits cannot follow "
            "the ratios"
        )
    if section["across_splits"]:
        lines.append(
            f"split groups: {section['across_splits']} groups have earlier rows in more than one split (a new sample "
            "shares a persona or query with both); an append never moves a row: re-export with --no-append to "
            "regroup"
        )
    return lines


__all__ = ["KEY_FIELDS", "SplitGroups", "keys_of", "warning_lines"]
