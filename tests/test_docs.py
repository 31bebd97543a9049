"""The documentation, tested: README.md and every page of docs/.

- every relative link resolves to a file, and every `#anchor` to a heading of its page (GitHub's slugs);
- every ```python block compiles, and runs in a folder with a demo export, `config.yaml` and a store (the blocks of a
  page in order, sharing their names) — unless `NOT_RUN` says why it cannot;
- every `personagym-hf ...` line of a ```bash block parses with the command's own parser;
- every ```json block is JSON; the example record of docs/input-formats.md is valid, and its field table says
  truly which fields are required;
- docs/config.yaml holds every key config.py reads, each commented, at its default;
- docs/cli.md names every option of every command.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import textwrap
import typing
from pathlib import Path

import pytest
import yaml

from personagym_hf.cli import build_parser, main
from personagym_hf.config import (
    FORMAT_FLAGS,
    PERSONA_PLACEMENTS,
    SPLIT_ASSIGNMENTS,
    SPLIT_BY,
    SPLIT_NAMES,
    ExportConfig,
    OnBadRecords,
    load_config,
    parse_config,
)

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
CONFIG_EXAMPLE = DOCS / "config.yaml"

# Python blocks that compile but are not run, by a line of the block: the reason.
NOT_RUN: dict[str, str] = {
    "push_to_hub(": "pushes to the Hub (tests/hub/test_hub.py runs push_to_hub against the local Hub server)",
    "SFTTrainer(": "downloads a model (tests/test_trl_training.py trains each config with a tiny model built offline)",
}

# Every key personagym_hf/config.py reads, as a dotted path: the format flags and split names come from config.py's
# own constants, the rest is listed here. A new key goes here and into docs/config.yaml.
KEYS_READ = [
    "paths.interactions.output_dir",
    "paths.training_data.output_dir",
    *(f"training_data.format.{flag}" for flag in FORMAT_FLAGS),
    *(f"training_data.split.{name}" for name in SPLIT_NAMES),
    "training_data.split_by",
    "training_data.split_assignment",
    "training_data.on_bad_records",
    "training_data.prompts.rewrite_instruction",
    "training_data.prompts.persona",
    "training_data.prompts.persona_intro",
    "training_data.redact_secrets",
    "experiment.seed",
    "experiment.incremental",
]
# Keys with a fixed set of values: docs/config.yaml names every value.
CHOICES = {
    "training_data.split_by": SPLIT_BY,
    "training_data.split_assignment": SPLIT_ASSIGNMENTS,
    "training_data.on_bad_records": typing.get_args(OnBadRecords),
    "training_data.prompts.persona": PERSONA_PLACEMENTS,
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
    from personagym_hf.read.demo import demo_store_path

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


# The example interaction record of docs/input-formats.md and its field table.

INPUT_FORMATS = DOCS / "input-formats.md"


def example_record() -> dict:
    text = INPUT_FORMATS.read_text(encoding="utf-8")
    section = text.split("## One interaction record", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, flags=re.S)[1])


def field_table() -> dict[str, tuple[str, str]]:
    """{field: (required or optional, what happens without it)}."""
    rows = re.findall(r"^\| `([^`]+)` \| (required|optional) \| (.*) \|$", INPUT_FORMATS.read_text(encoding="utf-8"),
                      flags=re.M)  # fmt: skip
    return {field: (kind, without) for field, kind, without in rows}


def without(record: dict, field: str) -> dict:
    """The record without `field`: `a`, `a.b`, or `messages[].b` (from every message)."""
    record = copy.deepcopy(record)
    if field.startswith("messages[]."):
        for message in record["messages"]:
            del message[field.split(".", 1)[1]]
    elif "." in field:
        parent, key = field.split(".", 1)
        del record[parent][key]
    else:
        del record[field]
    return record


def validate(folder: Path, record: dict, capsys) -> tuple[int, str]:
    folder.mkdir()
    (folder / f"interaction_{folder.name}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    code = main(["validate", "--interactions", str(folder)])
    return code, capsys.readouterr().out


def test_the_example_record_is_valid(tmp_path, capsys):
    code, out = validate(tmp_path / "store", example_record(), capsys)
    assert code == 0
    assert out.splitlines()[-1] == "1 valid interaction, 0 bad, 0 warnings"


def test_the_field_table_lists_every_field_of_the_example():
    record = example_record()
    fields = {
        *record,
        *(f"metadata.{key}" for key in record["metadata"]),
        *(f"messages[].{key}" for message in record["messages"] for key in message),
    }
    assert set(field_table()) == fields
    assert [field for field, (kind, _) in field_table().items() if kind == "required"] == [
        "persona_id",
        "messages",
        "messages[].role",
        "messages[].content",
    ]


@pytest.mark.parametrize("field", list(field_table()))
def test_a_record_without_a_field_is_as_the_table_says(field, tmp_path, capsys):
    kind, what = field_table()[field]
    code, out = validate(tmp_path / "store", without(example_record(), field), capsys)
    if kind == "required":
        assert code == 1, out
        message = re.match(r"bad record: `([^`]+)`", what)[1]
        assert message in out
    else:
        assert code == 0, out
        assert "1 valid interaction, 0 bad" in out


# docs/config.yaml


def test_the_config_example_is_the_defaults():
    config = load_config(CONFIG_EXAMPLE)
    assert parse_config(config) == ExportConfig()
    assert config["api"]["openai"]["api_key"] == "${OPENAI_API_KEY}"  # another section, read as is and ignored


def leaf_paths(node: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        paths |= leaf_paths(value, f"{path}.") if isinstance(value, dict) else {path}
    return paths


def test_the_config_example_holds_every_key_config_py_reads_and_no_other():
    config = load_config(CONFIG_EXAMPLE)
    read = {section: config[section] for section in ("paths", "training_data", "experiment")}
    assert leaf_paths(read) == set(KEYS_READ)


def key_lines(path: str) -> list[int]:
    """The line numbers (0-based) of a dotted key and of each of its parents, innermost first."""
    node = yaml.compose(CONFIG_EXAMPLE.read_text(encoding="utf-8"))
    lines = []
    for part in path.split("."):
        key, node = next((k, v) for k, v in node.value if k.value == part)
        lines.insert(0, key.start_mark.line)
    return lines


def comment_above(lines: list[str], number: int) -> str:
    """The comment lines right above line `number`, or the comment on it."""
    above = []
    while number > 0 and lines[number - 1].lstrip().startswith("#"):
        number -= 1
        above.insert(0, lines[number])
    return "\n".join(above) or lines[number].partition(" #")[2]


@pytest.mark.parametrize("key", KEYS_READ)
def test_every_config_key_is_commented_with_its_default(key):
    lines = CONFIG_EXAMPLE.read_text(encoding="utf-8").splitlines()
    comments = [comment_above(lines, number) for number in key_lines(key)[:-1]]  # not the top-level section's
    comment = next((text for text in comments if text), "")
    assert comment, f"docs/config.yaml: {key} has no comment above it or above its parent"
    assert "default" in comment.lower(), f"docs/config.yaml: the comment of {key} does not give its default"
    for value in CHOICES.get(key, ()):
        assert value in comment, f"docs/config.yaml: the comment of {key} does not name {value!r}"


def test_the_config_example_is_linked_from_the_readme_and_the_cli_page():
    assert "docs/config.yaml" in links(ROOT / "README.md")
    assert "config.yaml" in links(DOCS / "cli.md")


# docs/cli.md


def test_cli_page_names_every_option_of_every_command():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for name, command in build_parser()._subparsers._group_actions[0].choices.items():
        for action in command._actions:
            missing += [f"{name} {option}" for option in action.option_strings if option.startswith("--")
                        and option != "--help" and f"`{option}" not in text]  # fmt: skip
    assert not missing, "docs/cli.md does not name: " + ", ".join(missing)
