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


TRAINING_DATA_KEYS = ["format", "split", "split_by", "split_assignment", "on_bad_records", "prompts", "redact_secrets"]


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"training_data": {"splt_by": "sample"}},
            "training_data.splt_by: unknown key; did you mean training_data.split_by?",
        ),
        ({"training_data": {"formats": {}}}, "training_data.formats: unknown key; did you mean training_data.format?"),
        (
            {"training_data": {"shuffle": True}},
            f"training_data.shuffle: unknown key; expected any of {TRAINING_DATA_KEYS}",
        ),
        (
            {"trainingdata": {"split_by": "sample"}, "api": {}},
            "trainingdata: unknown key; did you mean training_data?",
        ),
        (
            {"experiment": {"incremntal": True}},
            "experiment.incremntal: unknown key; did you mean experiment.incremental?",
        ),
        (
            {"paths": {"interaction": {"output_dir": "s"}}},
            "paths.interaction: unknown key; did you mean paths.interactions?",
        ),
        (
            {"paths": {"training_data": {"ouput_dir": "o"}}},
            "paths.training_data.ouput_dir: unknown key; did you mean paths.training_data.output_dir?",
        ),
        (
            {"split_by": "sample", "shufle": 1},
            f"training_data.shufle: unknown key; expected any of {TRAINING_DATA_KEYS}",
        ),
    ],
    ids=["split_by", "format", "no-near-key", "section", "experiment", "paths", "output_dir", "training-data-part"],
)
def test_a_misspelt_key_of_the_sections_read_is_an_error(config, message):
    """They were ignored: the export ran with the defaults and exited 0."""
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    assert str(raised.value) == message


def test_the_keys_of_other_stages_stay_ignored():
    """Upstream's other sections, and the keys its other stages read in the sections shared with them."""
    config = {
        "api": {"openai": {"api_key": "${OPENAI_API_KEY}"}},
        **dict.fromkeys(["persona_generation", "formulation", "query_generation", "interaction_generation"], {}),
        "distractor": {"enabled": True},
        "paths": {"personas": {"output_dir": "output/personas"}, "interactions": {"output_dir": "store"}},
        "experiment": {"name": "pilot", "seed": 7},
    }
    settings = parse_config(config)
    assert (settings.interactions_dir, settings.seed) == ("store", 7)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"experiment": {"incremental": "false"}}, "experiment.incremental: expected true or false, got 'false'"),
        ({"experiment": {"incremental": 1}}, "experiment.incremental: expected true or false, got 1"),
        ({"experiment": {"seed": "42"}}, "experiment.seed: expected an integer, got '42'"),
        ({"experiment": {"seed": True}}, "experiment.seed: expected an integer, got True"),
        (
            {"training_data": {"split_by": ["persona"]}},
            "training_data.split_by: expected one of ['persona', 'query', 'grid', 'persona_and_query', 'sample'], got "
            "['persona']",
        ),
        (
            {"training_data": {"format": ["include_persona"]}},
            "training_data.format: expected a mapping of keys, got ['include_persona']",
        ),
        ({"training_data": {"split": 0.8}}, "training_data.split: expected a mapping of keys, got 0.8"),
        ({"training_data": "defaults"}, "training_data: expected a mapping of keys, got 'defaults'"),
        (
            {"paths": {"interactions": "store"}},
            "paths.interactions: expected a mapping like {output_dir: PATH}, got 'store'",
        ),
        ({"paths": {"training_data": {"output_dir": 5}}}, "paths.training_data.output_dir: expected a path, got 5"),
        ({"paths": {"training_data": {"output_dir": ""}}}, "paths.training_data.output_dir: expected a path, got ''"),
    ],
    ids=[
        "bool-string",
        "bool-int",
        "seed-string",
        "seed-bool",
        "split_by",
        "format",
        "split",
        "section",
        "paths",
        "path-int",
        "path-empty",
    ],
)
def test_every_setting_is_type_checked(config, message):
    """`incremental: "false"` turned appending on: bool("false") is True."""
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    assert str(raised.value) == message


def test_a_section_or_block_with_nothing_under_it_is_the_defaults():
    from personagym_hf.config import ExportConfig

    empty = {"training_data": {"format": None, "split": None}, "experiment": None, "paths": {"interactions": None}}
    assert parse_config(empty) == ExportConfig()


def test_every_section_key_sets_a_field_of_the_settings():
    from dataclasses import fields

    from personagym_hf.config import SECTIONS, ExportConfig

    targets = [target for section in SECTIONS.values() for target, _parse in section.keys.values()]
    assert sorted(targets) == sorted(f.name for f in fields(ExportConfig))
