"""`personagym-hf`: the command line. Each command parses its options, calls the library and prints a
short summary; errors become one line that says what to do. Heavy imports happen inside commands so
`--help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from ..wording import plural

logger = logging.getLogger("personagym_hf")

EPILOG = """examples:
  personagym-hf export --demo                         # try it on the bundled demo store
  personagym-hf export --interactions output/interactions --output output/training_data
  personagym-hf export --config config.yaml --append  # add new interactions to an earlier export
  personagym-hf validate --interactions output/interactions
  personagym-hf stats --interactions output/interactions
  personagym-hf push --repo your-name/personagym-dataset --dry-run
  personagym-hf audit --data output/training_data/hf_dataset --max-leak 0.05
  personagym-hf tokens --tokenizer path/to/tokenizer --max-length 2048 --data output/training_data/hf_dataset
"""


class CliError(Exception):
    """An error already phrased for the user (one line, with the fix)."""


def _settings(args: argparse.Namespace):
    """The config dict (from --config, or empty) and its parsed settings, with CLI overrides applied."""
    from dataclasses import replace

    from ..config import load_config, parse_config

    config = load_config(args.config) if args.config else {}
    settings = parse_config(config)
    if getattr(args, "on_bad_records", None):
        settings = replace(settings, on_bad_records=args.on_bad_records)
    return config, settings


def _interactions(args: argparse.Namespace, settings) -> str:
    if getattr(args, "demo", False):
        from ..read.demo import demo_store_path

        return str(demo_store_path())
    return args.interactions or settings.interactions_dir


def _convert(args: argparse.Namespace, config: dict):
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


def cmd_export(args: argparse.Namespace) -> int:
    from ..run.job import export_store

    if args.tokenizer is None and (args.chat_template or args.max_length):
        raise CliError("--chat-template and --max-length count tokens: pass --tokenizer PATH with them")
    from ..config import RunOptions

    if args.address and args.engine != "ray":
        raise CliError("--address names a Ray cluster: pass --engine ray with it")
    runtime_env = _runtime_env(args.runtime_env_json) if args.runtime_env_json is not None else None
    if runtime_env is not None and args.engine != "ray":
        raise CliError("--runtime-env-json is for the Ray workers: pass --engine ray with it")
    if args.engine == "ray":
        from ..extras import require

        require("ray", "ray", "--engine ray")  # before anything is read or locked
    config, settings = _settings(args)
    output = args.output or ("output/demo_training_data" if args.demo else settings.output_dir)
    append = settings.incremental if args.append is None else args.append
    run = export_store(
        _interactions(args, settings),
        output,
        settings,
        _convert(args, config),
        split=False if args.no_split else None,  # None: split, or as the earlier export when appending
        use_timestamp=args.timestamp,
        append=append,
        hf_dataset=False if args.no_hf_dataset else None,
        show_progress=_show_progress(args),
        num_proc=args.num_proc,
        options=RunOptions(engine=args.engine, ray_address=args.address, ray_runtime_env=runtime_env),
        wait=args.wait,
        audit=None if args.no_audit else "auto",
        tokenizer=args.tokenizer,
        chat_template=args.chat_template,
        max_length=args.max_length,
    )
    result, stats = run.result, run.result.statistics
    by_split = ", ".join(
        f"{name} {count}" for name, count in stats["samples_by_split"].items() if name in result.json_files
    )
    print(f"Exported {plural(stats['total_samples'], 'sample')} from {plural(run.files_read, 'file')} ({by_split})")
    if append:
        print(f"  appended {plural(result.new_samples, 'new sample')} to {result.kept_samples} already exported")
    print(
        f"  noise rate {stats['distractor_stats']['noise_rate']:.1%}, {plural(stats['total_personas'], 'persona')}, "
        f"avg {stats['avg_turns']} turns"
    )
    if run.rejections.bad or run.rejections.warnings:
        bad, warned = plural(len(run.rejections.bad), "bad record"), plural(len(run.rejections.warnings), "warning")
        print(f"  rejected {bad} ({run.rejected_report}), {warned}")
    print(
        f"  output: {Path(output)}/ ({', '.join(sorted(p.name for p in result.json_files.values()))}, "
        f"JSONL beside each, {', '.join(sorted(p.name for p in result.other_files.values()))})"
    )
    if "leakage" in stats:
        from ..measure.leakage import summary_line

        line = summary_line(stats["leakage"])
        if line is not None:
            print(f"  {line}")
    for key, budget in stats.get("tokens", {}).items():
        from ..measure.tokens import summary_line as tokens_line

        print(f"  {tokens_line(key, budget)}")
    for line in stats.get("split_groups", {}).get("warnings", ()):
        print(f"  {line}")
    if result.hf_dataset:
        print(f"  datasets folder: {result.hf_dataset}/ (load with datasets.load_dataset({str(result.hf_dataset)!r}))")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0


def _scan(args: argparse.Namespace, quiet_rejections: bool = False):
    """Read and validate the store as an export does, without writing anything; returns (statistics, rejections,
    policy). The bad-record policy applies as in an export (`error` stops at the first); with `quiet_rejections`
    bad records and warnings are only collected, for the caller to show, not logged as well."""
    from ..measure.stats import StatsAccumulator
    from ..run.job import scan_store
    from ..transform.policy import Rejections

    config, settings = _settings(args)
    policy = settings.on_bad_records
    rejections = Rejections("skip" if quiet_rejections and policy != "error" else policy)
    convert = _convert(args, config)
    stats = StatsAccumulator()
    chunks = scan_store(
        _interactions(args, settings), settings, convert, rejections, show_progress=_show_progress(args)
    )
    for chunk in chunks:
        stats.merge(chunk.encoded.stats)
    return stats.to_dict(), rejections, policy


def cmd_validate(args: argparse.Namespace) -> int:
    from collections import Counter

    from ..read.records import KINDS

    stats, rejections, policy = _scan(args, quiet_rejections=True)
    if policy == "warn":  # listed here once, on stdout (not logged to stderr too)
        for bad in rejections.bad:
            print(bad.describe())
        if not args.quiet:
            for warning in rejections.warnings:
                print(f"warning: {warning}")
    bad = f"{len(rejections.bad)} bad"
    notes = [", ".join(f"{count} {KINDS[kind]}" for kind, count in Counter(b.kind for b in rejections.bad).items())]
    if policy == "skip":
        notes.append("not listed: --on-bad-records skip")
    if rejections.bad:
        bad += f" ({'; '.join(notes)})"
    valid, warnings = plural(stats["total_samples"], "valid interaction"), plural(len(rejections.warnings), "warning")
    print(f"{valid}, {bad}, {warnings}")
    return 1 if rejections.bad else 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ..write.files import dumps_pretty

    stats, rejections, _policy = _scan(args)
    sys.stdout.write(dumps_pretty(stats).decode())
    if rejections.bad:
        print(
            f"({plural(len(rejections.bad), 'bad record')} not counted; run `personagym-hf validate` to list them)",
            file=sys.stderr,
        )
    return 0


def _hf_folder(args: argparse.Namespace, settings) -> Path:
    from ..write.exporter import HF_FOLDER

    return Path(args.data) if args.data else Path(args.output or settings.output_dir) / HF_FOLDER


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub.push import push_to_hub

    _config, settings = _settings(args)
    if args.interactions or args.demo:
        cmd_export(args)
    folder = _hf_folder(args, settings)
    result = push_to_hub(
        folder,
        args.repo,
        revision=args.revision,
        private=args.private,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
        token=args.token,
        license=args.license,
        languages=args.language,
        allow_secrets=args.allow_secrets,
        dry_run=args.dry_run,
        verify=not args.no_verify,
        viewer_checks=not args.skip_viewer_checks,
        timeout=args.timeout,
        max_attempts=args.retries + 1,
        show_progress=_show_progress(args),
    )
    print(result.plan.describe())
    for notice in result.plan.notices:
        print(notice)
    if args.dry_run:
        print("dry run: nothing was uploaded")
        auth = result.plan.auth
        if auth is not None and not auth.ok:
            raise CliError(f"the push would fail: {auth.problem}")
        if result.plan.refusal:
            raise CliError(f"the push would fail: {result.plan.refusal}")
    elif not result.committed:
        print(f"{args.repo} already holds this data: no commit made")
        if result.upload is not None:
            print(_upload_line(result.upload))
    else:
        print(f"committed: {result.commit_url}")
        if result.upload is not None:
            print(_upload_line(result.upload))
        if result.verified is not None:
            configs = ", ".join(
                f"{c} {plural(sum(v.values()), 'row', grouped=True)}" for c, v in result.verified.items()
            )
            print(f"verified at {result.commit_sha[:8]}: {configs}; features match")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from ..card.render import folder_card

    _config, settings = _settings(args)
    folder = _hf_folder(args, settings)
    if not (folder / "README.md").is_file():
        raise CliError(f"{folder}: no exported dataset here; run `personagym-hf export` first or pass --data")
    card = folder_card(folder, repo_id=args.repo, license=args.license, languages=args.language)
    if args.write:
        from ..write.files import AtomicFile

        out = AtomicFile(folder / "README.md")  # a card cut short by a kill or a full disk is never visible
        try:
            out.write(str(card).encode("utf-8"))
        except BaseException:
            out.abort()
            raise
        out.commit()
        print(f"wrote {folder / 'README.md'}")
    else:
        sys.stdout.write(str(card))
    _card_notes(card)
    return 0


def _audited_samples(args: argparse.Namespace):
    """(sample dict, split) from --data (an export) or the store, converted and split as `export` would."""
    if args.data:
        if args.interactions or args.demo:
            raise CliError("pass either --data or --interactions/--demo, not both")
        from ..read.exported import iter_samples

        return iter_samples(args.data)
    from dataclasses import replace

    from ..run.job import scan_store
    from ..transform.policy import Rejections

    config, settings = _settings(args)
    settings = replace(
        settings, on_bad_records="skip" if settings.on_bad_records == "error" else settings.on_bad_records
    )
    convert = _convert(args, config)
    rejections = Rejections(settings.on_bad_records)
    store = _interactions(args, settings)
    chunks = scan_store(store, settings, convert, rejections, rows=True, show_progress=not args.quiet)
    return ((row, split) for chunk in chunks for split, row in chunk.rows)


def cmd_audit(args: argparse.Namespace) -> int:
    from ..measure.leakage import LeakageAudit, leaks, report_lines

    leakage = LeakageAudit(near=not args.exact_only).add_all(_audited_samples(args)).to_dict()
    if args.json:
        from ..write.files import dumps_pretty

        sys.stdout.write(dumps_pretty(leakage).decode())
    else:
        print("\n".join(report_lines(leakage)))
    if args.max_leak is None:
        return 0
    found = leaks(leakage, args.max_leak)
    if not found:
        print(f"no leak above --max-leak {args.max_leak:.1%}", file=sys.stderr)
        return 0
    print(f"leaks above --max-leak {args.max_leak:.1%}:", file=sys.stderr)
    for line in found:
        print(f"  {line}", file=sys.stderr)
    return 1


def cmd_tokens(args: argparse.Namespace) -> int:
    from ..measure.tokens import TokenBudget, load_tokenizer, report_lines

    budget = TokenBudget(load_tokenizer(args.tokenizer, args.chat_template), max_length=args.max_length)
    if args.data and not (args.interactions or args.demo):
        from ..read.exported import iter_parquet, iter_samples, kind

        if kind(args.data) == "parquet":  # the configs a trainer loads, as they were exported
            for row, _split in iter_parquet(args.data, "messages", ("sample_id", "messages")):
                budget.add_messages(row["sample_id"], row["messages"])
            for row, _split in iter_parquet(args.data, "query_rewrite", ("query", "original_query")):
                budget.add_query_rewrite(row["query"], row["original_query"])
        else:
            budget.add_all(sample for sample, _split in iter_samples(args.data))
    else:
        budget.add_all(sample for sample, _split in _audited_samples(args))
    result = budget.to_dict()
    if args.json:
        from ..write.files import dumps_pretty

        sys.stdout.write(dumps_pretty({budget.tokenizer.key: result}).decode())
    else:
        print("\n".join(report_lines(budget.tokenizer.key, result)))
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (0.05 is 5%), got {text!r}")
    return value


def _add_audit_source_options(parser: argparse.ArgumentParser) -> None:
    _add_store_options(parser)
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="an existing export instead of a store: its hf_dataset/ folder or the folder with its JSONL files",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON (as statistics.json holds them)"
    )


def _add_audit_commands(sub) -> None:
    audit = sub.add_parser(
        "audit",
        help="leakage between splits: personas shared, exact and near-duplicate queries and conversations",
        description="For every pair of splits: personas shared and the rows of the smaller split whose "
        "original_query, initial_query or user turns have an exact or near duplicate in the other (see README: "
        "Audits).",
    )
    _add_audit_source_options(audit)
    audit.add_argument(
        "--max-leak",
        type=_share,
        metavar="SHARE",
        help="exit 1 when any share (personas, or rows with a duplicate) is above SHARE, e.g. 0 or 0.05 (for CI)",
    )
    audit.add_argument("--exact-only", action="store_true", help="exact duplicates only (no MinHash, no rensa)")
    audit.set_defaults(func=cmd_audit)

    tokens = sub.add_parser(
        "tokens",
        help="token budgets of the messages and query_rewrite rows for a local tokenizer",
        description="Render every messages row with the tokenizer's chat template as TRL's SFTTrainer does and "
        "count its tokens; count the tokens of query_rewrite queries (see README: Audits).",
    )
    tokens.add_argument(
        "--tokenizer",
        required=True,
        metavar="PATH",
        help="a local tokenizer folder or tokenizer.json (never downloaded)",
    )
    tokens.add_argument(
        "--chat-template", metavar="FILE", help="a Jinja chat template to use instead of the tokenizer's"
    )
    tokens.add_argument("--max-length", type=_positive, metavar="N", help="count the rows longer than N tokens")
    _add_audit_source_options(tokens)
    tokens.set_defaults(func=cmd_tokens)


def _upload_line(upload) -> str:
    """What a push sent, and what it found on the Hub (unchanged files, or contents an earlier run uploaded)."""
    line = f"  sent {plural(upload.sent, 'byte', grouped=True)}"
    if upload.reused:
        line += (
            f"; {plural(upload.reused, 'byte', grouped=True)} ({plural(upload.reused_files, 'file')}) "
            "already on the Hub, reused"
        )
    return line


def _card_notes(card) -> None:
    """What the card lacks that the Hub shows, on stderr (stdout may be the card itself)."""
    from ..card.render import LICENSES_URL

    if not card.data.get("license"):
        print(f"personagym-hf card: note: no license set; pass --license with an identifier from {LICENSES_URL}",
              file=sys.stderr)  # fmt: skip


def _add_store_options(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no warnings per record")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personagym-hf",
        description="Turn PersonaGym interaction stores into training datasets: JSON/JSONL exports with "
        "persona-disjoint splits, a `datasets` folder, and Hugging Face Hub pushes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    export = sub.add_parser(
        "export",
        help="store -> split JSON/JSONL, statistics, token usage, hf_dataset/ (the main job)",
        description="Read the store once and write every output (see README: Output files).",
    )
    _add_store_options(export)
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
        type=_positive,
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
    export.add_argument(
        "--no-audit",
        action="store_true",
        help="leave the leakage audit out of statistics.json and the card (default: near duplicates with the "
        "[audit] extra, exact duplicates without it)",
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
        "--max-length", type=_positive, metavar="N", help="with --tokenizer: count the rows longer than N tokens"
    )
    export.set_defaults(func=cmd_export)

    validate = sub.add_parser("validate", help="check every record; list the bad ones; exit 1 if any")
    _add_store_options(validate)
    validate.set_defaults(func=cmd_validate)

    stats = sub.add_parser("stats", help="print the statistics of a store as JSON, writing nothing")
    _add_store_options(stats)
    stats.set_defaults(func=cmd_stats)

    push = sub.add_parser(
        "push",
        help="publish an export to the Hugging Face Hub in one commit, then verify it",
        description="Upload hf_dataset/ (every config, the card, statistics.json, provenance.json) "
        "in one commit; unchanged files are not uploaded and identical data makes no commit.",
    )
    push.add_argument("--repo", required=True, metavar="NAMESPACE/NAME", help="the dataset repo (created if missing)")
    push.add_argument("--data", metavar="DIR", help="the exported folder (default: <output>/hf_dataset)")
    push.add_argument(
        "--output", metavar="DIR", help="the export folder whose hf_dataset/ to push (or to export into)"
    )
    _add_store_options(push)
    push.add_argument(
        "--private",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make the repo private (--no-private: public); also applied to an existing repo",
    )
    push.add_argument("--revision", default="main", help="branch to push to (default: main)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing to the branch")
    push.add_argument("--commit-message", metavar="TEXT", help="the commit title")
    push.add_argument("--token", metavar="TOKEN", help="Hub token (default: HF_TOKEN or the stored `hf auth login`)")
    _add_card_options(push)
    push.add_argument(
        "--dry-run", action="store_true", help="show what would be added, changed and deleted; upload nothing"
    )
    push.add_argument(
        "--allow-secrets", action="store_true", help="push even if strings look like API keys (e.g. fakes)"
    )
    push.add_argument("--no-verify", action="store_true", help="skip reloading every config after the push")
    push.add_argument(
        "--skip-viewer-checks",
        action="store_true",
        help="push even if the Hub's dataset viewer would reject the files (row groups, cells, names, YAML)",
    )
    _add_hub_options(push)
    push.set_defaults(
        func=cmd_push,
        no_split=False,
        timestamp=False,
        append=None,
        no_hf_dataset=False,
        num_proc=1,
        engine="local",
        address=None,
        runtime_env_json=None,
        wait=False,
        no_audit=False,
        tokenizer=None,
        chat_template=None,
        max_length=None,
    )

    card = sub.add_parser("card", help="render the dataset card of an export (stdout, or --write into its README.md)")
    card.add_argument("--data", metavar="DIR", help="the exported folder (default: <output>/hf_dataset)")
    card.add_argument("--output", metavar="DIR", help="the export folder whose hf_dataset/ to use")
    card.add_argument("--config", metavar="YAML", help="upstream config.yaml (for paths.training_data.output_dir)")
    card.add_argument("--repo", metavar="NAMESPACE/NAME", help="repo id for the load snippets")
    _add_card_options(card)
    card.add_argument("--write", action="store_true", help="write the card into the folder's README.md")
    card.set_defaults(func=cmd_card)
    _add_audit_commands(sub)
    return parser


def _add_card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--license",
        metavar="ID",
        help="a license identifier of the Hub (e.g. cc-by-4.0, mit, other; see "
        "https://huggingface.co/docs/hub/repositories-licenses); default: the card's, else none",
    )
    parser.add_argument(
        "--language",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        metavar="CODES",
        help="the card's languages, comma-separated (e.g. en,de or en-GB); default: from persona_features",
    )


def _show_progress(args: argparse.Namespace) -> bool:
    """Bars only on a terminal: in a log or a pipe they are carriage returns and a line of spaces."""
    return not args.quiet and sys.stderr.isatty()


def _add_hub_options(parser: argparse.ArgumentParser) -> None:
    from ..hub.connection import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT

    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up a Hub request after this long without an answer, then retry it (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retries",
        type=_count,
        default=DEFAULT_ATTEMPTS - 1,
        metavar="N",
        help="retry a Hub request that timed out or failed transiently up to N times "
        f"(default {DEFAULT_ATTEMPTS - 1})",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _runtime_env(text: str) -> dict:
    """`--runtime-env-json`: a JSON object (never echoed back: its env_vars may hold secrets)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(f"--runtime-env-json: not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(value, dict):
        raise CliError(f"--runtime-env-json: expected a JSON object ({{...}}), got a {type(value).__name__}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _version() -> str:
    from ..version import __version__

    return __version__


def _error_line(error: BaseException) -> str | None:
    from ..config import ConfigError
    from ..extras import MissingExtra
    from ..hub.push import PushError
    from ..transform.policy import BadInputError
    from ..write.folder import OutputError

    if isinstance(error, (OutputError, MissingExtra)):
        return str(error)
    if isinstance(error, (CliError, ConfigError, BadInputError, FileNotFoundError, PushError)):
        return str(error).strip("'\"")
    if isinstance(error, ValueError):
        return str(error)
    if "personagym_hf.run.chunks" in sys.modules:
        from ..run.chunks import WorkerDied

        if isinstance(error, WorkerDied):
            return str(error)
    if "personagym_hf.run.ray_runner" in sys.modules:
        from ..run.ray_runner import RayTaskFailed

        if isinstance(error, RayTaskFailed):
            return str(error)
    return _hub_error_line(error)


def _hub_error_line(error: BaseException) -> str | None:
    """Errors of a command that talks to the Hub (push), as one line."""
    from ..hub.connection import HubUnreachableError

    if isinstance(error, HubUnreachableError):
        return str(error)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(error, HfHubHTTPError):
            status = getattr(getattr(error, "response", None), "status_code", None)
            if status in (401, 403):
                return f"the Hub refused the request ({status}); pass --token or run `hf auth login`"
            return f"Hub request failed: {str(error).splitlines()[0]}"
    return None


class _Terminated(BaseException):
    pass


_MAIN_PID: int | None = None


def _terminate(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # a forked worker (a pool's `terminate`): die as if no handler were set
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if getattr(args, "quiet", False) else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], Any] = args.func
    # A scheduler's SIGTERM unwinds like Ctrl-C, so a run's staging folder is removed on the way out.
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return func(args)
    except KeyboardInterrupt:
        print("personagym-hf: interrupted; earlier outputs are unchanged", file=sys.stderr)
        return 130
    except _Terminated:
        print("personagym-hf: terminated; earlier outputs are unchanged", file=sys.stderr)
        return 143
    except BrokenPipeError:  # stdout closed by its reader (`| head`): the work is done, the rest is not read
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes it
        return 141
    except Exception as error:  # noqa: BLE001 — map known errors to one line; re-raise the rest
        line = _error_line(error)
        if line is None:
            raise
        print(f"personagym-hf {args.command}: error: {line}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
