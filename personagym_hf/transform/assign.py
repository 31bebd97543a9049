"""Which split each group of samples goes to: groups of the `split_by` mode, assigned so that the splits follow the
ratios, and kept where they are by an append.

Groups (`split_by`):
- `persona`: a persona's samples; `query`: the samples of one target query — the normalised `original_query`
  (`measure.leakage.normalise`), joined with the samples of the same `metadata.query_id`; `persona_and_query`: the
  connected components of personas and queries (a group can swallow a store whose queries serve many personas);
- `grid`: personas and queries are assigned apart, each axis with its own shares (`grid_shares`); a sample goes to
  the split of its (persona, query) cell (`GRID_CELLS`): both in train -> train; both held out for validation, or
  one of them in validation and the other in train -> validation; both in test -> test; a test persona asking a
  train query -> test_unseen_persona; a train persona asking a test query -> test_unseen_query; a validation persona
  with a test query, or the reverse -> held out (in no split: either split would then see a persona or a query of
  the other). So no persona or query held out for test is ever in train or validation, and none held out for
  validation in train or a test split.

Assignment (`split_assignment`):
- `balanced` (the default): with more groups than splits, each split first gets one group (the smallest left), so
  none is empty (under `grid`, the first test persona one who asks a test query: `test` is then not empty either);
  then the groups in the order of a salted hash of their smallest key, each to the split furthest
  below its target (the most samples short of it), so every split ends within about one group's samples of its
  ratio. It needs every group's size first: a pre-pass over the store (`KeyCounts`, `run.job.assign_store`).
- `hashed`: each group to the split its salted hash falls in, knowing nothing of the others: no pre-pass for
  `persona` (the split is a function of the persona alone, `split.assign_split`), and an append places every group
  exactly where a rebuild would; few groups give lumpy splits.

An append keeps every group of the earlier export where it is (the manifest records each key's split,
`Assignment.to_state`), a new sample of an earlier group joins it, and new groups go where the ratios need them;
`rebuild_would_move` says how many groups and samples an export without `--append` would place elsewhere.

Memory: per distinct (persona, query) pair 16 bytes, per key of the tables 9 bytes; no text is kept.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from ..config import GRID_SPLITS, SPLIT_NAMES

HELD_OUT = "held_out"  # the "split" of a grid sample in no split
GRID_NAMES = SPLIT_NAMES + GRID_SPLITS
# (persona's split, query's split) -> the sample's split (None: held out). See the module docstring.
GRID_CELLS: dict[tuple[str, str], str | None] = {
    ("train", "train"): "train",
    ("validation", "validation"): "validation",
    ("validation", "train"): "validation",
    ("train", "validation"): "validation",
    ("test", "test"): "test",
    ("test", "train"): "test_unseen_persona",
    ("train", "test"): "test_unseen_query",
    ("validation", "test"): None,
    ("test", "validation"): None,
}
ASSIGNMENTS = ("balanced", "hashed")
_MASK = (1 << 64) - 1


def digest(kind: str, text: str) -> int:
    """A key's 64-bit digest (the split groups' since they were introduced: their hashed splits stay the same)."""
    return int.from_bytes(hashlib.blake2b(f"{kind}\x1f{text}".encode(), digest_size=8).digest(), "little")


# Personas and queries come back sample after sample (a persona's samples are together in a store, a query serves
# many personas): their digests are remembered, the commonest ones at least; not a long text's (the cache would
# keep it alive), nor a sample's own id.
_digest_cached = lru_cache(maxsize=1 << 12)(digest)
_CACHED_CHARS = 512  # longer texts are not remembered (as `measure.minhash` does for what it normalises)


def _key_digest(kind: str, text: str) -> int:
    return _digest_cached(kind, text) if len(text) <= _CACHED_CHARS else digest(kind, text)


def sample_keys(data: dict) -> tuple[int, list[int], bool]:
    """A sample's persona key, its query keys (normalised original_query, query_id) and False; or, when it has
    neither, its own id's digest in their place (a group of its own) and True."""
    from ..measure.leakage import normalise

    persona = data.get("persona_id")
    persona_key = _key_digest("persona", persona) if isinstance(persona, str) and persona else 0
    queries = []
    original = data.get("original_query")
    if isinstance(original, str):
        text = normalise(original)
        if text:
            queries.append(_key_digest("original_query", text))
    query_id = (data.get("metadata") or {}).get("query_id")
    if isinstance(query_id, str) and query_id:
        queries.append(_key_digest("query_id", query_id))
    if not queries:
        return persona_key, [digest("sample", str(data.get("sample_id") or ""))], True
    return persona_key, queries, False


def grid_shares(ratios: dict[str, float]) -> dict[str, float]:
    """The share of personas (and of queries) each split holds under `grid`: train √r_train, so that train (both in
    train) gets the train ratio; validation and test share the rest by their ratios. The validation split (its three
    cells) and the test splits together then each get about their ratio too, and ~2·v·e of the samples are held
    out (0.6% at 80/10/10)."""
    train = math.sqrt(ratios["train"])
    rest = ratios["validation"] + ratios["test"]
    if rest <= 0:
        return {"train": 1.0, "validation": 0.0, "test": 0.0}
    return {
        "train": train,
        "validation": (1 - train) * ratios["validation"] / rest,
        "test": (1 - train) * ratios["test"] / rest,
    }


class KeyCounts:
    """The pre-pass of a store: for each kept sample its persona key and its first query key, counted per distinct
    pair, and the links between a sample's query keys (an `original_query` and its `query_id`). Mergeable, in store
    order; picklable (a worker's chunk brings one back). Compacted to the distinct pairs as it grows."""

    def __init__(self) -> None:
        self.persona, self.query, self.weight = array("Q"), array("Q"), array("q")
        self.links_a, self.links_b = array("Q"), array("Q")
        self.lone = array("Q")  # query keys that are a sample's own id: it had no query
        self._compacted = 0  # length after the last compaction

    def add(self, data: dict) -> None:
        persona, queries, lone = sample_keys(data)
        self.persona.append(persona)
        self.query.append(queries[0])
        self.weight.append(1)
        if lone:
            self.lone.append(queries[0])
        for other in queries[1:]:
            self.links_a.append(queries[0])
            self.links_b.append(other)

    def merge(self, other: "KeyCounts") -> "KeyCounts":
        for name in ("persona", "query", "weight", "links_a", "links_b", "lone"):
            getattr(self, name).extend(getattr(other, name))
        if len(self.persona) > max(1 << 16, 2 * self._compacted):
            self.compact()
        return self

    def compact(self) -> None:
        """Keep each distinct pair (and link) once, with the samples of the pair."""
        pairs, counts = self.pairs()
        self.persona = array("Q", np.ascontiguousarray(pairs[:, 0]).tobytes())
        self.query = array("Q", np.ascontiguousarray(pairs[:, 1]).tobytes())
        self.weight = array("q", counts.tobytes())
        a, b = self.links()
        self.links_a, self.links_b = array("Q", a.tobytes()), array("Q", b.tobytes())
        self._compacted = len(self.persona)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (persona, query) pairs, sorted, and the samples of each."""
        persona = np.frombuffer(self.persona, dtype=np.uint64)
        query = np.frombuffer(self.query, dtype=np.uint64)
        if not len(persona):
            return np.zeros((0, 2), dtype=np.uint64), np.zeros(0, dtype=np.int64)
        pairs, inverse = _unique_pairs(persona, query)
        counts = np.zeros(len(pairs), dtype=np.int64)
        np.add.at(counts, inverse, np.frombuffer(self.weight, dtype=np.int64))
        return pairs, counts

    def links(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct links between query keys."""
        a, b = np.frombuffer(self.links_a, dtype=np.uint64), np.frombuffer(self.links_b, dtype=np.uint64)
        if not len(a):
            return a.copy(), b.copy()
        both, _ = _unique_pairs(a, b)
        return np.ascontiguousarray(both[:, 0]), np.ascontiguousarray(both[:, 1])

    def samples(self) -> int:
        return int(np.frombuffer(self.weight, dtype=np.int64).sum())


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs (a[i], b[i]) sorted, as an (n, 2) array, and the pair of each i: what `np.unique` of the
    stacked columns with `axis=0` gives, by a lexsort (`np.unique` with an axis sorts structured rows, slowly: it
    was half of `resolve` at 100k samples)."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return np.stack([a[starts], b[starts]], axis=1), inverse


class KeySink:
    """A sink (`encode.Sink`) that keeps each sample's group keys (`KeyCounts`): the rows it gets need the fields
    `KEY_FIELDS`."""

    def __init__(self) -> None:
        self.counts = KeyCounts()

    def row(self, split: str, row: dict) -> None:
        self.counts.add(row)

    def table(self, config: str, split: str, table: Any) -> None:
        pass


KEY_FIELDS = ("sample_id", "persona_id", "original_query", "metadata")  # what `sample_keys` reads


def _mix(keys: np.ndarray, seed: int) -> np.ndarray:
    """A salted 64-bit hash of each key (splitmix64's finaliser): the order groups are assigned in."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64((seed * 0x9E3779B97F4A7C15) & _MASK)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _roots(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The component of each of `count` nodes joined by the edges (a[i], b[i]): its smallest node."""
    parent = list(range(count))
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
            return root
        root = up


class Groups:
    """The groups of one axis: every key (sorted digests) with its group, and per group its hash key (its smallest
    key) and its samples."""

    def __init__(self, keys: np.ndarray, group: np.ndarray, hash_key: np.ndarray, size: np.ndarray):
        self.keys, self.group, self.hash_key, self.size = keys, group, hash_key, size

    @classmethod
    def of(cls, nodes: np.ndarray, edges: tuple[np.ndarray, np.ndarray], weights: tuple[np.ndarray, np.ndarray],
           hashed: np.ndarray | None = None) -> "Groups":  # fmt: skip
        """Groups of `nodes` (digests) joined by `edges`; `weights`: (node digest, samples) to count per group;
        `hashed`: the nodes a group's hash key is taken from (default: all)."""
        keys = np.unique(nodes)
        a, b = (np.searchsorted(keys, side) for side in edges)
        root = _roots(len(keys), a, b) if len(a) else np.arange(len(keys))
        roots, group = np.unique(root, return_inverse=True)
        size = np.zeros(len(roots), dtype=np.int64)
        np.add.at(size, group[np.searchsorted(keys, weights[0])], weights[1])
        eligible = np.ones(len(keys), dtype=bool) if hashed is None else np.isin(keys, hashed)
        hash_key = keys[roots].copy()  # the smallest key of the group (keys are sorted, roots are smallest)
        best = np.full(len(roots), len(keys), dtype=np.int64)
        np.minimum.at(best, group[eligible], np.flatnonzero(eligible))
        has = best < len(keys)
        hash_key[has] = keys[best[has]]
        return cls(keys, group.astype(np.int64), hash_key, size)

    def __len__(self) -> int:
        return len(self.size)


def _hashed(groups: Groups, shares: dict[str, float], seed: int) -> np.ndarray:
    from .split import assign_split

    return np.array(
        [SPLIT_NAMES.index(assign_split(f"{int(key):016x}", seed, shares)) for key in groups.hash_key.tolist()],
        dtype=np.int8,
    )


def _balanced(
    groups: Groups, shares: dict[str, float], seed: int, pinned: np.ndarray, first: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """Each group not `pinned` (-1) to a split: first, when there are more groups than splits, each split with a share
    and no group yet gets the smallest group left (smallest share first), so no split is empty — for a split in
    `first` (split index -> a mask of the groups), the smallest of those groups when one is left; then the rest, in
    the order of a salted hash, each to the split furthest below its target (the most samples short of it). Every
    split ends within about one group's samples of its target."""
    split = pinned.copy()
    total = int(groups.size.sum())
    targets = [shares[name] * total for name in SPLIT_NAMES]
    open_splits = [index for index, target in enumerate(targets) if target > 0]
    order = np.lexsort((groups.hash_key, _mix(groups.hash_key, seed)))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    if len(groups) > len(open_splits):
        for index in sorted(open_splits, key=lambda s: (targets[s], s)):
            free = np.flatnonzero(split < 0)
            if (split == index).any() or not len(free):
                continue
            wanted = free[first[index][free]] if first and index in first else free
            free = wanted if len(wanted) else free
            split[free[np.lexsort((rank[free], groups.size[free]))[0]]] = index
    filled = [int(groups.size[split == index].sum()) for index in range(len(SPLIT_NAMES))]
    sizes = groups.size.tolist()
    for g in order[split[order] < 0].tolist():
        best = max(open_splits, key=lambda s: (targets[s] - filled[s], -s))
        split[g] = best
        filled[best] += sizes[g]
    return split


def _pin(groups: Groups, earlier: dict[int, int] | None) -> tuple[np.ndarray, int]:
    """The split of every group an earlier export placed (-1: none), and how many groups it placed in several (a new
    sample joined groups already apart: the split holding most of their keys wins, ties in split order)."""
    pinned = np.full(len(groups), -1, dtype=np.int8)
    if not earlier:
        return pinned, 0
    votes = np.zeros((len(groups), len(SPLIT_NAMES)), dtype=np.int64)
    for key, split in earlier.items():
        where = int(np.searchsorted(groups.keys, np.uint64(key)))
        if where < len(groups.keys) and int(groups.keys[where]) == key:
            votes[groups.group[where], split] += 1
    placed = votes.sum(1) > 0
    pinned[placed] = votes[placed].argmax(1)
    return pinned, int(((votes > 0).sum(1) > 1).sum())


class Axis:
    """One axis (personas, queries, or their components) resolved: every key's split."""

    def __init__(self, groups: Groups, split: np.ndarray):
        self.groups, self.split = groups, split
        self.key_split = split[groups.group].astype(np.uint8)

    @classmethod
    def assign(
        cls,
        groups: Groups,
        shares: dict[str, float],
        seed: int,
        how: str,
        earlier: dict[int, int] | None = None,
        first: Callable[[bool], dict[int, np.ndarray]] | None = None,
    ) -> tuple["Axis", dict[str, int]]:
        """`first`: a function of the fresh run (False: this one, True: a rebuild's) giving `_balanced`'s `first`."""
        pinned, across = _pin(groups, earlier)
        if how == "hashed":
            split = np.where(pinned >= 0, pinned, _hashed(groups, shares, seed)).astype(np.int8)
        else:
            split = _balanced(groups, shares, seed, pinned, first(False) if first else None)
        info: dict[str, Any] = {"groups": len(groups), "across_splits": across}
        if earlier:  # what an export without --append would do
            if how == "hashed":
                fresh = _hashed(groups, shares, seed)
            else:
                unpinned = np.full(len(groups), -1, dtype=np.int8)
                fresh = _balanced(groups, shares, seed, unpinned, first(True) if first else None)
            info["moved_groups"], info["fresh"] = int((split != fresh).sum()), cls(groups, fresh)
        return cls(groups, split), info

    def lookup(self, key: int) -> int:
        where = int(np.searchsorted(self.groups.keys, np.uint64(key)))
        if where == len(self.groups.keys) or int(self.groups.keys[where]) != key:
            return -1
        return int(self.key_split[where])

    def splits_of(self, keys: np.ndarray) -> np.ndarray:
        return self.key_split[np.searchsorted(self.groups.keys, keys)].astype(np.int64)

    def state(self) -> dict[str, list[str]]:
        """Every key's split, as the manifest records it (hex digests, sorted)."""
        return {
            name: [f"{int(key):016x}" for key in self.groups.keys[self.key_split == index].tolist()]
            for index, name in enumerate(SPLIT_NAMES)
            if (self.key_split == index).any()
        }


def read_state(state: dict[str, list[str]] | None) -> dict[int, int] | None:
    if not state:
        return None
    return {int(key, 16): SPLIT_NAMES.index(split) for split, keys in state.items() for key in keys}


class Assignment:
    """A store's splits under one `split_by` mode: the split of each sample (`split_of`, None: held out), what the
    manifest records for an append (`to_state`) and the `split_assignment` section of `statistics.json` (`section`).
    Picklable: worker processes get it in their job's encoder."""

    def __init__(self, split_by: str, how: str, axes: dict[str, Axis], section: dict[str, Any], cache: int = 1 << 16):
        self.split_by, self.how, self.section = split_by, how, section
        self.axes = axes
        self.cache_size = cache
        self.personas: dict[str, int] = {}  # persona_id -> the split of its axis (or its group)
        self.queries: dict[tuple, int] = {}  # (original_query, query_id) -> the split of its query group

    def split_names(self) -> tuple[str, ...]:
        return GRID_NAMES if self.split_by == "grid" else SPLIT_NAMES

    def _persona(self, data: dict, axis: str) -> int:
        persona = data.get("persona_id")
        split = self.personas.get(persona)
        if split is None:
            split = self.axes[axis].lookup(sample_keys(data)[0])
            if split < 0:
                raise RuntimeError(f"sample {data.get('sample_id')!r}: its persona was not seen by the pre-pass")
            if len(self.personas) >= self.cache_size:
                self.personas.clear()
            self.personas[persona] = split
        return split

    def _query(self, data: dict) -> int:
        key = (data.get("original_query"), (data.get("metadata") or {}).get("query_id"))
        split = self.queries.get(key)
        if split is None:
            split = self.axes["query"].lookup(sample_keys(data)[1][0])
            if split < 0:
                raise RuntimeError(f"sample {data.get('sample_id')!r}: its query was not seen by the pre-pass")
            if key[0] or key[1]:  # a sample without a query is a group of its own: nothing to remember
                if len(self.queries) >= self.cache_size:
                    self.queries.clear()
                self.queries[key] = split
        return split

    def split_of(self, data: dict) -> str | None:
        if self.split_by == "persona":
            return SPLIT_NAMES[self._persona(data, "persona")]
        if self.split_by == "persona_and_query":
            return SPLIT_NAMES[self._persona(data, "group")]
        if self.split_by == "query":
            return SPLIT_NAMES[self._query(data)]
        return GRID_CELLS[SPLIT_NAMES[self._persona(data, "persona")], SPLIT_NAMES[self._query(data)]]

    def to_state(self) -> dict[str, Any]:
        """What an append needs to keep every group where it is: each key's split, per axis."""
        return {
            "split_by": self.split_by,
            "split_assignment": self.how,
            "keys": {name: axis.state() for name, axis in self.axes.items()},
        }

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["personas"], state["queries"] = {}, {}
        return state


def resolve(
    counts: KeyCounts,
    split_by: str,
    how: str,
    ratios: dict[str, float],
    seed: int,
    earlier: dict[str, Any] | None = None,
    advice: bool = True,
) -> Assignment:
    """The splits of a store's groups, from its pre-pass (`counts`); `earlier`: the manifest's `assignment` of the
    export appended to."""
    pairs, weights = counts.pairs()
    persona, query = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    link_a, link_b = counts.links()
    none = np.zeros(0, dtype=np.uint64)
    keys = (earlier or {}).get("keys") or {}
    personas = Groups.of(persona, (none, none), (persona, weights))
    queries = Groups.of(np.concatenate([query, link_a, link_b]), (link_a, link_b), (query, weights))
    infos: dict[str, dict[str, int]] = {}
    axes: dict[str, Axis] = {}
    shares = grid_shares(ratios) if split_by == "grid" else ratios
    if split_by in ("query", "grid"):
        axes["query"], infos["queries"] = Axis.assign(queries, shares, seed, how, read_state(keys.get("query")))
    if split_by in ("persona", "grid"):

        def test_askers(rebuild: bool) -> dict[int, np.ndarray]:
            """Under grid, the first test persona one who asks a test query: `test` is then not empty."""
            query_axis = infos["queries"].get("fresh", axes["query"]) if rebuild else axes["query"]
            return {SPLIT_NAMES.index("test"): _asking(personas, persona, query_axis.splits_of(query))}

        first = test_askers if split_by == "grid" else None
        earlier_personas = read_state(keys.get("persona"))
        axes["persona"], infos["personas"] = Axis.assign(personas, shares, seed, how, earlier_personas, first)
    if split_by == "persona_and_query":
        lone = np.frombuffer(counts.lone, dtype=np.uint64)
        nodes = np.concatenate([persona, query, link_a, link_b])
        groups = Groups.of(
            nodes,
            (np.concatenate([persona, link_a]), np.concatenate([query, link_b])),
            (persona, weights),
            hashed=np.setdiff1d(nodes, lone),
        )
        axes["group"], infos["groups"] = Axis.assign(groups, ratios, seed, how, read_state(keys.get("group")))
    split = _pair_splits(split_by, axes, persona, query)
    section = _section(split_by, how, shares, personas, queries, axes, infos, persona, query, weights, split)
    if advice:
        section["alternatives"] = _alternatives(counts, split_by, ratios, seed, section)
    return Assignment(split_by, how, axes, section)


def lets_cross(split_by: str) -> Callable[[str, str, str], bool]:
    """Whether `split_by` lets two splits share, by design, what the leakage audit counts (`kind`: "personas", or a
    text field): personas when the persona splits of their samples can meet; the texts when their query splits can
    (an `initial_query` adapts its `original_query`, and a conversation starts from it: two personas asking one base
    query give near-duplicates). `persona`: one persona split per split, any query; `query` the reverse; `grid`:
    the cells (`GRID_CELLS`); `sample`: anything."""
    every = frozenset(SPLIT_NAMES)
    if split_by == "grid":
        persona_splits = {name: {p for (p, _q), cell in GRID_CELLS.items() if cell == name} for name in GRID_NAMES}
        query_splits = {name: {q for (_p, q), cell in GRID_CELLS.items() if cell == name} for name in GRID_NAMES}
    else:
        one = {name: {name} for name in SPLIT_NAMES}
        persona_splits = one if split_by in ("persona", "persona_and_query") else dict.fromkeys(SPLIT_NAMES, every)
        query_splits = one if split_by in ("query", "persona_and_query") else dict.fromkeys(SPLIT_NAMES, every)

    def crosses(a: str, b: str, kind: str) -> bool:
        axis = persona_splits if kind == "personas" else query_splits
        return bool(axis.get(a, every) & axis.get(b, every))

    return crosses


def _asking(personas: Groups, persona: np.ndarray, query_split: np.ndarray) -> np.ndarray:
    """Per persona group: whether it asks a test query and, if any does, a train query too (its other samples then
    go to `test_unseen_persona`). `persona`, `query_split`: per (persona, query) pair."""
    group = personas.group[np.searchsorted(personas.keys, persona)]
    asks = np.zeros((len(personas), 2), dtype=bool)
    for column, name in enumerate(("test", "train")):
        np.logical_or.at(asks[:, column], group, query_split == SPLIT_NAMES.index(name))
    both = asks[:, 0] & asks[:, 1]
    return both if both.any() else asks[:, 0]


def _pair_splits(split_by: str, axes: dict[str, Axis], persona: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The split of each (persona, query) pair's samples, as an index into `GRID_NAMES` (-1: held out)."""
    if split_by == "persona":
        return axes["persona"].splits_of(persona)
    if split_by == "query":
        return axes["query"].splits_of(query)
    if split_by == "persona_and_query":
        return axes["group"].splits_of(persona)
    cells = np.full((len(SPLIT_NAMES), len(SPLIT_NAMES)), -1, dtype=np.int64)
    for (ps, qs), name in GRID_CELLS.items():
        cells[SPLIT_NAMES.index(ps), SPLIT_NAMES.index(qs)] = -1 if name is None else GRID_NAMES.index(name)
    return cells[axes["persona"].splits_of(persona), axes["query"].splits_of(query)]


def _spread(groups: np.ndarray, split: np.ndarray) -> int:
    """How many groups have samples in more than one split (held-out samples aside)."""
    written = split >= 0
    if not written.any():
        return 0
    distinct, _ = _unique_pairs(groups[written].astype(np.int64), split[written].astype(np.int64))
    _, per_group = np.unique(distinct[:, 0], return_counts=True)
    return int((per_group > 1).sum())


def _section(split_by, how, shares, personas, queries, axes, infos, persona, query, weights, split) -> dict[str, Any]:
    persona_group = personas.group[np.searchsorted(personas.keys, persona)]
    query_group = queries.group[np.searchsorted(queries.keys, query)]
    total = int(weights.sum())
    section: dict[str, Any] = {
        "split_by": split_by,
        "assignment": how,
        "groups": {"personas": len(personas), "queries": len(queries)},
        "personas_in_several_splits": _spread(persona_group, split),
        "queries_in_several_splits": _spread(query_group, split),
    }
    if split_by == "persona_and_query":
        groups = axes["group"].groups
        largest = int(groups.size.max()) if len(groups) else 0
        section["groups"]["persona_and_query"] = len(groups)
        section["largest_group"] = {"samples": largest, "share": round(largest / total, 4) if total else 0.0}
    if split_by == "grid":
        section["shares"] = {name: round(share, 4) for name, share in shares.items()}
        ps, qs = axes["persona"].splits_of(persona), axes["query"].splits_of(query)
        cells = {}
        for (p_name, q_name), name in GRID_CELLS.items():
            here = (ps == SPLIT_NAMES.index(p_name)) & (qs == SPLIT_NAMES.index(q_name))
            cells[f"{p_name}/{q_name}"] = {"split": name or HELD_OUT, "samples": int(weights[here].sum())}
        section["cells"] = cells
    # An append: what it could not keep apart, and what a rebuild would place elsewhere; said only when there is
    # something to say, so that an append that adds nothing writes what the export it read did.
    across = sum(info["across_splits"] for info in infos.values())
    if across:
        section["across_splits"] = across
    if any("fresh" in info for info in infos.values()):
        fresh = {name: infos[_INFO[name]].get("fresh", axis) for name, axis in axes.items()}
        moved = _pair_splits(split_by, fresh, persona, query) != split
        if moved.any():
            section["rebuild_would_move"] = {
                "groups": sum(info.get("moved_groups", 0) for info in infos.values()),
                "samples": int(weights[moved].sum()),
            }
    return section


_INFO = {"persona": "personas", "query": "queries", "group": "groups"}  # an axis -> its entry in the infos


def _alternatives(counts: KeyCounts, split_by: str, ratios: dict[str, float], seed: int, section) -> dict[str, Any]:
    """What the other modes would do with the same store (balanced): the figures the export's advice names."""
    found = {}
    for other in ("persona", "query", "grid"):
        if other == split_by:
            continue
        figures = resolve(counts, other, "balanced", ratios, seed, advice=False).section
        found[other] = {
            "personas_in_several_splits": figures["personas_in_several_splits"],
            "queries_in_several_splits": figures["queries_in_several_splits"],
        }
        if other == "grid":
            held = sum(cell["samples"] for cell in figures["cells"].values() if cell["split"] == HELD_OUT)
            found[other]["held_out"] = held
    return found


__all__ = [
    "ASSIGNMENTS",
    "Assignment",
    "GRID_CELLS",
    "GRID_NAMES",
    "HELD_OUT",
    "KEY_FIELDS",
    "KeyCounts",
    "KeySink",
    "grid_shares",
    "lets_cross",
    "resolve",
    "sample_keys",
]
