import random

import numpy as np
import pytest

from personagym_hf.measure import seen as seen_module
from personagym_hf.measure.seen import SeenIds, digests, pack_location, unpack_location


@pytest.mark.parametrize("file,where", [(0, ""), (3, "line 7"), (12, "item 0"), (2**28, "line 4294967295")])
def test_locations_pack_into_one_int_and_back(file, where):
    assert unpack_location(pack_location(file, where)) == (file, where)


def test_seen_ids_match_a_dict_across_many_batches_and_merges():
    reference: dict[str, int] = {}
    seen = SeenIds()
    for batch in range(40):
        size = [1, 3, 50, 7][batch % 4]
        ids = [f"sample_{(batch * 37 + n * 11) % 600}_\u00e9" for n in range(size)]
        ids = list(dict.fromkeys(ids))  # a batch has no repeats (a chunk drops its own first)
        assert seen.find(ids) == [reference.get(sample_id) for sample_id in ids]
        new = [sample_id for sample_id in ids if sample_id not in reference]
        locations = [pack_location(batch, f"line {n}") for n in range(len(new))]
        seen.add(new, locations)
        reference.update(zip(new, locations))
    assert len(seen) == len(reference) > 300
    assert len(seen.runs) < 10  # runs were merged
    assert seen.find([]) == [] and SeenIds().find(["x"]) == [None]


def test_ids_whose_digests_share_a_high_word_are_told_apart(monkeypatch):
    real = seen_module.digests

    def colliding(ids):
        high, low = real(ids)
        return np.zeros_like(high), low  # every id has the same high word

    monkeypatch.setattr(seen_module, "digests", colliding)
    seen = SeenIds()
    seen.add(["a", "b"], [10, 20])
    seen.add(["c"], [30])
    assert seen.find(["d", "b", "c", "a"]) == [None, 20, 30, 10]


def test_find_and_add_finds_the_earlier_batches_ids_and_adds_only_the_new_ones():
    rng = random.Random(5)
    seen, reference = SeenIds(), {}
    for batch in range(60):
        ids = list(dict.fromkeys(f"id{rng.randrange(2000)}" for _ in range(rng.randrange(0, 50))))
        locations = np.arange(batch * 100, batch * 100 + len(ids), dtype=np.int64)
        found = seen.find_and_add(*digests(ids), locations).tolist()
        assert found == [reference.get(sample_id, -1) for sample_id in ids]
        for sample_id, location in zip(ids, locations.tolist()):
            reference.setdefault(sample_id, location)
    assert len(seen) == len(reference) > 1000
    assert seen.find(list(reference)) == list(reference.values())
