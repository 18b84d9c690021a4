"""The house rules, checked from the source: one-way imports, no private reach-ins, one home per fact."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kaggle_kit"
# Runs inside a Kaggle session without the kit on its path, so it spells Kaggle's two variable names itself.
_STANDALONE = {"kaggle_kit.sim.standins.kaggle_secrets"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name][0].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield _absolute(module, node), [a.name for a in node.names], node.lineno


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, (_, tree) in MODULES.items():
        for target, names, _ in _imports(name, tree):
            candidates = [target] + [f"{target}.{n}" for n in names]
            for candidate in candidates:
                # A module always imports its parent packages first: that edge is implicit, not a dependency.
                if candidate in MODULES and candidate != name and not name.startswith(candidate + "."):
                    graph[name].add(candidate)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(start: str) -> None:
        # Iterative Tarjan: the module graph is deep enough to trouble the recursion limit in a large package.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles_counting_type_hints_and_function_imports() -> None:
    assert _cycles(_edges()) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _private_attributes_of_kit_classes() -> set[str]:
    names: set[str] = set()
    for _, tree in MODULES.values():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_private(node.name):
                    names.add(node.name)
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id in ("self", "cls") and _is_private(node.attr)):
                    names.add(node.attr)
    return names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_a_private_name_of_another_module() -> None:
    offences = []
    for name, (path, tree) in MODULES.items():
        for target, names, line in _imports(name, tree):
            if not target.startswith("kaggle_kit"):
                continue
            parts = target.split(".")
            if any(_is_private(p) for p in parts) and target != name:
                offences.append(f"{path}:{line}: imports private module {target}")
            for imported in names:
                if _is_private(imported):
                    offences.append(f"{path}:{line}: imports private name {imported} from {target}")
    assert offences == []


def test_no_code_reaches_into_another_objects_private_attributes() -> None:
    private = _private_attributes_of_kit_classes()
    offences = []
    for name, (path, tree) in MODULES.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in private):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            offences.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


def _string_constants(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """String literals that are data: not docstrings, not the names listed in ``__all__``."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            docstrings.update(id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value, node.lineno


def _renames(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Calls that rename a file: os.replace/os.rename/shutil.move, and Path.rename/Path.replace (one argument, where
    str.replace takes two)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func in ("os.replace", "os.rename", "shutil.move"):
            yield func, node.lineno
        elif (isinstance(node.func, ast.Attribute) and node.func.attr in ("rename", "replace") and len(node.args) == 1
              and func != "dataclasses.replace"):
            yield func, node.lineno


def test_files_are_renamed_only_by_the_atomic_write_helper() -> None:
    offences = [
        f"{path}:{line}: {func}"
        for name, (path, tree) in MODULES.items() if name != "kaggle_kit.fileio"
        for func, line in _renames(tree)
    ]
    assert offences == []


def test_kaggle_handles_are_parsed_only_in_the_handle_module() -> None:
    # A character class of slug characters next to a '/' is an owner/slug rule.
    offences = [
        f"{path}:{line}: {text!r}"
        for name, (path, tree) in MODULES.items() if name != "kaggle_kit.handles"
        for text, line in _string_constants(tree)
        if "/" in text and re.search(r"\[[^\]]*(a-z|A-Z)[^\]]*0-9[^\]]*\]", text)
    ]
    assert offences == []


def test_machine_shapes_and_platform_figures_live_only_in_the_platform_module() -> None:
    from kaggle_kit.kaggle_platform import MACHINE_SHAPES, RETIRED_SHAPES

    shapes = set(MACHINE_SHAPES) | set(RETIRED_SHAPES)
    offences = [
        f"{path}:{line}: {text!r}"
        for name, (path, tree) in MODULES.items() if name != "kaggle_kit.kaggle_platform"
        for text, line in _string_constants(tree) if text in shapes
    ]
    for name, (path, tree) in MODULES.items():
        if name == "kaggle_kit.kaggle_platform":
            continue
        source = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\b(12|9|20|30) \* 3600\b", source):
            offences.append(f"{path}: session limit or weekly quota {match.group(0)!r} spelled outside the platform")
    assert offences == []


def test_environment_variable_names_live_only_in_envvars() -> None:
    offences = [
        f"{path}:{line}: {text!r}"
        for name, (path, tree) in MODULES.items() if name not in ("kaggle_kit.envvars", *_STANDALONE)
        for text, line in _string_constants(tree) if re.fullmatch(r"KAGGLE_[A-Z_]+", text)
    ]
    assert offences == []


@pytest.mark.parametrize("literal, home", [
    (".manifest.json", "kaggle_kit.checkpoint.format"),
    ("latest.json", "kaggle_kit.mirror.ledger"),
    ("ledger.json", "kaggle_kit.mirror.ledger"),
])
def test_checkpoint_and_mirror_file_names_have_one_home(literal: str, home: str) -> None:
    assert home in MODULES, f"{home} is the home of {literal!r}"
    offences = [
        f"{path}:{line}: {text!r}"
        for name, (path, tree) in MODULES.items() if name != home
        for text, line in _string_constants(tree) if text == literal
    ]
    assert offences == []


def _notebook_sources() -> list[Path]:
    root = PACKAGE.parent
    templates = PACKAGE / "templates"
    return sorted([*(root / "notebooks").glob("*.py"), *(templates / "project" / "notebooks").glob("*.tmpl"),
                   templates / "bootstrap.py.tmpl"])


@pytest.mark.parametrize("source", _notebook_sources(), ids=lambda p: p.name)
def test_notebooks_import_only_the_kit_top_level_and_the_workload(source: Path) -> None:
    """A notebook calls the kit's public API (``from kaggle_kit import ...``) and its own workload, nothing deeper:
    the kit's inner layout can then move without breaking notebooks in the wild."""
    workloads = ("kaggle_kit.cmfd",)  # the CMFD example's own package
    deep = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()
            if (found := re.match(r"\s*(?:from|import)\s+(kaggle_kit\.[\w.]+)", line))
            and not found.group(1).startswith(workloads)]
    assert not deep, f"{source.name} imports kit internals: {deep}; export the name from kaggle_kit instead"
