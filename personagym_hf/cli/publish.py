"""`personagym-hf push`, `card` and `secrets`: an export published to the Hub, its dataset card, and the review of what
in it looks like a secret."""

from __future__ import annotations

import argparse
import sys

from ..wording import plural
from .common import (
    CliError,
    add_store_options,
    count,
    hf_folder,
    load_settings,
    make_convert,
    seconds,
    show_progress,
    store_path,
)
from .export import add_redact_option


def add_commands(sub) -> None:
    push = sub.add_parser(
        "push",
        help="publish an export to the Hugging Face Hub in one commit, then verify it",
        description="Upload hf_dataset/ (every config, the card, statistics.json, provenance.json) "
        "in one commit; unchanged files are not uploaded and identical data makes no commit.",
    )
    push.add_argument("--repo", required=True, metavar="NAMESPACE/NAME", help="the dataset repo (created if missing)")
    push.add_argument("--data", metavar="DIR", help="an export folder or its hf_dataset/ (default: <output>)")
    push.add_argument(
        "--output", metavar="DIR", help="the export folder whose hf_dataset/ to push (or to export into)"
    )
    add_store_options(push)
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
        "--allow-secrets",
        action="store_true",
        help="turn the secrets check off: push every string that looks like a key, token or password, real ones "
        "included (rather: export --redact-secrets, or accept reviewed findings with `personagym-hf secrets`)",
    )
    add_redact_option(push, "with --interactions or --demo: ")
    push.add_argument("--no-verify", action="store_true", help="skip reloading every config after the push")
    push.add_argument(
        "--skip-viewer-checks",
        action="store_true",
        help="push even if the Hub's dataset viewer would reject the files (row groups, cells, names, YAML)",
    )
    _add_hub_options(push)
    push.set_defaults(func=cmd_push)

    card = sub.add_parser("card", help="render the dataset card of an export (stdout, or --write into its README.md)")
    _add_export_folder_options(card, "use")
    card.add_argument("--repo", metavar="NAMESPACE/NAME", help="repo id for the load snippets")
    _add_card_options(card)
    card.add_argument("--write", action="store_true", help="write the card into the folder's README.md")
    card.set_defaults(func=cmd_card)
    _add_secrets_command(sub)


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub.push import PushOptions, push_to_hub

    config, settings = load_settings(args)
    if args.interactions or args.demo:  # export first, with the defaults `export` has
        from ..config import RunOptions
        from ..request import ExportRequest, Outputs
        from .export import run_export

        output = args.output or ("output/demo_training_data" if args.demo else settings.output_dir)
        outputs, run = Outputs(append=settings.incremental), RunOptions(show_progress=show_progress(args))
        request = ExportRequest(store_path(args, settings), output, settings, outputs, run=run)
        run_export(request, make_convert(args, config), args)
    folder = hf_folder(args, settings)
    options = PushOptions(
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
        show_progress=show_progress(args),
    )
    result = push_to_hub(folder, args.repo, options)
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

    _config, settings = load_settings(args)
    folder = hf_folder(args, settings)
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


def cmd_secrets(args: argparse.Namespace) -> int:
    from ..hub.safety import accept, kinds_of, review, review_command, write_baseline

    _config, settings = load_settings(args)
    folder = hf_folder(args, settings)  # --data as every command takes it; without it, a hint that runs as printed
    result = review(folder)
    accept(result, args.accept or (), everything=args.accept_all)
    if not result.findings:
        print(f"no string in {folder} looks like a secret")
    else:
        print(f"{plural(len(result.findings), 'string')} in {folder} look like secrets ({kinds_of(result.findings)}):")
        for finding in result.findings:
            print(f"  {'accepted' if result.accepted(finding) else 'new':<8} {finding.describe()}")
    if args.write_baseline:
        stale = result.stale()
        path = write_baseline(result)
        dropped = f"; {plural(stale, 'entry', 'entries')} no longer found, dropped" if stale else ""
        print(f"wrote {path}: {plural(len(result.baseline), 'accepted finding')}{dropped}")
    unaccepted = result.unaccepted
    if result.findings:
        baseline = str(result.baseline_path) if result.has_baseline else "no baseline yet"
        print(f"{len(result.findings) - len(unaccepted)} accepted ({baseline}), {len(unaccepted)} not")
    if not unaccepted:
        return 0
    print(
        f"to accept them once reviewed: {review_command(folder)} --accept-all --write-baseline "
        "(or --accept KIND for some kinds); to publish without them: export again with --redact-secrets",
        file=sys.stderr,
    )
    return 1


def _add_export_folder_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """Where an existing export is: `--data`, or `--output` (or the config's output_dir), as `common.hf_folder`
    reads them."""
    parser.add_argument("--data", metavar="DIR", help="an export folder or its hf_dataset/ (default: <output>)")
    parser.add_argument("--output", metavar="DIR", help=f"the export folder whose hf_dataset/ to {verb}")
    parser.add_argument("--config", metavar="YAML", help="upstream config.yaml (for paths.training_data.output_dir)")


def _add_secrets_command(sub) -> None:
    from ..measure.secrets import KINDS

    secrets = sub.add_parser(
        "secrets",
        help="list what in an export looks like a key or token; accept reviewed findings for push",
        description="Scan what a push of the export would upload for keys, tokens, private keys and passwords in "
        "URLs; list each finding (its kind, where, a preview and a digest, never the text) as accepted by the "
        "folder's baseline or new; exit 1 while a finding is not accepted. --write-baseline records the accepted "
        "ones in hf_dataset/.personagym-secrets-baseline.json, which push honours (see docs/security.md).",
    )
    _add_export_folder_options(secrets, "scan")
    secrets.add_argument(
        "--accept",
        nargs="+",
        action="extend",
        choices=KINDS,
        metavar="KIND",
        help=f"accept the findings of these kinds ({', '.join(KINDS)})",
    )
    secrets.add_argument("--accept-all", action="store_true", help="accept every finding listed")
    secrets.add_argument(
        "--write-baseline",
        action="store_true",
        help="record the accepted findings (the baseline's that are still found, and those accepted now) in the "
        "baseline",
    )
    secrets.set_defaults(func=cmd_secrets)


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


def _add_hub_options(parser: argparse.ArgumentParser) -> None:
    from ..hub.connection import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT

    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up a Hub request after this long without an answer, then retry it (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retries",
        type=count,
        default=DEFAULT_ATTEMPTS - 1,
        metavar="N",
        help="retry a Hub request that timed out or failed transiently up to N times "
        f"(default {DEFAULT_ATTEMPTS - 1})",
    )

