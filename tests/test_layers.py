"""The package's modules import downward only, and no import circle: checked on the source with `ast`.

Every import counts, the ones inside functions too (they hide a dependency, they do not remove it). The layers are
the table below, documented in docs/architecture.md ("How the code is laid out"): a module may import its own layer
and the ones below it, never one above. A new module must be given a layer here.

tests/ mirrors that layout (`test_the_tests_mirror_the_package`): a folder per subpackage it tests, the helper
modules at its top, and no test module imports another.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import personagym_hf

PACKAGE = Path(personagym_hf.__file__).parent

# Lowest first, in the order the data flows. An entry names a module, or a subpackage and every module in it: a
# folder is one layer. `personagym_hf` is the package's `__init__` (it re-exports the public names of the faces).
LAYERS: dict[str, tuple[str, ...]] = {
    "leaf": ("config", "extras", "memory", "request", "schema", "version", "waiting", "wording"),
    "read": ("read",),
    "measure": ("measure",),
    "transform": ("transform",),
    "card": ("card",),
    "write": ("write",),
    "hub": ("hub",),
    "run": ("run",),
    "faces": (
        "personagym_hf",
        "__main__",
        "builder",
        "cli",
        "interaction_generator",
        "training_data",
        # earlier module paths, kept as re-exports
        "audit",
        "audit_card",
        "tokens",
    ),
    "testing": ("testing",),  # not in the wheel: for the tests, the benchmark and the demo's script
}


def module_files(package: Path, name: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its `__init__.py`)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((name, *parts))] = path
    return modules


def imports_of(package: Path, name: str) -> dict[str, list[tuple[str, int]]]:
    """Module -> the package's modules it imports, with the line of each import."""
    modules = module_files(package, name)
    graph: dict[str, list[tuple[str, int]]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        here = module.split(".") if is_package else module.split(".")[:-1]
        found = graph[module] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                source = ".".join(part for part in (base, node.module or "") if part)
                # `from x import y` imports the module x.y when there is one, else x itself.
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target in modules and target != module:
                    found.append((target, node.lineno))
    return graph


def circles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The modules of each import circle (a strongly connected set of more than one module), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for target, _line in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            members = []
            while not members or members[-1] != module:
                members.append(stack.pop())
            if len(members) > 1:
                found.append(sorted(members))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def layer_of(module: str, layers: dict[str, tuple[str, ...]], name: str) -> tuple[int, str] | None:
    """(rank, layer) of a module: the entry that is the module itself, or the subpackage it is in."""
    for index, (layer, entries) in enumerate(layers.items()):
        for entry in entries:
            dotted = entry if entry == name else f"{name}.{entry}"
            if module == dotted or (dotted != name and module.startswith(f"{dotted}.")):
                return index, layer
    return None


def upward(graph: dict[str, list[tuple[str, int]]], layers: dict[str, tuple[str, ...]], name: str) -> list[str]:
    """One line per import of a module from a layer above its own, or of a module no layer lists."""
    rank = {module: layer_of(module, layers, name) for module in graph}
    problems = [
        f"{module} is in no layer: add it to LAYERS in tests/test_layers.py (and to docs/architecture.md)"
        for module in sorted(graph)
        if rank[module] is None
    ]
    for module in sorted(graph):
        for target, line in graph[module]:
            here, there = rank[module], rank.get(target)
            if here is not None and there is not None and there[0] > here[0]:
                problems.append(
                    f"{module} (line {line}) imports {target}: layer {here[1]} imports layer {there[1]}, which is "
                    "above it; move the code it needs down, or pass it in"
                )
    return problems


def test_no_import_circle():
    assert circles(imports_of(PACKAGE, "personagym_hf")) == []


def test_imports_go_downward_only():
    assert upward(imports_of(PACKAGE, "personagym_hf"), LAYERS, "personagym_hf") == []


def test_every_layer_module_exists():
    modules = module_files(PACKAGE, "personagym_hf")
    listed = [
        module if module == "personagym_hf" else f"personagym_hf.{module}" for m in LAYERS.values() for module in m
    ]
    assert sorted(set(listed) - set(modules)) == []
    assert len(listed) == len(set(listed))


@pytest.fixture
def tiny_package(tmp_path: Path) -> Path:
    """A package with a circle through a function-level import (a -> b -> a) and an upward import (b -> c)."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .c import main\n")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("import os\n\n\ndef f():\n    from .a import g\n    from .c import main\n")
    (package / "c.py").write_text("from .sub import d\nfrom .sub.d import x\n\n\ndef main():\n    pass\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "d.py").write_text("from .. import a\nfrom ..b import f\n")
    return package


def test_imports_of_reads_module_and_function_level_imports(tiny_package: Path):
    assert imports_of(tiny_package, "pkg") == {
        "pkg": [("pkg.c", 1)],
        "pkg.a": [("pkg.b", 1)],
        "pkg.b": [("pkg.a", 5), ("pkg.c", 6)],
        "pkg.c": [("pkg.sub.d", 1), ("pkg.sub.d", 2)],
        "pkg.sub": [],
        "pkg.sub.d": [("pkg.a", 1), ("pkg.b", 2)],
    }


def test_a_circle_and_an_upward_import_are_found(tiny_package: Path):
    graph = imports_of(tiny_package, "pkg")
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d"]]
    assert circles({"x": [("y", 1)], "y": [("x", 3)], "z": [("x", 1)]}) == [["x", "y"]]
    layers = {"leaf": ("a", "b"), "faces": ("pkg", "c", "sub.d")}
    assert upward(graph, layers, "pkg") == [
        "pkg.sub is in no layer: add it to LAYERS in tests/test_layers.py (and to docs/architecture.md)",
        "pkg.b (line 6) imports pkg.c: layer leaf imports layer faces, which is above it; move the code it needs "
        "down, or pass it in",
    ]


def test_every_folder_is_small_and_says_what_each_module_owns():
    """Each subpackage holds at most 12 modules, and its docstring names every one of them (`- `name.py`: ...`)."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        modules = sorted(path.name for path in init.parent.glob("*.py") if path.name != "__init__.py")
        assert len(modules) <= 12, f"{init.parent.name}/ holds {len(modules)} modules"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if init.parent.name == "testing":
            continue
        assert sorted(re.findall(r"^- `(\w+\.py)`: \S", doc, flags=re.M)) == modules, init


def test_the_layout_page_lists_every_module_in_its_layer():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    listed = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in LAYERS:
            for name in re.findall(r"`([\w/]+)\.py`", cells[1]):
                listed[name] = cells[0]
    expected = {}
    for module, path in module_files(PACKAGE, "personagym_hf").items():
        rank = layer_of(module, LAYERS, "personagym_hf")
        if path.name == "__init__.py" and path.parent != PACKAGE or rank[1] == "testing":
            continue  # a subpackage's face: its docstring lists its modules (test above)
        expected[path.relative_to(PACKAGE).with_suffix("").as_posix()] = rank[1]
    assert listed == expected


def constants_patched(source: str) -> list[str]:
    """The module constants (UPPER_CASE names, `_` first or not) that `monkeypatch.setattr(x, "NAME", ...)` sets in
    a test's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setattr"):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Name) and owner.id == "monkeypatch") or len(node.args) < 2:
            continue
        name = node.args[1]
        if (
            isinstance(name, ast.Constant)
            and isinstance(name.value, str)
            and re.fullmatch(r"_?[A-Z][A-Z0-9_]*", name.value)
        ):
            found.append(name.value)
    return found


def test_no_test_tunes_the_package_by_patching_a_module_constant():
    """Tuning values are fields of the options they tune (e.g. `ReadSizes`, `LeakageOptions`, a parameter with its
    default), so a test passes them as a caller would. A patched constant is also invisible to a worker process.
    (Tests still patch functions to inject faults: a failing `os.readv`, a full disk.)"""
    assert constants_patched('monkeypatch.setattr(m, "_PLAN_BLOCK", 3)\nmonkeypatch.setattr(m, "readv", f)') == [
        "_PLAN_BLOCK"
    ]
    tests = Path(__file__).parent
    patched = {
        path.relative_to(tests).as_posix(): names
        for path in sorted(tests.rglob("*.py"))
        if (names := constants_patched(path.read_text(encoding="utf-8")))
    }
    # huggingface_hub reads HF_ENDPOINT once, at import: setting its constant is how a test sets that variable
    assert patched == {"hub/test_hub_connection.py": ["ENDPOINT"], "hub/test_hub_timeouts.py": ["ENDPOINT"]}


def imported_test_modules(source: str) -> list[tuple[str, int]]:
    """The test modules (`test_*`) that a source imports, with the line of each import."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found += [(name, node.lineno) for name in names if name.split(".")[0].startswith("test_")]
    return found


def layout_problems(tests: Path, subpackages: set[str]) -> list[str]:
    """One line per break of the tests' layout: a folder of tests/ that is no subpackage of the package (`fixtures`
    holds data), a module nested deeper or a helper module in a folder (helpers live at the top), an `__init__.py`, a
    test module's basename twice, and an import of a test module by any module of tests/."""
    names = ", ".join(sorted(subpackages))
    problems = [
        f"{folder.name}/: a folder of tests/ is named for the package's subpackage it tests ({names})"
        for folder in sorted(tests.iterdir())
        if folder.is_dir() and folder.name not in subpackages | {"fixtures", "__pycache__"} and folder.name[0] != "."
    ]
    first: dict[str, str] = {}
    for path in sorted(tests.rglob("*.py")):
        parts = path.relative_to(tests).parts
        where = "/".join(parts)
        if parts[0] == "fixtures":
            continue
        if len(parts) > 2:
            problems.append(f"{where}: a test module is at the top of tests/ or one folder below it")
        elif len(parts) == 2 and not path.name.startswith("test_"):
            problems.append(f"{where}: a helper module belongs at the top of tests/, where every test imports it from")
        if path.name == "__init__.py":
            problems.append(f"{where}: the folders of tests/ are no packages (a test module's basename is unique)")
        elif path.name.startswith("test_"):
            if path.name in first:
                problems.append(f"{where}: the basename of {first[path.name]} (pytest imports a test by its basename)")
            first.setdefault(path.name, where)
        for module, line in imported_test_modules(path.read_text(encoding="utf-8")):
            problems.append(
                f"{where} (line {line}) imports the test module {module}: move what it shares into a helper module "
                "at the top of tests/"
            )
    return problems


def test_the_tests_mirror_the_package(tmp_path: Path):
    """tests/ has one folder per subpackage it tests (`tests/read/` tests `personagym_hf/read/`), tests of the whole
    product at its top with the helper modules every test imports (conftest.py, exporting.py, ...), and no test
    module imports another: what two of them share is a helper module's."""
    subpackages = {init.parent.name for init in PACKAGE.glob("*/__init__.py")}
    assert {"read", "measure", "transform", "card", "write", "hub", "run", "cli"} <= subpackages
    fake = tmp_path / "tests"
    for name, source in {
        "conftest.py": "import json\n",
        "test_top.py": "import os\nfrom test_other import SHARED\n",
        "read/test_a.py": "import test_b as b\n",
        "read/helper.py": "",
        "read/__init__.py": "",
        "write/test_a.py": "def f():\n    from test_top import g\n",
        "write/deep/test_deep.py": "",
        "misc/test_c.py": "from testing import x\nfrom personagym_hf import test_like\n",
        "fixtures/test_data.py": "import test_top\n",
    }.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(source, encoding="utf-8")
    assert layout_problems(fake, {"read", "write"}) == [
        "misc/: a folder of tests/ is named for the package's subpackage it tests (read, write)",
        "read/__init__.py: a helper module belongs at the top of tests/, where every test imports it from",
        "read/__init__.py: the folders of tests/ are no packages (a test module's basename is unique)",
        "read/helper.py: a helper module belongs at the top of tests/, where every test imports it from",
        "read/test_a.py (line 1) imports the test module test_b: move what it shares into a helper module at the top "
        "of tests/",
        "test_top.py (line 2) imports the test module test_other: move what it shares into a helper module at the "
        "top of tests/",
        "write/deep/test_deep.py: a test module is at the top of tests/ or one folder below it",
        "write/test_a.py: the basename of read/test_a.py (pytest imports a test by its basename)",
        "write/test_a.py (line 2) imports the test module test_top: move what it shares into a helper module at the "
        "top of tests/",
    ]
    assert layout_problems(Path(__file__).parent, subpackages) == []


def parameter_counts(source: str) -> dict[str, int]:
    """Each function's parameters (`self` and `cls` included, `*args` and `**kwargs` one each), by name."""
    counts = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            named = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            counts[node.name] = named + (args.vararg is not None) + (args.kwarg is not None)
    return counts


def test_no_function_takes_more_than_twelve_parameters():
    """Options travel as objects (`ExportRequest`, `RunOptions`, `PushOptions`, `ReadSizes`), not as long keyword
    lists declared again at every layer."""
    assert parameter_counts("def f(a, b, /, c, *d, e, **g): pass") == {"f": 6}
    over = {
        f"{path.relative_to(PACKAGE).as_posix()}:{name}": count
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, count in parameter_counts(path.read_text(encoding="utf-8")).items()
        if count > 12
    }
    assert over == {}
