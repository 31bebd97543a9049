"""`personagym-hf`: the command line. Each command parses its options, calls the library and prints a
short summary; errors become one line that says what to do. Heavy imports happen inside commands so
`--help` stays fast. The commands live by group: `export.py`, `inspect.py` (validate, stats, audit, tokens),
`publish.py` (push, card, secrets)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Callable

from . import export, inspect, publish
from .common import CliError, check_sources

logger = logging.getLogger("personagym_hf")

EPILOG = """examples:
  personagym-hf export --demo                         # try it on the bundled demo store
  personagym-hf export --interactions output/interactions --output output/training_data
  personagym-hf export --config config.yaml --append  # add new interactions to an earlier export
  personagym-hf validate --interactions output/interactions
  personagym-hf stats --interactions output/interactions
  personagym-hf export --config config.yaml --redact-secrets  # keys and tokens in the dialogues -> <REDACTED:kind>
  personagym-hf secrets --data output/training_data/hf_dataset  # what the push would refuse, for review
  personagym-hf push --repo your-name/personagym-dataset --dry-run
  personagym-hf audit --data output/training_data/hf_dataset --max-leak 0.05
  personagym-hf tokens --tokenizer path/to/tokenizer --max-length 2048 --data output/training_data/hf_dataset
"""



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personagym-hf",
        description="Turn PersonaGym interaction stores into training datasets: JSON/JSONL exports with "
        "leak-free splits (by persona, query or both), a `datasets` folder, and Hugging Face Hub pushes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    export.add_commands(sub)
    inspect.add_store_commands(sub)
    publish.add_commands(sub)
    inspect.add_audit_commands(sub)
    return parser


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
    if "personagym_hf.run.local" in sys.modules:
        from ..run.local import WorkerDied

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


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, and for an option the command does not have, the one it has that is spelt closest."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        import difflib

        command = parser._subparsers._group_actions[0].choices[args.command]  # argparse keeps them there only
        options = [name for action in command._actions for name in action.option_strings if name.startswith("--")]
        typed = [word.split("=", 1)[0] for word in unknown if word.startswith("--")]
        near = [match for word in typed for match in difflib.get_close_matches(word, options, n=1, cutoff=0.7)]
        hint = f"; did you mean {' or '.join(dict.fromkeys(near))}?" if near else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
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
        check_sources(args)
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

