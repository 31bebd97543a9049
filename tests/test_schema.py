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
    from personagym_hf.transform.collect import interaction_to_sample

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


def _every_config_spec():
    import itertools

    from personagym_hf.config import FORMAT_FLAGS
    from personagym_hf.transform.views import config_specs

    for values in itertools.product([True, False], repeat=len(FORMAT_FLAGS)):
        yield from config_specs(dict(zip(FORMAT_FLAGS, values))).items()
    yield "nested", {"a": [["string"]], "b": {"c": "int64", "d": ["json"]}}  # shapes no config has (yet)


def test_arrow_schema_is_what_datasets_derives_metadata_included():
    from personagym_hf.schema import arrow_schema

    for config, specs in _every_config_spec():
        ours, theirs = arrow_schema(specs), features(specs).arrow_schema
        assert ours.equals(theirs, check_metadata=True), config
        assert ours.metadata == theirs.metadata


def test_the_card_dataset_info_is_laid_out_as_datasets_lays_it_out():
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    from personagym_hf.card.render import card_dataset_info
    from personagym_hf.schema import yaml_features

    specs = dict(_every_config_spec())
    splits = [
        {"name": "train", "num_bytes": 120, "num_examples": 3},
        {"name": "test", "num_bytes": 7, "num_examples": 1},
    ]
    for names in (["query_rewrite", "full", "minimal", "messages", "nested"], ["messages"], ["default"]):
        infos = {name: {"features": yaml_features(specs.get(name, specs["full"])), "splits": splits} for name in names}
        theirs = DatasetCardData()
        dataset_infos = {}
        for name, info in infos.items():
            split_dict = datasets.SplitDict()
            for split in info["splits"]:
                split_dict.add(datasets.SplitInfo(**split))
            feats = features(specs.get(name, specs["full"]))
            dataset_infos[name] = datasets.DatasetInfo(features=feats, splits=split_dict, config_name=name)
        DatasetInfosDict(dataset_infos).to_dataset_card_data(theirs)
        assert card_dataset_info(infos) == theirs.to_dict()["dataset_info"], names
