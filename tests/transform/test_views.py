"""The configs' columns come from the format flags, and a flag that leaves persona data out leaves it out of every
output: the export's Parquet configs and card, the builder, the ppopt JSONL and its card."""

import json

import datasets
import orjson
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_interaction, write_files
from exporting import export_store

from personagym_hf import TrainingDataCollector
from personagym_hf.builder import load_dataset
from personagym_hf.config import DEFAULT_REWRITE_INSTRUCTION, FORMAT_FLAGS, parse_config
from personagym_hf.transform.collect import interaction_to_sample
from personagym_hf.transform.tables import ViewTables
from personagym_hf.transform.views import ChatViews, chat_views, config_specs, last_turn_cut, persona_text

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
    "last_turn": ["sample_id", "persona_id", "persona_features", "prompt", "completion"],
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
    "rewrite": ["sample_id", "persona_id", "variant", "noise_type", "prompt", "completion"],
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
    "last_turn": ["sample_id", "prompt", "completion"],
    "query_rewrite": ["sample_id", "variant", "query", "noise_type", "applied_strategies"],
    "rewrite": ["sample_id", "variant", "noise_type", "prompt"],  # a prompt-only dataset: no original_query
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


# The chat configs (`last_turn`, `rewrite`): their rows, row by row and columnar, and what they leave out.


def roles(*names: str) -> list[dict]:
    return [{"role": name, "content": f"{name} {number}"} for number, name in enumerate(names)]


@pytest.mark.parametrize(
    "messages, cut",
    [
        (roles("user", "assistant"), 1),
        (roles("system", "user", "assistant", "user", "assistant"), 4),
        (roles("user", "assistant", "assistant"), 1),  # the assistant messages after the last user one: one turn
        (roles("user", "assistant", "user"), None),  # a conversation cut short
        (roles("user"), None),  # no assistant turn
        (roles("assistant"), None),  # no user turn
        (roles("user", "assistant", "system"), None),
        ([], None),
    ],
    ids=["one_exchange", "system_and_two", "two_assistant_messages", "cut_short", "no_assistant", "no_user",
         "system_last", "empty"],
)  # fmt: skip
def test_where_last_turn_cuts_a_conversation(messages, cut):
    assert last_turn_cut(messages) == cut
    turn = ChatViews.last_turn({"full_conversation": messages})
    assert turn == (None if cut is None else (messages[:cut], messages[cut:]))


def test_a_persona_is_rendered_as_sorted_readable_lines():
    features = {
        "role": "engineer",
        "age_band": "25_34",
        "hobbies": ["chess", "", "go"],
        "tags": {"b": 1, "a": True},
        "empty": "",
        "none": None,
        "bio": "likes\n  long   walks",
        "years": 7,
    }
    assert persona_text(features, "The user's persona:") == (
        "The user's persona:\n- age band: 25_34\n- bio: likes long walks\n- hobbies: chess, go\n- role: engineer\n"
        '- tags: {"a":true,"b":1}\n- years: 7'
    )
    assert persona_text({"a": "b"}, "") == "- a: b"
    assert persona_text({"a": "", "b": []}, "intro") == persona_text(None, "intro") == ""


def noisy_sample(number: int = 1) -> dict:
    record = make_interaction(number)
    record["metadata"]["semantic_noise"] = {"initial_query": {"noisy_text": "hye", "layer": "surface_noise"}}
    return interaction_to_sample(record).to_dict()


def test_rewrite_rows_with_the_default_prompts():
    system = {
        "role": "system",
        "content": "Rewrite the user's message as the clear, explicit request they mean. Reply with the rewritten "
        "request only.\n\nThe user's persona:\n- age band: 25_34\n- communication style: casual\n- role: engineer",
    }
    completion = [{"role": "assistant", "content": "Help me write Python code"}]
    rows = list(ChatViews().config_rows("rewrite", noisy_sample(), REWRITE_COLUMNS))
    assert rows == [
        {
            "sample_id": "sample_persona_001_0001",
            "persona_id": "persona_001",
            "variant": "styled",
            "noise_type": "none",
            "prompt": [system, {"role": "user", "content": "hey can u help me write some python code"}],
            "completion": completion,
        },
        {
            "sample_id": "sample_persona_001_0001",
            "persona_id": "persona_001",
            "variant": "noisy_0",
            "noise_type": "surface_noise",
            "prompt": [system, {"role": "user", "content": "hye"}],
            "completion": completion,
        },
    ]


@pytest.mark.parametrize(
    "prompts, include_persona, first",
    [
        ({"persona": "none"}, True, [{"role": "system", "content": DEFAULT_REWRITE_INSTRUCTION}]),
        ({"rewrite_instruction": "", "persona": "none"}, True, []),
        (
            {"rewrite_instruction": "", "persona_intro": "About them:"},
            True,
            [
                {
                    "role": "system",
                    "content": "About them:\n- age band: 25_34\n- communication style: casual\n- role: engineer",
                }
            ],
        ),  # fmt: skip
        ({}, False, [{"role": "system", "content": DEFAULT_REWRITE_INSTRUCTION}]),  # and no completion
    ],
    ids=["persona_none", "no_system_message", "own_intro", "include_persona_false"],
)
def test_the_prompt_settings_shape_the_rewrite_prompt(prompts, include_persona, first):
    views = ChatViews(parse_config({"training_data": {"prompts": prompts}}).prompts, include_persona)
    rows = list(views.rewrite(noisy_sample()))
    assert [prompt for _variant, _noise, prompt, _completion in rows] == [
        [*first, {"role": "user", "content": "hey can u help me write some python code"}],
        [*first, {"role": "user", "content": "hye"}],
    ]
    expected = [{"role": "assistant", "content": "Help me write Python code"}] if include_persona else None
    assert {str(completion) for *_rest, completion in rows} == {str(expected)}


REWRITE_COLUMNS = ["sample_id", "persona_id", "variant", "noise_type", "prompt", "completion"]


def edge_samples() -> list[dict]:
    """Samples of every shape the chat configs treat apart."""
    samples = [noisy_sample(number) for number in range(5)]
    samples[1]["full_conversation"] = samples[1]["full_conversation"][:-1]  # cut short: ends with a user turn
    samples[2]["original_query"] = ""  # a custom collector's sample without an original_query
    samples[3]["full_conversation"] = samples[3]["full_conversation"][:1]  # no assistant turn at all
    samples[4]["persona_features"] = {}  # no feature: the system message is the instruction alone
    return samples


def jsonified(rows: list[dict]) -> list[dict]:
    """Rows as Arrow gives them back: `Json()` columns are JSON text."""
    return [{**row, **{k: orjson.dumps(row[k]).decode() for k in ("persona_features",) if k in row}} for row in rows]


@pytest.mark.parametrize("include_persona", [True, False], ids=["persona", "no_persona"])
@pytest.mark.parametrize(
    "prompts", [{}, {"persona": "none"}, {"rewrite_instruction": ""}], ids=["default", "no_persona_text", "no_instr"]
)
def test_the_columnar_chat_configs_are_the_row_views(store, include_persona, prompts):
    import pyarrow as pa

    from personagym_hf.read.store import iter_file

    samples = edge_samples()
    samples += [interaction_to_sample(r.data).to_dict() for p in sorted(store.glob("*.json")) for r in iter_file(p)]
    cfg = parse_config({"training_data": {"prompts": prompts, "format": {"include_persona": include_persona}}})
    tables = ViewTables(cfg.format, ("last_turn", "rewrite"), cfg.prompts).build(samples)
    views = chat_views(cfg)
    for config, table in tables.items():
        rows = [row for sample in samples for row in views.config_rows(config, sample, table.schema.names)]
        assert table.to_pylist() == jsonified(rows)
        # The same bytes whether a table went through a worker process (an IPC round trip) or not: `num_bytes`.
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as stream:
            stream.write_table(table)
        assert pa.ipc.open_stream(sink.getvalue()).read_all().nbytes == table.nbytes
    assert tables["last_turn"].num_rows == len(samples) - 2  # the cut-short one and the one without assistant
    noisy = sum(1 + len(sample["noisy_initial_queries"]) for sample in samples)
    assert tables["rewrite"].num_rows == noisy - (2 if include_persona else 0)  # without its target: 2 variants


def without_original(interaction: dict):
    """A custom conversion that leaves one sample without an original_query."""
    sample = interaction_to_sample(interaction)
    if interaction["interaction_id"] == "interaction_blank":
        sample.original_query = ""
    return sample


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory):
    records = [make_interaction(n, persona=f"persona_{n:02d}") for n in range(8)]
    records[0]["messages"] = records[0]["messages"][:-1]  # cut short
    records[1]["messages"] = records[1]["messages"][:1]  # no assistant turn
    records[2]["interaction_id"] = "interaction_blank"
    records[2]["metadata"]["semantic_noise"] = {"initial_query": {"noisy_text": "hye", "layer": "surface_noise"}}
    for record in records:
        record.pop("num_turns")
    return write_files(tmp_path_factory.mktemp("edge") / "s", records)


def test_an_export_counts_what_the_chat_configs_leave_out(edge_store, tmp_path):
    out = tmp_path / "out"
    export_store(edge_store, out, parse_config({}), without_original, split=False)
    statistics = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    assert statistics["configs"] == {
        "full": {"rows": {"train": 8}},
        "minimal": {"rows": {"train": 8}},
        "messages": {"rows": {"train": 8}},
        "last_turn": {"rows": {"train": 6}, "left_out_samples": 2},
        "query_rewrite": {"rows": {"train": 9}},
        "rewrite": {"rows": {"train": 7}, "left_out_variants": 2},
    }
    assert json.loads((out / "hf_dataset" / "statistics.json").read_text(encoding="utf-8")) == statistics
    card = (out / "hf_dataset" / "README.md").read_text(encoding="utf-8")
    assert (
        "| `rewrite` | TRL conversational prompt-completion for query rewriting: instruction, persona and query; "
        "`original_query` | 7 |\n\n`last_turn` leaves out 2 samples whose conversation does not end with an assistant "
        "turn after a user turn.\n`rewrite` leaves out 2 query variants of samples without an `original_query`.\n"
    ) in card
    for name in ("last_turn", "rewrite"):
        dataset = load_dataset(
            edge_store, name, cache_dir=str(tmp_path / "cache"), split=False, collector=without_original
        )
        assert dataset["train"].to_list() == datasets.load_dataset(str(out / "hf_dataset"), name)["train"].to_list()


def test_the_prompt_settings_are_recorded_and_an_append_with_others_is_refused(edge_store, tmp_path):
    from personagym_hf.write.manifest import AppendError

    out = tmp_path / "out"
    cfg = parse_config({"training_data": {"prompts": {"persona": "none"}}})
    export_store(edge_store, out, cfg, without_original)
    recorded = {
        "rewrite_instruction": DEFAULT_REWRITE_INSTRUCTION,
        "persona": "none",
        "persona_intro": "The user's persona:",
    }
    assert json.loads((out / ".personagym-export.json").read_text(encoding="utf-8"))["settings"]["prompts"] == recorded
    assert (
        json.loads((out / "hf_dataset" / "provenance.json").read_text(encoding="utf-8"))["settings"]["prompts"]
        == recorded
    )
    built = load_dataset(
        edge_store, "rewrite", cache_dir=str(tmp_path / "c"), collector=without_original, prompts={"persona": "none"}
    )
    exported = datasets.load_dataset(str(out / "hf_dataset"), "rewrite", cache_dir=str(tmp_path / "c2"))
    assert {split: rows.to_list() for split, rows in exported.items()} == {
        split: built[split].to_list() for split in built if built[split].num_rows
    }
    with pytest.raises(AppendError) as raised:
        export_store(edge_store, out, parse_config({}), without_original, append=True)
    assert str(raised.value) == (
        f"{out}: cannot append: prompt settings differ from the export there (training_data.prompts.persona: 'none' "
        "there, 'system' now), so its rewrite rows would have two prompts; restore them in training_data.prompts, or "
        "rebuild with --no-append"
    )
    manifest = json.loads((out / ".personagym-export.json").read_text(encoding="utf-8"))
    del manifest["settings"]["prompts"]  # as an export made before the chat configs
    (out / ".personagym-export.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(AppendError) as raised:
        export_store(edge_store, out, cfg, without_original, append=True)
    assert str(raised.value) == (
        f"{out}: cannot append: the export there was made before the last_turn and rewrite configs (its hf_dataset/ "
        "has none); rebuild with --no-append"
    )
    export_store(edge_store, tmp_path / "json", cfg, without_original, hf_dataset=False)
    export_store(edge_store, tmp_path / "json", parse_config({}), without_original, hf_dataset=False, append=True)
