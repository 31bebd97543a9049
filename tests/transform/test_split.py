import json
from collections import Counter

import pytest

from personagym_hf.transform.split import assign_split, hash_fraction, split_of

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_hash_fraction_is_a_pure_function_of_key_and_seed():
    assert hash_fraction("persona_001", 42) == hash_fraction("persona_001", 42)
    assert hash_fraction("persona_001", 42) != hash_fraction("persona_001", 43)
    assert 0.0 <= hash_fraction("persona_001", 42) < 1.0


@pytest.mark.parametrize("seed", [0, 42, 2026])
def test_a_thousand_personas_spread_within_four_points_of_the_ratios(seed):
    counts = Counter(assign_split(f"persona_{i:05d}", seed, RATIOS) for i in range(1000))
    for name, ratio in RATIOS.items():
        assert abs(counts[name] / 1000 - ratio) <= 0.04, (name, counts)


def test_grouping_by_persona_keeps_each_persona_in_one_split():
    samples = [{"sample_id": f"s{i}", "persona_id": f"p{i % 50}"} for i in range(1000)]
    splits_of_persona: dict[str, set[str]] = {}
    for sample in samples:
        splits_of_persona.setdefault(sample["persona_id"], set()).add(split_of(sample, 42, RATIOS))
    assert all(len(splits) == 1 for splits in splits_of_persona.values())


def test_split_by_sample_spreads_one_persona_over_splits():
    samples = [{"sample_id": f"s{i}", "persona_id": "p"} for i in range(200)]
    assert {split_of(s, 42, RATIOS, "sample") for s in samples} == {"train", "validation", "test"}


def test_zero_ratio_split_gets_nothing_and_ratios_of_one_take_everything():
    assert {assign_split(f"k{i}", 1, {"train": 0.9, "validation": 0.0, "test": 0.1}) for i in range(500)} == {
        "train",
        "test",
    }
    assert {assign_split(f"k{i}", 1, {"train": 0.0, "validation": 0.0, "test": 1.0}) for i in range(100)} == {"test"}


@pytest.mark.parametrize("split_by", ["persona", "sample"])
def test_the_encoder_remembers_splits_and_gives_the_same_ones(split_by):
    from personagym_hf.config import ExportConfig, RunOptions
    from personagym_hf.transform import encode as encode

    cfg = ExportConfig(seed=5, split_by=split_by, split_assignment="hashed")
    encoder = encode.Encoder(cfg, split=True, views=False, options=RunOptions(split_cache=7))  # cleared below
    rows = [{"persona_id": f"persona_{i % 20}", "sample_id": f"sample_{i}"} for i in range(100)]
    assert [encoder.split_of(row) for row in rows] == [split_of(row, 5, cfg.ratios, split_by) for row in rows]
    assert len(encoder.splits) <= 7
    assert encode.Encoder(cfg, split=False, views=False).split_of(rows[0]) == "train"


def test_an_empty_split_of_few_personas_is_said_in_the_summary(tmp_path, capsys):
    from conftest import make_interaction, write_files

    from personagym_hf.cli.main import main

    store = write_files(tmp_path / "s", [make_interaction(i, persona=f"persona_{i % 3:03d}") for i in range(30)])
    assert main(["export", "--interactions", str(store), "--output", str(tmp_path / "out"), "-q"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  warning:")]
    counts = json.loads((tmp_path / "out" / "statistics.json").read_text())["samples_by_split"]
    expected = []
    for name, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        count = counts[name]
        if count == 0 or abs(count / 30 - ratio) > 0.04:
            state = "is empty" if not count else f"has {count / 30:.1%} of the samples"
            expected.append(
                f"  warning: split {name} {state} ({count} of 30, ratio {ratio:.0%}): 3 personas are too few to come "
                "closer to these ratios"
            )
    assert counts == {"train": 30, "validation": 0, "test": 0}  # three groups of 10 for targets of 24, 3 and 3
    assert warnings == expected


LUMPY = {"train": 946, "validation": 0, "test": 54}


@pytest.mark.parametrize(
    "counts, split_by, assignment, expected",
    [
        ({"train": 800, "validation": 110, "test": 90}, "persona", "balanced", []),
        (
            LUMPY,
            "persona",
            "hashed",
            [
                "split train has 94.6% of the samples (946 of 1000, ratio 80%): hashing 7 personas one at a time "
                "gives lumpy splits; split_assignment: balanced (the default) keeps every split within about one "
                "group's samples of its ratio",
                "split validation is empty (0 of 1000, ratio 10%): hashing 7 personas one at a time gives lumpy "
                "splits; split_assignment: balanced (the default) keeps every split within about one group's samples "
                "of its ratio",
                "split test has 5.4% of the samples (54 of 1000, ratio 10%): hashing 7 personas one at a time gives "
                "lumpy splits; split_assignment: balanced (the default) keeps every split within about one group's "
                "samples of its ratio",
            ],
        ),
        (
            LUMPY,
            "persona",
            "balanced",
            [
                "split train has 94.6% of the samples (946 of 1000, ratio 80%): 7 personas are too few to come "
                "closer to these ratios",
                "split validation is empty (0 of 1000, ratio 10%): 7 personas are too few to come closer to these "
                "ratios",
                "split test has 5.4% of the samples (54 of 1000, ratio 10%): 7 personas are too few to come closer "
                "to these ratios",
            ],
        ),
        (
            {"train": 9, "validation": 0, "test": 1},
            "sample",
            "hashed",
            [
                "split train has 90.0% of the samples (9 of 10, ratio 80%)",
                "split validation is empty (0 of 10, ratio 10%)",
            ],
        ),
        (
            {"train": 800, "validation": 100, "test": 0, "test_unseen_persona": 50, "test_unseen_query": 50},
            "grid",
            "balanced",
            [],  # the test splits together hold 10%, the test ratio
        ),
    ],
    ids=["even", "lumpy_hashed", "lumpy_balanced", "by_sample", "grid"],
)
def test_skew_warnings(counts, split_by, assignment, expected):
    from personagym_hf.transform.split import skew_warnings

    statistics = {
        "samples_by_split": counts,
        "total_personas": 7,
        "split_assignment": {"groups": {"personas": 7, "queries": 3}},
    }
    assert skew_warnings(statistics, {"train": 0.8, "validation": 0.1, "test": 0.1}, split_by, assignment) == expected
