"""Upload a ppopt JSONL to a Hub dataset repo with a generated card, so `load_dataset(repo)` loads it.

    python scripts/upload_hf_dataset.py --file hf_dataset.jsonl --repo your-name/ppopt-dataset \\
        [--private] [--split train] [--allow-secrets]

The token comes from --token, HF_TOKEN or `hf auth login`; it is never printed.
"""

import argparse
import sys

from personagym_hf.hub.auth import check_auth
from personagym_hf.hub.connection import DEFAULT_TIMEOUT, HubUnreachableError, hub_session
from personagym_hf.hub.ppopt import upload_jsonl
from personagym_hf.hub.push import PushError, hub_api


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True, help="the JSONL made by prepare_ppopt_hf_jsonl.py")
    parser.add_argument("--repo", required=True, help="NAMESPACE/NAME of the dataset repo (created if missing)")
    parser.add_argument("--split", default="train", help="split name for this file (default: train)")
    parser.add_argument("--private", action=argparse.BooleanOptionalAction, default=None, help="repo visibility")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument(
        "--allow-secrets",
        action="store_true",
        help="upload even lines holding what looks like a key, token or password (real ones included)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds without an answer before a request is retried"
    )
    args = parser.parse_args(argv)
    try:
        with hub_session(args.timeout):
            auth = check_auth(hub_api(args.token), args.token)
            if not auth.ok:
                return error(f"cannot upload: {auth.problem}")
            result = upload_jsonl(
                args.file,
                args.repo,
                split=args.split,
                private=args.private,
                token=args.token,
                allow_secrets=args.allow_secrets,
            )
    except (OSError, ValueError, HubUnreachableError, PushError) as e:
        return error(str(e))
    for notice in result.plan.notices:
        print(notice)
    if result.committed:
        print(f"uploaded {args.file} as the {args.split} split: {result.commit_url}")
    else:
        print(f"{args.repo} already holds this file: no commit made")
    return 0


def error(message: str) -> int:
    print(f"upload_hf_dataset: error: {message.splitlines()[0]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
