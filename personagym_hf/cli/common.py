"""What the commands share: the settings from `--config`, the store and the conversion they name, the store options
every reading command takes, progress bars only on a terminal, and the argument types."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path


class CliError(Exception):
    """An error already phrased for the user (one line, with the fix)."""


def load_settings(args: argparse.Namespace):
    """The config dict (from --config, or empty) and its parsed settings, with CLI overrides applied."""
    from dataclasses import replace

    from ..config import ConfigError, load_config, parse_config

    config = load_config(args.config) if args.config else {}
    try:
        settings = parse_config(config)
    except ConfigError as error:
        if not args.config:
            raise
        raise ConfigError(f"{args.config}: {error}") from None
    if getattr(args, "on_bad_records", None):
        settings = replace(settings, on_bad_records=args.on_bad_records)
    if getattr(args, "split_by", None):
        settings = replace(settings, split_by=args.split_by)
    if getattr(args, "redact_secrets", None) is not None:
        settings = replace(settings, redact_secrets=args.redact_secrets)
    return config, settings


def use_jemalloc(args: argparse.Namespace) -> None:
    """Arrow's buffers from jemalloc in an export of this process alone, when the user chose no pool of their own
    (`ARROW_DEFAULT_MEMORY_POOL`). Its Parquet writes run on a thread of their own (`write.background`), and
    pyarrow's default, mimalloc, then keeps a working set per thread: 50-70 MB more peak RSS at 100k realistic
    interactions (docs/performance.md). Not with worker processes (`--num-proc`, Ray), which write the shards
    themselves: forked while a signal came in, 2 exports in 50 hung in jemalloc's fork handlers (none with
    mimalloc). Set before pyarrow loads (it reads the variable then, and only then), on Linux only, whose pyarrow
    wheels carry jemalloc (elsewhere Arrow would print a warning). A choice of the command line's own process: a
    library does not change the pool of the program that imports it."""
    import os

    alone = args.num_proc == 1 and args.engine == "local"
    if alone and "pyarrow" not in sys.modules and sys.platform == "linux":
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def check_sources(args: argparse.Namespace) -> None:
    """One source per command: a store (`--interactions` or `--demo`) or an export (`--data`), never two."""
    demo, interactions, data = (getattr(args, name, None) for name in ("demo", "interactions", "data"))
    if demo and interactions:
        raise CliError("--demo and --interactions name two stores: pass one of them")
    if data and (demo or interactions):
        raise CliError("pass either --data or --interactions/--demo, not both")


def store_path(args: argparse.Namespace, settings) -> str:
    if getattr(args, "demo", False):
        from ..read.demo import demo_store_path

        return str(demo_store_path())
    return args.interactions or settings.interactions_dir


def make_convert(args: argparse.Namespace, config: dict):
    """The conversion of records to samples: `--collector module:Class` (a `TrainingDataCollector` subclass, made
    with the config), `--collector module:function` (interaction dict -> `TrainingSample`), or the built-in one."""
    import inspect

    from ..training_data import TrainingDataCollector

    if not args.collector:
        return TrainingDataCollector(config).interaction_to_training_sample
    module_name, _, name = args.collector.partition(":")
    if not name:
        raise CliError(f"--collector {args.collector!r}: expected package.module:ClassName or package.module:function")
    sys.path.insert(0, str(Path.cwd()))
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise CliError(f"--collector {args.collector!r}: cannot import it ({e})") from None
    if isinstance(found, type) and issubclass(found, TrainingDataCollector):
        return found(config).interaction_to_training_sample
    if inspect.isfunction(found):
        return found
    raise CliError(
        f"--collector {args.collector!r}: expected a subclass of TrainingDataCollector or a function "
        "(interaction dict -> TrainingSample)"
    )


def hf_folder(args: argparse.Namespace, settings) -> Path:
    """The `hf_dataset/` folder a command reads: `--data` (an export folder or its `hf_dataset/`, as every command's
    `--data`), else the one in `--output` (default `paths.training_data.output_dir`)."""
    from ..write.exporter import HF_FOLDER

    if args.data:
        return hf_dataset_folder(Path(args.data))
    folder = Path(args.output or settings.output_dir) / HF_FOLDER
    if not (folder / "README.md").is_file():
        export = command_line("export", *given(args, "--config", "--output"))
        raise CliError(f"{folder}: no exported dataset here; run `{export}` first, or pass --data with an export")
    return folder


def hf_dataset_folder(data: Path) -> Path:
    """The `hf_dataset/` folder of `--data`: an export folder, or its `hf_dataset/` itself."""
    from ..write.exporter import HF_FOLDER
    from ..write.manifest import MANIFEST_FILE

    if (data / HF_FOLDER / "README.md").is_file():
        return data / HF_FOLDER
    if (data / "README.md").is_file() and (data / "data").is_dir():
        return data
    if (data / MANIFEST_FILE).is_file():
        raise CliError(
            f"{data}: this export has no {HF_FOLDER}/ folder (it was made with --no-hf-dataset); export it again "
            "without --no-hf-dataset"
        )
    what = f"not an export (no {HF_FOLDER}/README.md, nor data/ and README.md)" if data.exists() else "no such folder"
    raise CliError(f"{data}: {what}; --data takes an export folder or its {HF_FOLDER}/")


def command_line(command: str, *options: str) -> str:
    """`personagym-hf COMMAND OPTIONS`, each quoted for a shell: a hint that runs as printed."""
    return " ".join(["personagym-hf", command, *map(shlex.quote, options)])


def given(args: argparse.Namespace, *options: str) -> list[str]:
    """Those of `options` (`--config`, ...) the user passed, with their values, as they were given."""
    found = []
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is True:
            found.append(option)
        elif value:
            found += [option, str(value)]
    return found


def validate_hint(args: argparse.Namespace, settings) -> str:
    """The `validate` command that lists the bad records of the store `args` read, as it read them."""
    options = given(args, "--demo", "--interactions", "--config", "--collector", "--split-by")
    if settings.on_bad_records != "warn":  # error stops at the first, skip lists none
        options += ["--on-bad-records", "warn"]
    return command_line("validate", *options)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interactions",
        metavar="PATH",
        help="interaction store: a folder (searched recursively), "
        ".json/.jsonl file or .gz of one (default: paths.interactions.output_dir or output/interactions)",
    )
    parser.add_argument("--demo", action="store_true", help="use the small demo store bundled with the package")
    parser.add_argument(
        "--config", metavar="YAML", help="upstream config.yaml (only training_data, paths and experiment are read)"
    )
    parser.add_argument(
        "--collector",
        metavar="MODULE:NAME",
        help="convert interactions with a TrainingDataCollector subclass or a function (dict -> TrainingSample)",
    )
    parser.add_argument(
        "--on-bad-records",
        choices=["error", "warn", "skip"],
        help="what a bad record does: stop the run, be logged and skipped (default), or be skipped quietly",
    )
    parser.add_argument(
        "--split-by",
        choices=["persona", "query", "grid", "persona_and_query", "sample"],
        help="what the splits keep apart (default: training_data.split_by, else persona): a persona, a target query, "
        "both held out apart (grid), both together, or nothing (see docs/splits.md)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no warnings per record")


def show_progress(args: argparse.Namespace) -> bool:
    """Bars only on a terminal: in a log or a pipe they are carriage returns and a line of spaces."""
    return not args.quiet and sys.stderr.isatty()


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (0.05 is 5%), got {text!r}")
    return value
