"""`personagym-hf export`: the main job, and the summary it prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..memory import release_freed_memory
from ..wording import plural
from .common import (
    CliError,
    add_store_options,
    command_line,
    given,
    load_settings,
    make_convert,
    positive,
    show_progress,
    store_path,
    use_jemalloc,
    validate_hint,
)

if TYPE_CHECKING:
    from ..request import ExportRequest


def add_commands(sub) -> None:
    export = sub.add_parser(
        "export",
        help="store -> split JSON/JSONL, statistics, token usage, hf_dataset/ (the main job)",
        description="Read the store once and write every output (see README: Output files).",
    )
    add_store_options(export)
    export.add_argument(
        "--output",
        metavar="DIR",
        help="output folder (default: paths.training_data.output_dir or output/training_data)",
    )
    export.add_argument("--no-split", action="store_true", help="one train_samples.json instead of train/val/test")
    export.add_argument("--timestamp", action="store_true", help="add _YYYYmmdd_HHMMSS to the file names")
    export.add_argument(
        "--append",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add only new samples to the export already in the output folder (default: experiment.incremental)",
    )
    export.add_argument("--no-hf-dataset", action="store_true", help="skip the Parquet/README folder for load_dataset")
    export.add_argument(
        "--wait",
        action="store_true",
        help="if another export is writing the output folder, wait for it instead of stopping with an error",
    )
    export.add_argument(
        "--num-proc",
        type=positive,
        default=1,
        metavar="N",
        help="worker processes (default 1); the outputs are the same bytes for any N",
    )
    export.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the chunks are encoded: this machine (default; --num-proc workers) or Ray tasks (the [ray] "
        "extra; the same bytes; see README: Scale out on Ray)",
    )
    export.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the Ray cluster, host:port of its head (default: RAY_ADDRESS, a cluster "
        "`ray start` started here, or a new local one)",
    )
    export.add_argument(
        "--runtime-env-json",
        metavar="JSON",
        help="with --engine ray: the job's Ray runtime environment, as `ray job submit` takes it, e.g. "
        '\'{"py_modules": ["/path/to/personagym_hf"]}\' to ship this package to nodes that lack it (see README: On '
        "a real cluster)",
    )
    add_redact_option(export, "")
    export.add_argument(
        "--no-audit",
        action="store_true",
        help="leave the leakage audit out of statistics.json and the card (default: exact and near duplicates)",
    )
    export.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="add token budgets for this local tokenizer folder or tokenizer.json to statistics.json and the card "
        "(the [tokens] extra; see README: Audits)",
    )
    export.add_argument(
        "--chat-template", metavar="FILE", help="with --tokenizer: a Jinja chat template to use instead of its own"
    )
    export.add_argument(
        "--max-length", type=positive, metavar="N", help="with --tokenizer: count the rows longer than N tokens"
    )
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    use_jemalloc(args)
    release_freed_memory()
    config, settings = load_settings(args)
    request = export_request(args, settings)
    if request.run.engine == "ray":
        from ..extras import require

        require("ray", "ray", "--engine ray")  # before anything is read or locked
    run_export(request, make_convert(args, config), args)
    return 0


def export_request(args: argparse.Namespace, settings) -> "ExportRequest":
    """The request of `export`'s options (every cross-field check is the request's own: `request.py`)."""
    from ..config import RunOptions
    from ..request import ExportRequest, Measures, Outputs

    runtime_env = _runtime_env(args.runtime_env_json) if args.runtime_env_json is not None else None
    return ExportRequest(
        store_path(args, settings),
        args.output or ("output/demo_training_data" if args.demo else settings.output_dir),
        settings,
        Outputs(
            split=False if args.no_split else None,  # None: split, or as the earlier export when appending
            hf_dataset=False if args.no_hf_dataset else None,
            timestamp=args.timestamp,
            append=settings.incremental if args.append is None else args.append,
        ),
        Measures(
            audit=None if args.no_audit else "auto",
            tokenizer=args.tokenizer,
            chat_template=args.chat_template,
            max_length=args.max_length,
        ),
        RunOptions(
            num_proc=args.num_proc,
            engine=args.engine,
            ray_address=args.address,
            ray_runtime_env=runtime_env,
            wait=args.wait,
            show_progress=show_progress(args),
        ),
    )


def run_export(request: "ExportRequest", convert, args: argparse.Namespace) -> None:
    """Export as `request` says (the options `args`), then print the summary: what was written, the warnings, where
    it is, and the commands that show more, as they run."""
    from ..run.job import AllRejected, export_store

    try:
        run = export_store(request, convert)
    except AllRejected as error:
        raise CliError(f"{error.summary}; run `{validate_hint(args, request.settings)}` to list them") from None
    output, append = request.output, request.outputs.append
    result, stats = run.result, run.result.statistics
    by_split = ", ".join(
        f"{name} {count}" for name, count in stats["samples_by_split"].items() if name in result.json_files
    )
    if stats.get("held_out"):
        by_split += f"; {stats['held_out']} held out"
    samples, files = plural(stats["total_samples"], "sample"), plural(run.files_read, "file")
    if append and not result.new_samples:
        print(f"Appended nothing: the export already holds every sample of the {files} ({samples}: {by_split})")
    else:
        print(f"Exported {samples} from {files} ({by_split})")
    if append and result.new_samples:
        print(f"  appended {plural(result.new_samples, 'new sample')} to {result.kept_samples} already exported")
    print(
        f"  noise rate {stats['distractor_stats']['noise_rate']:.1%}, {plural(stats['total_personas'], 'persona')}, "
        f"avg {stats['avg_turns']:.2f} user turns"
    )
    if "redacted_secrets" in stats:
        from ..transform.redact import summary_line as redacted_line

        print(f"  {redacted_line(stats['redacted_secrets'])}")
    if run.rejections.bad or run.rejections.warnings:
        bad, warned = plural(len(run.rejections.bad), "bad record"), plural(len(run.rejections.warnings), "warning")
        print(f"  rejected {bad} ({run.rejected_report}), {warned}")
    print(
        f"  output: {Path(output)}/ ({', '.join(sorted(p.name for p in result.json_files.values()))}, "
        f"JSONL beside each, {', '.join(sorted(p.name for p in result.other_files.values()))})"
    )
    if "leakage" in stats:
        from ..measure.leakage import summary_line
        from ..transform.assign import lets_cross

        # The version a --timestamp run writes is not what `audit --data` reads (the current export): its store is.
        source = given(args, "--demo", "--interactions", "--config", "--collector", "--split-by")
        audit = command_line("audit", *(source if request.outputs.timestamp else ["--data", str(output)]))
        split_by = request.settings.split_by
        line = summary_line(stats["leakage"], audit=audit, split_by=split_by, lets_cross=lets_cross(split_by))
        if line is not None:
            print(f"  {line}")
    for key, budget in stats.get("tokens", {}).items():
        from ..measure.tokens import summary_line as tokens_line
        from ..measure.tokens import training_line

        print(f"  {tokens_line(key, budget)}")
        line = training_line(budget)
        if line is not None:
            print(f"  {line}")
    from ..transform.split import split_notes

    for line in split_notes(stats, request.settings.ratios):
        print(f"  splits: {line}")
    if result.hf_dataset:
        print(f"  datasets folder: {result.hf_dataset}/ (load with datasets.load_dataset({str(result.hf_dataset)!r}))")
    for warning in result.warnings:
        print(f"  warning: {warning}")


def add_redact_option(parser: argparse.ArgumentParser, when: str) -> None:
    """`--redact-secrets` (`export`, and `push` when it exports first)."""
    parser.add_argument(
        "--redact-secrets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{when}replace every string that looks like a key, token, private key or password in a URL by "
        "<REDACTED:kind> in every output (default: training_data.redact_secrets, else off; see docs/security.md)",
    )


def _runtime_env(text: str) -> dict:
    """`--runtime-env-json`: a JSON object (never echoed back: its env_vars may hold secrets)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(f"--runtime-env-json: not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(value, dict):
        raise CliError(f"--runtime-env-json: expected a JSON object ({{...}}), got a {type(value).__name__}")
    return value
