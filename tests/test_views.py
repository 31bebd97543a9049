"""The configs' columns come from the format flags, and a flag that leaves persona data out leaves it out of every
output: the export's Parquet configs and card, the builder, the ppopt JSONL and its card."""

import json

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.builder import load_dataset
from personagym_hf.config import FORMAT_FLAGS, parse_config
from personagym_hf.transform.views import config_specs

WITH_PERSONA = {
    "full": [
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
    ],
    "minimal": ["sample_id", "initial_query", "prompt_trajectory", "num_turns"],
    "messages": ["sample_id", "persona_id", "persona_features", "messages"],
    "query_rewrite": [
        "sample_id",
        "persona_id",
        "persona_features",
        "variant",
        "query",
        "noise_type",
        "applied_strategies",
        "original_query",
    ],
}
WITHOUT_PERSONA = {
    "full": [
        "sample_id",
        "initial_query",
        "prompt_trajectory",
        "full_conversation",
        "num_turns",
        "noisy_initial_queries",
        "metadata",
    ],
    "minimal": ["sample_id", "initial_query", "prompt_trajectory", "num_turns"],
    "messages": ["sample_id", "messages"],
    "query_rewrite": ["sample_id", "variant", "query", "noise_type", "applied_strategies"],
}
NO_PERSONA = {"training_data": {"format": {**dict.fromkeys(FORMAT_FLAGS, True), "include_persona": False}}}
PERSONA_VALUES = ("persona_00", "engineer", "communication_style", "Help me write Python code")  # id, features, target


def columns(flags):
    return {config: list(specs) for config, specs in config_specs(flags).items()}


@pytest.mark.parametrize("include_persona, expected", [(True, WITH_PERSONA), (False, WITHOUT_PERSONA)])
def test_each_configs_columns_follow_include_persona(include_persona, expected):
    flags = {**dict.fromkeys(FORMAT_FLAGS, True), "include_persona": include_persona}
    assert columns(flags) == expected


def test_the_other_flags_shape_full_only():
    flags = {**dict.fromkeys(FORMAT_FLAGS, False), "include_persona": True}
    assert columns(flags) == {
        **WITH_PERSONA,
        "full": ["sample_id", "persona_id", "persona_features", "original_query", "initial_query", "num_turns"],
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    records = [make_interaction(n, persona=f"persona_00{n % 4}", interaction_id=f"chat_{n:04d}") for n in range(12)]
    records[0]["metadata"]["semantic_noise"] = {"initial_query": {"noisy_text": "hye", "layer": "surface_noise"}}
    return write_files(tmp_path_factory.mktemp("views") / "s", records)


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("views_out")
    convert = TrainingDataCollector().interaction_to_training_sample
    export_store(store, out, parse_config(NO_PERSONA), convert, split=False)
    return out


def test_an_export_without_persona_has_none_in_any_parquet_config_or_the_cards_schema(exported):
    data = exported / "hf_dataset" / "data"
    for config, names in WITHOUT_PERSONA.items():
        shard = data / config / "train-00000-of-00001.parquet"
        assert pq.read_schema(shard).names == names, config
        text = json.dumps(pq.read_table(shard).to_pylist())
        assert not [value for value in PERSONA_VALUES if value in text], config
    card = (exported / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    info = yaml.safe_load(card.split("---")[1])["dataset_info"]
    assert {entry["config_name"]: [f["name"] for f in entry["features"]] for entry in info} == WITHOUT_PERSONA
    assert "`persona_id`" not in card and "`persona_features`" not in card and "`original_query`" not in card
    assert "`sample_id`, `variant`, `query`, `noise_type`, `applied_strategies`" in card


@pytest.mark.parametrize("name", list(WITHOUT_PERSONA))
def test_the_builder_without_persona_gives_the_same_columns(store, tmp_path, name):
    fmt = NO_PERSONA["training_data"]["format"]
    dataset = load_dataset(store, name, cache_dir=str(tmp_path), split=False, format=fmt)
    assert dataset["train"].column_names == WITHOUT_PERSONA[name]
    assert not [value for value in PERSONA_VALUES if value in json.dumps(dataset["train"].to_list())]


def test_the_ppopt_jsonl_of_an_export_without_persona_has_no_persona(exported, tmp_path):
    from personagym_hf.hub.ppopt import _ppopt_card, ppopt_columns, prepare_ppopt_jsonl

    count = prepare_ppopt_jsonl([exported / "train_samples.json"], tmp_path / "pp.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "pp.jsonl").read_text(encoding="utf-8").splitlines()]
    assert count == len(lines) == 13
    assert {tuple(line) for line in lines} == {tuple(WITHOUT_PERSONA["query_rewrite"])}
    assert not [value for value in PERSONA_VALUES if value in json.dumps(lines)]
    assert ppopt_columns(tmp_path / "pp.jsonl") == WITHOUT_PERSONA["query_rewrite"]
    card = _ppopt_card("a/b", {"train": 13}, None, ppopt_columns(tmp_path / "pp.jsonl"), [])
    info = yaml.safe_load(card.split("---")[1])["dataset_info"]
    assert [f["name"] for f in info["features"]] == WITHOUT_PERSONA["query_rewrite"]
    assert "`persona_id`" not in card and "`original_query`" not in card


def test_the_ppopt_jsonl_refuses_samples_of_two_kinds_of_export(exported, tmp_path):
    from personagym_hf.hub.ppopt import prepare_ppopt_jsonl

    with_persona = tmp_path / "with.jsonl"
    with_persona.write_text(json.dumps({"sample_id": "s", "persona_id": "p", "initial_query": "q"}) + "\n")
    with pytest.raises(ValueError) as raised:
        prepare_ppopt_jsonl([exported / "train_samples.json", with_persona], tmp_path / "pp.jsonl")
    assert str(raised.value) == (
        f"{with_persona.as_posix()}, line 1: a sample with persona fields, after samples without them; "
        "give the samples of one export"
    )
    assert not (tmp_path / "pp.jsonl").exists()


def test_a_ppopt_jsonl_with_other_columns_is_refused_naming_the_line(tmp_path):
    from personagym_hf.hub.ppopt import ppopt_columns

    rows = [dict.fromkeys(WITH_PERSONA["query_rewrite"], ""), dict.fromkeys(WITHOUT_PERSONA["query_rewrite"], "")]
    (tmp_path / "pp.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        ppopt_columns(tmp_path / "pp.jsonl")
    assert str(raised.value) == (
        f"{tmp_path / 'pp.jsonl'}, line 2: not a ppopt line (expected the columns {WITH_PERSONA['query_rewrite']})"
    )
