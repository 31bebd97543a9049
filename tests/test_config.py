import re

import pytest

from personagym_hf.config import ConfigError, format_flags, load_config, parse_config, split_ratios

ALL_TRUE = dict.fromkeys(
    [
        "include_persona",
        "include_trajectory",
        "include_distractor_versions",
        "include_full_conversation",
        "include_metadata",
    ],
    True,
)


@pytest.mark.parametrize(
    "block, expected",
    [
        (None, ALL_TRUE),
        ({"include_persona": True, "include_trajectory": True, "include_distractor_versions": True}, ALL_TRUE),
        (
            {"include_persona": False, "include_trajectory": True, "include_distractor_versions": False},
            {**dict.fromkeys(ALL_TRUE, False), "include_trajectory": True},
        ),
        (
            {"include_metadata": False},
            {**ALL_TRUE, "include_metadata": False}
            | dict.fromkeys(
                ["include_persona", "include_trajectory", "include_distractor_versions", "include_full_conversation"],
                False,
            ),
        ),
    ],
    ids=["absent", "seed_three_flags", "seed_minimal_format", "one_false_turns_absent_off"],
)
def test_format_flag_rule(block, expected):
    assert format_flags(block) == expected


def test_unknown_format_flag_is_an_error():
    with pytest.raises(ConfigError, match=r"training_data.format: unknown flag\(s\) \['include_emoji'\]"):
        format_flags({"include_emoji": True})


@pytest.mark.parametrize(
    "block, message",
    [
        (
            {"train": 0.8, "validation": 0.1, "test": 0.2},
            "training_data.split: ratios must sum to 1, got 1.1 (train=0.8, validation=0.1, test=0.2)",
        ),
        (
            {"train": 1.5, "validation": -0.5, "test": 0},
            "training_data.split.train: expected a number in [0, 1], got 1.5",
        ),
        ({"train": "most"}, "training_data.split.train: expected a number in [0, 1], got 'most'"),
        (
            {"train": 0.9, "val": 0.1},
            "training_data.split: unknown key(s) ['val']; expected ['train', 'validation', 'test']",
        ),
    ],
    ids=["sum", "range", "type", "unknown_key"],
)
def test_split_ratio_errors(block, message):
    with pytest.raises(ConfigError) as raised:
        split_ratios(block)
    assert str(raised.value) == message


def test_split_ratios_may_leave_out_a_split():
    assert split_ratios({"train": 0.9, "test": 0.1}) == {"train": 0.9, "validation": 0.0, "test": 0.1}


def test_whole_upstream_config_and_its_training_data_part_agree(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "api:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n"
        "paths:\n  interactions: {output_dir: store}\n  training_data: {output_dir: out}\n"
        "training_data:\n  format: {include_persona: false, include_trajectory: true}\n"
        "  split: {train: 0.5, validation: 0.25, test: 0.25}\n"
        "experiment: {seed: 7, incremental: true}\n",
        encoding="utf-8",
    )
    whole = parse_config(load_config(path))
    assert (whole.interactions_dir, whole.output_dir, whole.seed, whole.incremental) == ("store", "out", 7, True)
    assert whole.ratios == {"train": 0.5, "validation": 0.25, "test": 0.25}
    part = parse_config(load_config(path)["training_data"])
    assert (part.format, part.ratios) == (whole.format, whole.ratios)
    assert part.seed == 42
    assert "OPENAI" not in repr(whole)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found; pass --config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a YAML mapping at the top level, got list"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(
        ConfigError,
        match=r"training_data.split_by: expected one of \['persona', 'query', 'grid', 'persona_and_query', "
        r"'sample'\], got 'user'",
    ):
        parse_config({"training_data": {"split_by": "user"}})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_proc": 0}, "num_proc: expected an integer >= 1, got 0"),
        ({"num_proc": True}, "num_proc: expected an integer >= 1, got True"),
        ({"start_method": "thread"}, "start_method: expected one of ['fork', 'spawn', 'forkserver'], got 'thread'"),
    ],
    ids=["zero-processes", "bool-processes", "unknown-start-method"],
)
def test_run_options_are_checked(options, message):
    from personagym_hf.config import RunOptions

    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        RunOptions(**options)


def test_the_prompts_block_defaults_and_overrides():
    from personagym_hf.config import DEFAULT_PERSONA_INTRO, DEFAULT_REWRITE_INSTRUCTION, Prompts

    assert parse_config({}).prompts == Prompts(DEFAULT_REWRITE_INSTRUCTION, "system", DEFAULT_PERSONA_INTRO)
    given = parse_config({"training_data": {"prompts": {"rewrite_instruction": "", "persona": "none"}}}).prompts
    assert given == Prompts("", "none", DEFAULT_PERSONA_INTRO)


@pytest.mark.parametrize(
    "block, message",
    [
        ({"persona": "user"}, "training_data.prompts.persona: expected one of ['system', 'none'], got 'user'"),
        ({"rewrite_instruction": 3}, "training_data.prompts.rewrite_instruction: expected a string, got 3"),
        ({"persona_intro": None}, "training_data.prompts.persona_intro: expected a string, got None"),
        ({"instruction": "x"}, "training_data.prompts: unknown key(s) ['instruction']; expected any of "
         "['rewrite_instruction', 'persona', 'persona_intro']"),
        ("be brief", "training_data.prompts: expected a mapping, got str"),
    ],
    ids=["placement", "instruction_type", "intro_type", "unknown_key", "not_a_mapping"],
)  # fmt: skip
def test_bad_prompts_blocks_are_refused_in_one_line(block, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({"training_data": {"prompts": block}})
    assert str(raised.value) == message
