import dataclasses

import datasets
import pytest

from personagym_hf import TrainingSample
from personagym_hf.schema import FEATURE_SPECS, features

SEED_FIELDS = [
    "sample_id",
    "persona_id",
    "persona_features",
    "original_query",
    "initial_query",
    "prompt_trajectory",
    "full_conversation",
    "num_turns",
    "noisy_initial_queries",
    "metadata",
]


def test_training_sample_has_exactly_the_seed_fields_in_order():
    assert [f.name for f in dataclasses.fields(TrainingSample)] == SEED_FIELDS


def test_to_dict_and_from_dict_round_trip(example):
    from personagym_hf.collect import interaction_to_sample

    sample = interaction_to_sample(example)
    assert TrainingSample.from_dict(sample.to_dict()) == sample
    assert list(sample.to_dict()) == SEED_FIELDS


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"TrainingSample.from_dict: unknown keys \['extra'\]"):
        TrainingSample.from_dict({"extra": 1})


def test_features_are_derived_from_the_dataclass():
    feats = features(FEATURE_SPECS)
    assert list(feats) == SEED_FIELDS
    assert feats["persona_features"] == datasets.Json()
    assert feats["metadata"] == datasets.Json()
    assert feats["num_turns"] == datasets.Value("int64")
    assert feats["prompt_trajectory"] == datasets.List(datasets.Value("string"))
    assert feats["full_conversation"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )
    assert feats["noisy_initial_queries"] == datasets.List(
        {
            "noisy_text": datasets.Value("string"),
            "noise_type": datasets.Value("string"),
            "applied_strategies": datasets.List(datasets.Value("string")),
        }
    )
