import json

import pytest
from conftest import make_interaction

from personagym_hf.schema import TrainingSample
from personagym_hf.transform.collect import (
    InvalidInteraction,
    interaction_to_sample,
    noisy_initial_queries,
    record_warnings,
    sample_id_for,
    validate_sample,
)


def test_example_interaction_becomes_the_documented_sample(example):
    sample = interaction_to_sample(example)
    assert sample.to_dict() == {
        "sample_id": "sample_persona_001_20260206_103000",
        "persona_id": "persona_001",
        "persona_features": {"role": "engineer", "communication_style": "casual", "age_band": "25_34"},
        "original_query": "Help me write Python code",
        "initial_query": "hey can u help me write some python code",
        "prompt_trajectory": ["hey can u help me write some python code", "a script to process csv files"],
        "full_conversation": [
            {"role": "user", "content": "hey can u help me write some python code"},
            {"role": "assistant", "content": "Sure! What kind of Python code ..."},
            {"role": "user", "content": "a script to process csv files"},
            {"role": "assistant", "content": "Here's a Python script ..."},
        ],
        "num_turns": 2,
        "noisy_initial_queries": [],
        "metadata": {
            "interaction_id": "interaction_persona_001_20260206_103000",
            "distractor_applied": True,
            "assistant_model": {"model": "gpt-4o-mini", "provider": "openai"},
            "created_at": "2026-02-06T10:30:00",
        },
    }
    assert validate_sample(sample) == []


LAYOUT_A = {
    "distractor_applied": True,
    "distractor_type": "semantic",
    "noisy_versions": {
        "initial_query": {
            "clean_query": "Help me write code",
            "noisy_versions": [
                {
                    "noisy_text": "hey help me writ code",
                    "noise_type": "surface_noise",
                    "applied_strategies": ["colloquial_speech", "typo_misspelling"],
                }
            ],
        },
        "followups": [
            {
                "clean_feedback": "Add error handling",
                "noisy_versions": [],
                "used_version": "add some error stuff maybe",
            }
        ],
    },
}
LAYOUT_B = {
    "distractor_applied": True,
    "distractor_type": "semantic",
    "semantic_noise": {
        "initial_query": {
            "original_text": "Help me write code",
            "noisy_text": "hey help me writ code",
            "layer": "surface_noise",
            "layer_index": 1,
            "applied_strategies": ["colloquial_speech", "typo_misspelling"],
            "semantics": {"intent": "code_generation", "slots": {"language": "Python"}},
        }
    },
}
EXPECTED_NOISE = [
    {
        "noisy_text": "hey help me writ code",
        "noise_type": "surface_noise",
        "applied_strategies": ["colloquial_speech", "typo_misspelling"],
    }
]


@pytest.mark.parametrize("metadata", [LAYOUT_A, LAYOUT_B], ids=["layout_a_noisy_versions", "layout_b_semantic_noise"])
def test_both_noise_layouts_give_the_same_entries(example, metadata):
    example["metadata"] = metadata
    sample = interaction_to_sample(example)
    assert sample.noisy_initial_queries == EXPECTED_NOISE
    assert sample.metadata["distractor_type"] == "semantic"
    assert sample.metadata["distractor_applied"] is True


def test_both_layouts_at_once_are_not_counted_twice(example):
    example["metadata"] = {**LAYOUT_A, **LAYOUT_B}
    assert noisy_initial_queries(example) == EXPECTED_NOISE


def test_rule_based_noise_types_pass_through(example):
    example["metadata"] = {
        "noisy_versions": {
            "initial_query": {
                "noisy_versions": [
                    {"noisy_text": "hey cna u help", "noise_type": "typo"},
                    {"noisy_text": "u hey help", "noise_type": "word_swap"},
                ]
            }
        }
    }
    assert interaction_to_sample(example).noisy_initial_queries == [
        {"noisy_text": "hey cna u help", "noise_type": "typo", "applied_strategies": []},
        {"noisy_text": "u hey help", "noise_type": "word_swap", "applied_strategies": []},
    ]
    assert interaction_to_sample(example).metadata["distractor_applied"] is True


def test_defaults_for_missing_optional_fields(example):
    for key in ("original_query", "initial_query", "persona_features", "num_turns"):
        del example[key]
    example["metadata"] = {}
    example["messages"][1].pop("metadata")
    sample = interaction_to_sample(example)
    assert sample.initial_query == "hey can u help me write some python code"
    assert sample.original_query == sample.initial_query
    assert sample.persona_features == {}
    assert sample.metadata == {
        "interaction_id": "interaction_persona_001_20260206_103000",
        "distractor_applied": False,
        "assistant_model": None,
    }


def test_assistant_model_falls_back_to_the_first_assistant_message(example):
    del example["metadata"]["assistant_model"]
    assert interaction_to_sample(example).metadata["assistant_model"] == {"model": "gpt-4o-mini", "provider": "openai"}


def test_optional_metadata_is_copied_and_nothing_else(example):
    example["query_id"] = "query_007"
    example["metadata"]["api_key"] = "sk-should-never-be-copied"
    example["metadata"]["distractor_type"] = "rule_based"
    metadata = interaction_to_sample(example).metadata
    assert list(metadata) == [
        "interaction_id",
        "distractor_applied",
        "assistant_model",
        "created_at",
        "query_id",
        "distractor_type",
    ]
    assert metadata["query_id"] == "query_007"


def test_leading_system_message_is_kept_but_not_a_turn(example):
    example["messages"].insert(0, {"role": "system", "content": "You are helpful."})
    sample = interaction_to_sample(example)
    assert sample.full_conversation[0] == {"role": "system", "content": "You are helpful."}
    assert sample.num_turns == 2
    assert sample.prompt_trajectory == ["hey can u help me write some python code", "a script to process csv files"]
    assert validate_sample(sample) == []


def test_declared_num_turns_that_disagrees_is_a_warning_not_an_error(example):
    example["num_turns"] = 5
    sample = interaction_to_sample(example)
    assert sample.num_turns == 2
    assert record_warnings(example, sample) == ["num_turns is 5 in the record but the messages hold 2 user turns"]
    example["messages"] = example["messages"][:2]  # one user turn: it said "1 user turns"
    assert record_warnings(example, interaction_to_sample(example)) == [
        "num_turns is 5 in the record but the messages hold 1 user turn"
    ]


@pytest.mark.parametrize(
    "interaction_id, sample_id",
    [
        ("interaction_persona_001_20260206_103000", "sample_persona_001_20260206_103000"),
        ("interaction_persona_00019_0000019", "sample_persona_00019_0000019"),
        ("interaction_abc-1.2", "sample_abc-1.2"),
        ("abc-1.2", "sample_abc-1.2_aaqmevujuvppmlc4qldxbox43e"),
        ("interaction_a/b", "sample_a_b_rcmx2vyt43cffptrnpwdd4dmuy"),
        ("interaction_a b", "sample_a_b_iwiiihwnspftqj7pbuhayhairq"),
        ("", "sample__zltgsqoz566uatsnrb2y5jtwoa"),
        ("interaction_", "sample__h23v7ura6z2dc652owai6f2sn4"),
        ("interaction_x_abcdefghijklmnopqrstuvwx19", "sample_x_abcdefghijklmnopqrstuvwx19"),  # 1 and 9: not base32
        ("interaction_abcdefghijklmnopqrstuvwx23", "sample_abcdefghijklmnopqrstuvwx23"),  # no `_` before the 26
        (  # safe, but it ends like a hash suffix: it could be the sample id of another id, so it is hashed too
            "interaction_x_abcdefghijklmnopqrstuvwx23",
            "sample_x_abcdefghijklmnopqrstuvwx23_wakaglgcnjdmyeu63xh5nahz6m",
        ),
    ],
    ids=[
        "upstream",
        "upstream_2",
        "safe",
        "no_prefix",
        "slash",
        "space",
        "empty",
        "prefix_only",
        "near_tag",
        "no_tag",
        "tag",
    ],
)
def test_sample_id_is_stable_and_file_name_safe(interaction_id, sample_id):
    assert sample_id_for(interaction_id) == sample_id


def _crafted_ids(count: int) -> list[str]:
    """Ids made to collide under a sanitising mapping: each id, its form with and without the prefix, its unsafe
    characters swapped for others, and the id that spells out its own sample id (the crafted `interaction_fzc_7_<h>`
    of issue 11), including the hashed forms of the new mapping."""
    import random

    rng = random.Random(11)
    alphabet = ["a", "b", "Z", "0", "7", "_", "-", ".", "/", " ", ":", "\u00e9", "\u65e5", "\ud800", "~", "_h"]
    ids = set()
    for _ in range(count):
        core = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        ids |= {core, "interaction_" + core, "interaction_" + core.replace("/", " "), "interaction_" + core * 20}
    for known in list(ids):
        for made in {sample_id_for(known), "sample_" + _old_sample_id_for(known)[len("sample_") :]}:
            ids.add("interaction_" + made[len("sample_") :])  # an id that spells the sample id of another
            ids.add(made[len("sample_") :])
    return sorted(ids)


def _old_sample_id_for(interaction_id: str) -> str:
    """The mapping before issue 11 (a prefix strip, `_` for unsafe characters, 8 hex of sha1 when any): its
    outputs are what a crafted id would spell out."""
    import hashlib
    import re

    rest = interaction_id[len("interaction_") :] if interaction_id.startswith("interaction_") else interaction_id
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", rest)
    if safe != rest or not safe:
        safe = f"{safe}_{hashlib.sha1(interaction_id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return f"sample_{safe}"


def test_sample_ids_of_distinct_interaction_ids_are_distinct_safe_and_bounded():
    import re

    ids = _crafted_ids(3000)
    sample_ids = [sample_id_for(interaction_id) for interaction_id in ids]
    assert len(ids) > 20000
    assert len(set(sample_ids)) == len(ids)
    assert all(re.fullmatch(r"sample_[A-Za-z0-9._-]+", sample_id) for sample_id in sample_ids)
    assert max(len(sample_id) for sample_id in sample_ids) <= 155
    old = [_old_sample_id_for(interaction_id) for interaction_id in ids]
    assert len(set(old)) < len(ids)  # the crafted ids do collide under the old mapping


def test_record_without_interaction_id_gets_a_content_hash_id(example):
    del example["interaction_id"]
    first, second = interaction_to_sample(example), interaction_to_sample(dict(example))
    assert first.sample_id == second.sample_id
    assert first.sample_id.startswith("sample_") and len(first.sample_id) == len("sample_") + 16


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda r: r.pop("messages"), "missing 'messages'"),
        (lambda r: r.update(messages=[]), "'messages' is empty"),
        (lambda r: r.update(messages="hi"), "'messages' must be a list, got str"),
        (lambda r: r.update(messages=[{"role": "assistant", "content": "hi"}]), "no user message"),
        (
            lambda r: r["messages"].append({"role": "tool", "content": "x"}),
            "message 5 has role 'tool'; expected one of ['system', 'user', 'assistant']",
        ),
        (lambda r: r["messages"][2].update(content="  "), "message 3 (user) has empty content"),
        (lambda r: r["messages"][1].update(content=3), "message 2 content must be a string, got int"),
        (
            lambda r: r["messages"].append({"role": "system", "content": "late"}),
            "message 5 is a 'system' message; only the first message may be",
        ),
        (lambda r: r.pop("persona_id"), "missing persona_id"),
        (lambda r: r.update(persona_features=["engineer"]), "'persona_features' must be an object, got list"),
        (
            lambda r: r.update(metadata={"semantic_noise": {"initial_query": {"layer": "surface_noise"}}}),
            "metadata.semantic_noise.initial_query.noisy_text must be a string, got NoneType",
        ),
        (
            lambda r: r.update(metadata={"semantic_noise": {"initial_query": {"noisy_text": "", "layer": "x"}}}),
            "metadata.semantic_noise.initial_query.noisy_text is empty",
        ),
    ],
    ids=[
        "no_messages",
        "empty_messages",
        "messages_not_list",
        "no_user",
        "bad_role",
        "empty_content",
        "content_not_string",
        "late_system",
        "no_persona",
        "features_not_object",
        "noise_without_text",
        "noise_with_empty_text",
    ],
)
def test_bad_interactions_are_rejected_with_the_reason(example, change, reason):
    change(example)
    with pytest.raises(InvalidInteraction) as raised:
        interaction_to_sample(example)
    assert str(raised.value) == reason


def test_validate_sample_has_the_seed_checks_and_more():
    sample = TrainingSample.from_dict({"sample_id": "s", "num_turns": 0})
    assert validate_sample(sample) == ["Missing persona_id", "Empty prompt trajectory", "Invalid turn count"]
    bad = interaction_to_sample(make_interaction(1))
    bad.full_conversation[0]["role"] = "robot"
    bad.num_turns = 3
    bad.noisy_initial_queries = [{"noisy_text": "", "noise_type": "typo", "applied_strategies": []}]
    assert validate_sample(bad) == [
        "num_turns is 3 but prompt_trajectory has 2 prompts",
        "Message 1 has invalid role 'robot'",
        "prompt_trajectory does not match the user turns of full_conversation",
        "Noisy query 0 needs non-empty noisy_text and noise_type",
    ]


ODD_VALUES = ["", " ", None, [], {}, 0, 3, "x", ["x"], [{}], [{"role": "user"}], {"noisy_text": ""}]


def _places(value, path=()):
    """Every (path) in a nested record, containers included."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _places(child, (*path, key))


def _with(record, path, value):
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def test_whatever_the_converter_accepts_passes_validate_sample(example):
    """The built-in conversion skips `validate_sample` (samples.checks_itself): hold it to every check, over
    each place of three records (a system message, each noise layout) set to each odd value. It must also
    raise nothing but InvalidInteraction: anything else would stop an export instead of rejecting a record."""
    layout_a = {"initial_query": {"noisy_versions": [{"noisy_text": "helo", "noise_type": "typo"}]}}
    records = [
        {**example, "messages": [{"role": "system", "content": "be kind"}, *example["messages"]]},
        {**example, "metadata": {**example["metadata"], "noisy_versions": layout_a}},
        {**example, "metadata": {"semantic_noise": {"initial_query": {"noisy_text": "hm", "layer": "surface"}}}},
    ]
    converted = rejected = 0
    for record in records:
        for path in list(_places(record))[1:]:
            for value in ODD_VALUES:
                try:
                    sample = interaction_to_sample(_with(record, path, value))
                except InvalidInteraction:
                    rejected += 1
                    continue
                converted += 1
                assert validate_sample(sample) == [], (path, value)
    assert converted > 300 and rejected > 100


def test_only_the_builtin_conversion_is_trusted_to_check_itself():
    from personagym_hf import TrainingDataCollector
    from personagym_hf.transform.policy import checks_itself

    class Custom(TrainingDataCollector):
        def interaction_to_training_sample(self, interaction):
            return super().interaction_to_training_sample(interaction)

    assert checks_itself(interaction_to_sample)
    assert checks_itself(TrainingDataCollector().interaction_to_training_sample)
    assert not checks_itself(Custom().interaction_to_training_sample)
    assert not checks_itself(lambda interaction: interaction_to_sample(interaction))


def _nest(levels: int, leaf="x"):
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def test_a_value_at_the_depth_limit_is_written_by_every_writer_and_one_more_level_is_rejected(example):
    from personagym_hf.transform.collect import MAX_DEPTH
    from personagym_hf.transform.tables import ViewTables
    from personagym_hf.transform.views import CONFIG_NAMES
    from personagym_hf.write.files import dumps_line, pretty_item

    example["persona_features"] = _nest(MAX_DEPTH)
    example["metadata"]["assistant_model"] = _nest(MAX_DEPTH - 1)  # metadata is one level more
    sample = interaction_to_sample(example).to_dict()
    assert json.loads(b"[" + pretty_item(sample) + b"]") == [sample]
    assert json.loads(dumps_line(sample)) == sample
    flags = dict.fromkeys(("include_persona", "include_trajectory", "include_distractor_versions"), True)
    flags |= {"include_full_conversation": True, "include_metadata": True}
    tables = ViewTables(flags).build([sample])
    assert list(tables) == list(CONFIG_NAMES)
    assert json.loads(tables["full"]["persona_features"][0].as_py()) == sample["persona_features"]

    example["persona_features"] = _nest(MAX_DEPTH + 1)
    with pytest.raises(InvalidInteraction) as raised:
        interaction_to_sample(example)
    assert str(raised.value) == "persona_features is nested deeper than 100 levels (at k)"
    example["persona_features"] = {}
    example["query_id"] = [_nest(MAX_DEPTH - 1)]
    with pytest.raises(InvalidInteraction) as raised:
        interaction_to_sample(example)
    assert str(raised.value) == "metadata is nested deeper than 100 levels (at query_id)"


def test_validate_sample_rejects_any_field_nested_too_deep():
    sample = TrainingSample.from_dict({"sample_id": "s", "persona_id": "p", "prompt_trajectory": ["hi"]})
    sample.num_turns = 1
    sample.noisy_initial_queries = [{"noisy_text": "x", "noise_type": "t", "extra": _nest(100)}]
    assert validate_sample(sample) == ["noisy_initial_queries is nested deeper than 100 levels (at 0)"]


def test_a_record_without_id_that_cannot_be_hashed_is_rejected(example):
    del example["interaction_id"]
    example["extra"] = _nest(300)
    with pytest.raises(InvalidInteraction) as raised:
        interaction_to_sample(example)
    assert str(raised.value) == (
        "no interaction_id, and none can be made from the record's content (Recursion limit reached)"
    )


def test_a_deep_value_anywhere_in_a_record_is_rejected_or_exported_never_raised(example):
    """Each place of a record set to a value nested 1024 levels (the most orjson reads): every record is either
    rejected with a reason or converted into a sample that every writer can write."""
    import orjson

    from personagym_hf.read.store import Record
    from personagym_hf.transform.policy import Rejections, iter_samples
    from personagym_hf.write.files import dumps_line, pretty_item

    example["metadata"]["semantic_noise"] = {"initial_query": {"noisy_text": "hm", "layer": "surface"}}
    deep = orjson.loads('{"a": ' * 1023 + "[1]" + "}" * 1023)
    places = list(_places(example))[1:]  # not () : the whole record replaced is not an interaction
    records = [Record("s.jsonl", f"line {n}", _with(example, path, deep)) for n, path in enumerate(places, start=1)]
    rejections = Rejections("skip")
    kept = [sample.to_dict() for sample, _record in iter_samples(records, interaction_to_sample, rejections)]
    for sample in kept:
        assert json.loads(dumps_line(sample)) == sample and pretty_item(sample)
    assert len(kept) + len(rejections.bad) == len(records)
    assert kept and len(rejections.bad) > 20
    assert {bad.reason.split(" (")[0] for bad in rejections.bad} >= {
        "persona_features is nested deeper than 100 levels",
        "metadata is nested deeper than 100 levels",
    }
