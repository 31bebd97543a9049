"""The documentation, tested: README.md and every page of docs/.

- every relative link resolves to a file, and every `#anchor` to a heading of its page (GitHub's slugs);
- every ```python block compiles, and runs in a folder with a demo export, `config.yaml` and a store (the blocks of a
  page in order, sharing their names) — unless `NOT_RUN` says why it cannot;
- every `personagym-hf ...` line of a ```bash block parses with the command's own parser;
- every ```json block is JSON.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import textwrap
from pathlib import Path

import pytest

from personagym_hf.cli import build_parser, main

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
CONFIG_EXAMPLE = DOCS / "config.yaml"

# Python blocks that compile but are not run, by a line of the block: the reason.
NOT_RUN: dict[str, str] = {
    "push_to_hub(": "pushes to the Hub (tests/test_hub.py runs push_to_hub against the local Hub server)",
}

def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", flags=re.M | re.S)


def fenced(page: Path, language: str) -> list[tuple[int, str]]:
    """The page's fenced blocks in `language`, as (line number, code), dedented (a block may sit in a list item)."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, textwrap.dedent(match[3]))
        for match in FENCE.finditer(text)
        if match[2] == language
    ]


def prose(page: Path) -> str:
    """The page without its fenced blocks and inline code (whose text is no heading and no link)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return re.sub(r"`[^`\n]*`", "code", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation but `-` and `_` dropped, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        base = anchor = slug(heading)
        number = 0
        while anchor in found:  # GitHub numbers a repeated heading's anchor
            number += 1
            anchor = f"{base}-{number}"
        found.add(anchor)
    return found


def links(page: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(page))


def test_the_pages_exist():
    names = {page.name for page in PAGES}
    assert {"README.md", "cli.md", "input-formats.md", "performance.md", "architecture.md"} <= names
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_the_readme_links_every_docs_page():
    listed = {Path(target).name for target in links(ROOT / "README.md") if target.startswith("docs/")}
    assert {page.name for page in DOCS.iterdir()} <= listed


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {rel(file)}")
    assert not broken, f"{rel(page)}: broken links:\n" + "\n".join(broken)


def test_slugs_follow_github():
    assert slug("Audits: leakage and token budgets") == "audits-leakage-and-token-budgets"
    assert slug("`split_by: persona_and_query`") == "split_by-persona_and_query"
    assert slug("Token budgets for a trainer's tokenizer") == "token-budgets-for-a-trainers-tokenizer"


PYTHON_BLOCKS = [(page, line, code) for page in PAGES for line, code in fenced(page, "python")]


@pytest.mark.parametrize("page, line, code", PYTHON_BLOCKS, ids=[f"{rel(p)}:{n}" for p, n, _ in PYTHON_BLOCKS])
def test_every_python_block_compiles(page, line, code):
    compile(code, f"{rel(page)}:{line}", "exec")


def not_run(code: str) -> str | None:
    return next((reason for marker, reason in NOT_RUN.items() if marker in code), None)


def test_every_block_not_run_is_still_there():
    for marker in NOT_RUN:
        assert any(marker in code for _page, _line, code in PYTHON_BLOCKS), f"NOT_RUN: no block holds {marker!r}"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """What the snippets expect in the working folder: a demo export in output/training_data, the demo store in
    output/interactions, and docs/config.yaml as config.yaml."""
    from personagym_hf.demo import demo_store_path

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--demo", "--output", "output/training_data", "-q"]) == 0
    shutil.copytree(demo_store_path(), "output/interactions")
    shutil.copy(CONFIG_EXAMPLE, "config.yaml")
    return tmp_path


RUN_PAGES = [page for page in PAGES if any(not not_run(code) for _line, code in fenced(page, "python"))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=rel)
def test_python_blocks_run(page, workspace, capsys):
    scope: dict = {"__name__": "docs_snippets"}  # classes defined in a block need a module name
    for line, code in fenced(page, "python"):
        if not_run(code):
            continue
        exec(compile(code, f"{rel(page)}:{line}", "exec"), scope)


def command_lines(code: str) -> list[list[str]]:
    """The `personagym-hf` commands of a bash block, as argument lists: lines joined at a trailing backslash,
    comments dropped, split at `&&`, `||`, `;` and `|`, leading `VAR=value` assignments dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        segment: list[str] = []
        for token in [*shlex.split(line, comments=True), "&&"]:
            if token in ("&&", "||", ";", "|"):
                while segment and re.fullmatch(r"[A-Z_]+=\S*", segment[0]):
                    segment.pop(0)
                if segment and Path(segment[0]).name == "personagym-hf":
                    commands.append(segment[1:])
                segment = []
            else:
                segment.append(token)
    return commands


def test_command_lines_are_found():
    code = (
        "python3 -m venv .venv && .venv/bin/personagym-hf export --demo  # a comment\n"
        "RAY_AUTH_MODE=token personagym-hf export --engine ray \\\n  --address HEAD_IP:6379\n"
        "pip install -e '.[audit]'\n"
    )
    assert command_lines(code) == [["export", "--demo"], ["export", "--engine", "ray", "--address", "HEAD_IP:6379"]]


BASH_COMMANDS = [
    (page, line, args) for page in PAGES for line, code in fenced(page, "bash") for args in command_lines(code)
]


def test_the_docs_have_commands():
    assert len(BASH_COMMANDS) >= 20
    assert {args[0] for _page, _line, args in BASH_COMMANDS} >= {"export", "validate", "push", "audit", "tokens"}


@pytest.mark.parametrize(
    "page, line, args", BASH_COMMANDS, ids=[f"{rel(p)}:{n}:{' '.join(a)}" for p, n, a in BASH_COMMANDS]
)
def test_every_command_line_parses(page, line, args, capsys):
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{rel(page)}:{line}: personagym-hf {shlex.join(args)}: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_json_block_is_json(page):
    for line, code in fenced(page, "json"):
        try:
            json.loads(code)
        except ValueError as error:
            pytest.fail(f"{rel(page)}:{line}: not JSON ({error})")
