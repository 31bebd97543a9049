"""Reading the parts of upstream `config.yaml` that concern the training-data stage.

Everything else in the file (api keys, persona generation, ...) is ignored and never copied anywhere:
`ExportConfig` holds only the values below, so nothing from the config can leak into outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

FORMAT_FLAGS = (
    "include_persona",
    "include_trajectory",
    "include_distractor_versions",
    "include_full_conversation",
    "include_metadata",
)
SPLIT_NAMES = ("train", "validation", "test")
GRID_SPLITS = ("test_unseen_persona", "test_unseen_query")  # `split_by: grid`'s test splits (transform/assign.py)
# The split files' names: the seed's, and the grid's splits by their own name.
FILE_PREFIX = {"train": "train", "validation": "val", "test": "test"} | {name: name for name in GRID_SPLITS}
DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
OnBadRecords = Literal["error", "warn", "skip"]
ON_BAD_RECORDS = ("error", "warn", "skip")
SplitBy = Literal["persona", "query", "grid", "persona_and_query", "sample"]
SPLIT_BY = ("persona", "query", "grid", "persona_and_query", "sample")
SplitAssignment = Literal["balanced", "hashed"]
SPLIT_ASSIGNMENTS = ("balanced", "hashed")
StartMethod = Literal["fork", "spawn", "forkserver"]
START_METHODS = ("fork", "spawn", "forkserver")
Engine = Literal["local", "ray"]
ENGINES = ("local", "ray")
PersonaPlacement = Literal["system", "none"]
PERSONA_PLACEMENTS = ("system", "none")
DEFAULT_REWRITE_INSTRUCTION = (
    "Rewrite the user's message as the clear, explicit request they mean. Reply with the rewritten request only."
)
DEFAULT_PERSONA_INTRO = "The user's persona:"


class ConfigError(ValueError):
    """A config value is not what this stage can use."""


def split_names(split_by: str) -> tuple[str, ...]:
    """The splits a `split_by` mode writes (its files in this order)."""
    return SPLIT_NAMES + GRID_SPLITS if split_by == "grid" else SPLIT_NAMES


@dataclass(frozen=True)
class Prompts:
    """The text of the chat configs' prompts (`training_data.prompts`; docs/training.md): the instruction of the
    `rewrite` config's system message, where the persona goes (`system`: its features under `persona_intro`, in
    that system message; `none`: left out) and the line above the features. Every setting is part of what an
    export writes: an append with other values is refused."""

    rewrite_instruction: str = DEFAULT_REWRITE_INSTRUCTION
    persona: PersonaPlacement = "system"
    persona_intro: str = DEFAULT_PERSONA_INTRO

    def to_dict(self) -> dict[str, str]:
        return {
            "rewrite_instruction": self.rewrite_instruction,
            "persona": self.persona,
            "persona_intro": self.persona_intro,
        }


@dataclass(frozen=True)
class ExportConfig:
    format: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(FORMAT_FLAGS, True))
    ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    split_by: SplitBy = "persona"
    split_assignment: SplitAssignment = "balanced"  # how groups are given splits (transform/assign.py)
    seed: int = 42
    incremental: bool = False
    on_bad_records: OnBadRecords = "warn"
    interactions_dir: str = "output/interactions"
    output_dir: str = "output/training_data"
    prompts: Prompts = field(default_factory=Prompts)
    redact_secrets: bool = False  # secrets in the samples replaced by <REDACTED:kind> at export (transform/redact.py)


@dataclass(frozen=True)
class RunOptions:
    """How an export runs, as opposed to what it writes (`ExportConfig`): the outputs are the same bytes for any
    value of these. `start_method` is the `multiprocessing` start method of the workers (`num_proc` > 1): "fork"
    shares the parent's memory and takes any collector; "spawn" and "forkserver" send the job to each worker, so
    a custom collector's class must be importable (defined at the top level of a module).

    The sizes change no output byte either: chunks are a fixed count of files or bytes (not a share of
    `num_proc`), row groups a fixed count of rows whatever the batches, and a shard's size decides only where the
    next one starts."""

    num_proc: int = 1
    start_method: StartMethod = "fork"
    engine: Engine = "local"  # "ray": the chunks are encoded by Ray tasks (ray_engine.py); num_proc is then unused
    ray_address: str | None = None  # the Ray cluster (engine "ray"; None: what `ray.init` finds)
    ray_runtime_env: Mapping[str, Any] | None = None  # the job's runtime_env, given to `ray.init` (engine "ray")
    chunk_files: int = 1000  # files per chunk: the unit of work of a worker, and about what memory holds
    chunk_bytes: int = 16 << 20  # a plain .jsonl (or .json array) file over this is cut into pieces of about this size
    batch_rows: int = 1000  # samples per Arrow batch, turned into every config's table at once
    row_group_rows: int = 1000  # rows per Parquet row group (the last one of a shard shorter)
    max_shard_bytes: int = 256 << 20  # a shard ends after the row group that takes it past this (`shards.row_sizes`)
    split_cache: int = 1 << 16  # split keys remembered per encoder (see `encode.Encoder.split_of`)
    wait: bool = False  # another export writing the same folder: wait for it (else stop with an error)
    show_progress: bool = False  # progress bars (the command line draws them only on a terminal)

    def __post_init__(self) -> None:
        for name in (
            "num_proc",
            "chunk_files",
            "chunk_bytes",
            "batch_rows",
            "row_group_rows",
            "max_shard_bytes",
            "split_cache",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        choice(self.start_method, START_METHODS, "start_method")
        choice(self.engine, ENGINES, "engine")
        if self.engine != "ray" and self.ray_address is not None:
            raise ConfigError("--address names a Ray cluster: pass --engine ray with it")
        if self.engine != "ray" and self.ray_runtime_env is not None:
            raise ConfigError("--runtime-env-json is for the Ray workers: pass --engine ray with it")


def format_flags(block: Mapping[str, Any] | None) -> dict[str, bool]:
    """Resolve the `training_data.format` block.

    A flag absent from the block defaults to true when no flag in the block is false, and to false
    otherwise. So the seed's "Include/Exclude Fields" block gives the full output and its "Minimal
    Format" block (one flag false, two true) gives exactly the documented minimal output.
    """
    block = dict(block or {})
    unknown = sorted(set(block) - set(FORMAT_FLAGS))
    if unknown:
        raise ConfigError(f"training_data.format: unknown flag(s) {unknown}; expected any of {list(FORMAT_FLAGS)}")
    for name, value in block.items():
        if not isinstance(value, bool):
            raise ConfigError(f"training_data.format.{name}: expected true or false, got {value!r}")
    default = all(block.values())
    return {name: block.get(name, default) for name in FORMAT_FLAGS}


def split_ratios(block: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate `training_data.split`: train/validation/test, each in [0, 1], summing to 1."""
    if block is None:
        return dict(DEFAULT_RATIOS)
    unknown = sorted(set(block) - set(SPLIT_NAMES))
    if unknown:
        raise ConfigError(f"training_data.split: unknown key(s) {unknown}; expected {list(SPLIT_NAMES)}")
    ratios = {}
    for name in SPLIT_NAMES:
        value = block.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"training_data.split.{name}: expected a number in [0, 1], got {value!r}")
        ratios[name] = float(value)
    total = sum(ratios.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"training_data.split: ratios must sum to 1, got {total:g} "
            f"(train={ratios['train']:g}, validation={ratios['validation']:g}, test={ratios['test']:g})"
        )
    return ratios


def prompt_settings(block: Mapping[str, Any] | None) -> Prompts:
    """Validate `training_data.prompts` (every key optional; see `Prompts`)."""
    if block is None:
        return Prompts()
    if not isinstance(block, Mapping):
        raise ConfigError(f"training_data.prompts: expected a mapping, got {type(block).__name__}")
    known = ("rewrite_instruction", "persona", "persona_intro")
    unknown = sorted(set(block) - set(known))
    if unknown:
        raise ConfigError(f"training_data.prompts: unknown key(s) {unknown}; expected any of {list(known)}")
    for name in ("rewrite_instruction", "persona_intro"):
        if name in block and not isinstance(block[name], str):
            raise ConfigError(f"training_data.prompts.{name}: expected a string, got {block[name]!r}")
    defaults = Prompts()
    return Prompts(
        rewrite_instruction=block.get("rewrite_instruction", defaults.rewrite_instruction),
        persona=choice(block.get("persona", defaults.persona), PERSONA_PLACEMENTS, "training_data.prompts.persona"),
        persona_intro=block.get("persona_intro", defaults.persona_intro),
    )


def choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
    return value


Parser = Callable[[Any, str], Any]  # (the value in the file, its dotted name) -> the setting's value


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    """A block of the file (None, as `key:` with nothing under it, is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {value!r}")
    return value


def boolean(value: Any, where: str) -> bool:
    # Not bool(value): bool("false") is True.
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def one_of(allowed: tuple[str, ...]) -> Parser:
    return lambda value, where: choice(value, allowed, where)


def output_dir(value: Any, where: str) -> str | None:
    """`paths.<stage>: {output_dir: PATH}` -> PATH (None when the block has none: the default)."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{output_dir: PATH}}, got {value!r}")
    block = mapping(value, where)
    unknown_keys(block, ("output_dir",), where, own=False)
    path = block.get("output_dir")
    if path is not None and (not isinstance(path, str) or not path):
        raise ConfigError(f"{where}.output_dir: expected a path, got {path!r}")
    return path


@dataclass(frozen=True)
class Section:
    """The keys this stage reads in one section of config.yaml: each key's `ExportConfig` field and the parser of
    its value (None from a parser, or a key left out: the field's default). `own`: the section is this stage's
    alone, so any other key is refused; in a section other stages of upstream read too, only a near miss of one
    of these keys is (a typo), the rest being theirs."""

    keys: Mapping[str, tuple[str, Parser]]
    own: bool


# What parse_config reads: a new setting is a field of ExportConfig, a row here and a line of docs/config.yaml.
SECTIONS: dict[str, Section] = {
    "training_data": Section(
        {
            "format": ("format", lambda value, where: format_flags(mapping(value, where))),
            "split": ("ratios", lambda value, where: split_ratios(None if value is None else mapping(value, where))),
            "split_by": ("split_by", one_of(SPLIT_BY)),
            "split_assignment": ("split_assignment", one_of(SPLIT_ASSIGNMENTS)),
            "on_bad_records": ("on_bad_records", one_of(ON_BAD_RECORDS)),
            "prompts": ("prompts", lambda value, where: prompt_settings(value)),
            "redact_secrets": ("redact_secrets", boolean),
        },
        own=True,
    ),
    "experiment": Section({"seed": ("seed", integer), "incremental": ("incremental", boolean)}, own=False),
    "paths": Section(
        {"interactions": ("interactions_dir", output_dir), "training_data": ("output_dir", output_dir)}, own=False
    ),
}


def unknown_keys(block: Mapping[str, Any], known: Iterable[str], where: str, own: bool) -> None:
    """Refuse a key of `block` that is not `known` (`own`), or (not `own`) one that is a near miss of a known key."""
    import difflib

    known = list(known)
    for key in block:
        if key in known:
            continue
        near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6 if own else 0.8)
        name = f"{where}.{key}" if where else str(key)
        if near:
            meant = f"{where}.{near[0]}" if where else near[0]
            raise ConfigError(f"{name}: unknown key; did you mean {meant}?")
        if own:
            raise ConfigError(f"{name}: unknown key; expected any of {known}")


def parse_config(config: Mapping[str, Any] | None) -> ExportConfig:
    """Accept the whole upstream config dict, or just its `training_data` part (a dict with a training_data key
    and none of the sections). Other sections are ignored; a misspelt key of the ones read is an error."""
    config = mapping(config, "config")
    if not set(config) & set(SECTIONS) and set(config) & set(SECTIONS["training_data"].keys):
        config = {"training_data": config}
    unknown_keys(config, SECTIONS, "", own=False)
    values = {}
    for name, section in SECTIONS.items():
        block = mapping(config.get(name), name)
        unknown_keys(block, section.keys, name, section.own)
        for key, (field_name, parse) in section.keys.items():
            if key in block and (value := parse(block[key], f"{name}.{key}")) is not None:
                values[field_name] = value
    return ExportConfig(**values)


def load_config(path: str | Path) -> dict[str, Any]:
    """Load a `config.yaml` into a dict (the seed's `config`). `${ENV}` references are left as they are."""
    import yaml

    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass --config with the path of your config.yaml") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data
