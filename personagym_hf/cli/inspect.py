"""`personagym-hf validate`, `stats`, `audit` and `tokens`: a store or an export inspected, nothing written."""

from __future__ import annotations

import argparse
import sys

from ..config import RunOptions
from ..wording import plural
from .common import (
    add_store_options,
    load_settings,
    make_convert,
    positive,
    share,
    show_progress,
    store_path,
    validate_hint,
)


def add_store_commands(sub) -> None:
    validate = sub.add_parser("validate", help="check every record; list the bad ones; exit 1 if any")
    add_store_options(validate)
    validate.set_defaults(func=cmd_validate)

    stats = sub.add_parser("stats", help="print the statistics of a store as JSON, writing nothing")
    add_store_options(stats)
    stats.set_defaults(func=cmd_stats)


def add_audit_commands(sub) -> None:
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
        type=share,
        metavar="SHARE",
        help="exit 1 when any share (personas, or rows with a duplicate) is above SHARE, e.g. 0 or 0.05 (for CI)",
    )
    audit.add_argument(
        "--exact-only",
        action="store_true",
        help="exact duplicates only (default: near ones too, as export does; exact only is cheaper)",
    )
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
    tokens.add_argument("--max-length", type=positive, metavar="N", help="count the rows longer than N tokens")
    _add_audit_source_options(tokens)
    tokens.set_defaults(func=cmd_tokens)


def _add_audit_source_options(parser: argparse.ArgumentParser) -> None:
    add_store_options(parser)
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="an existing export instead of a store: its hf_dataset/ folder or the folder with its JSONL files",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON (as statistics.json holds them)"
    )


def _scan(args: argparse.Namespace, quiet_rejections: bool = False):
    """Read and validate the store as an export does, without writing anything; returns (statistics, rejections,
    settings). The bad-record policy applies as in an export (`error` stops at the first); with `quiet_rejections`
    bad records and warnings are only collected, for the caller to show, not logged as well."""
    from ..measure.stats import StatsAccumulator
    from ..run.job import scan_store
    from ..transform.policy import Rejections

    config, settings = load_settings(args)
    policy = settings.on_bad_records
    rejections = Rejections("skip" if quiet_rejections and policy != "error" else policy)
    convert = make_convert(args, config)
    stats = StatsAccumulator()
    options = RunOptions(show_progress=show_progress(args))
    chunks = scan_store(store_path(args, settings), settings, convert, rejections, options=options)
    for chunk in chunks:
        stats.merge(chunk.encoded.stats)
    return stats.to_dict(), rejections, settings


def cmd_validate(args: argparse.Namespace) -> int:
    from collections import Counter

    from ..read.records import KINDS

    stats, rejections, settings = _scan(args, quiet_rejections=True)
    policy = settings.on_bad_records
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

    stats, rejections, settings = _scan(args)
    sys.stdout.write(dumps_pretty(stats).decode())
    if rejections.bad:
        bad = plural(len(rejections.bad), "bad record")
        print(f"({bad} not counted; run `{validate_hint(args, settings)}` to list them)", file=sys.stderr)
    return 0


def _audited_samples(args: argparse.Namespace):
    """(sample dict, split) from --data (an export) or the store, converted and split as `export` would."""
    if args.data:  # not with --interactions or --demo: `common.check_sources`
        from ..read.exported import iter_samples

        return iter_samples(args.data)
    from dataclasses import replace

    from ..run.job import scan_store
    from ..transform.policy import Rejections

    config, settings = load_settings(args)
    settings = replace(
        settings, on_bad_records="skip" if settings.on_bad_records == "error" else settings.on_bad_records
    )
    convert = make_convert(args, config)
    rejections = Rejections(settings.on_bad_records)
    store = store_path(args, settings)
    options = RunOptions(show_progress=show_progress(args))
    chunks = scan_store(store, settings, convert, rejections, rows=True, options=options)
    return ((row, split) for chunk in chunks for split, row in chunk.rows)


def cmd_audit(args: argparse.Namespace) -> int:
    from ..measure.leakage import LeakageAudit, leaks, report_lines, resolve_mode

    near = not args.exact_only and resolve_mode("auto") == "near"  # the export's rule
    leakage = LeakageAudit(near=near).add_all(_audited_samples(args)).to_dict()
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
    from ..measure.tokens import TokenBudget, load_tokenizer, report_lines, training_line

    tokenizer = load_tokenizer(args.tokenizer, args.chat_template)
    exported = bool(args.data)  # not with --interactions or --demo: `common.check_sources`
    budget = TokenBudget(tokenizer, max_length=args.max_length, views=_chat_views(args, exported))
    if exported:
        from ..read.exported import iter_parquet, iter_samples, kind

        if kind(args.data) == "parquet":  # the configs a trainer loads, as they were exported
            for row, _split in iter_parquet(args.data, "messages", ("sample_id", "messages")):
                budget.add_messages(row["sample_id"], row["messages"])
            for row, _split in iter_parquet(args.data, "query_rewrite", ("query", "original_query")):
                if "original_query" in row:  # not without include_persona, as `TokenBudget.add` counts them
                    budget.add_query_rewrite(row["query"], row["original_query"])
            for config in budget.pairs:
                for row, _split in iter_parquet(args.data, config, ("sample_id", "variant", "prompt", "completion")):
                    row_id = f"{row['sample_id']}/{row['variant']}" if "variant" in row else row["sample_id"]
                    budget.add_pair(config, row_id, row["prompt"], row.get("completion"))
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
        line = training_line(result)
        if line is not None:
            print(line)
    return 0


def _chat_views(args: argparse.Namespace, exported: bool):
    """The views of the prompt-completion configs whose rows the token budgets render: an export's own (its
    manifest's or `provenance.json`'s settings; None for an export made before those configs), else the config's."""
    import json
    from pathlib import Path

    from ..config import Prompts
    from ..transform.views import ChatViews, chat_views

    if not exported:
        return chat_views(load_settings(args)[1])
    folder = Path(args.data)
    for path in (folder / ".personagym-export.json", folder / "provenance.json"):
        if path.is_file():
            settings = json.loads(path.read_text(encoding="utf-8")).get("settings") or {}
            if "prompts" not in settings:
                return None
            return ChatViews(Prompts(**settings["prompts"]), settings["format"]["include_persona"])
    return None
