"""The checkpoint and mirror packages, read from the source: imports run one way, no private names cross modules."""

from __future__ import annotations

import ast
from pathlib import Path

import kaggle_kit

PACKAGE = Path(kaggle_kit.__file__).parent
OWN = sorted([*PACKAGE.glob("checkpoint/*.py"), *PACKAGE.glob("mirror/*.py"), PACKAGE / "notify.py"])


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """Every kit module ``path`` imports (at the top, inside functions, under TYPE_CHECKING) and the name taken."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names if alias.name.startswith("kaggle_kit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kaggle_kit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if _is_module(sub) else (node.module, alias.name))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        graph[_module_name(path)] = {module for module, _ in _imports(path)}
    return graph


def test_the_checkpoint_package_never_imports_the_mirror() -> None:
    for path in PACKAGE.glob("checkpoint/*.py"):
        mirror = [module for module, _ in _imports(path) if module.startswith("kaggle_kit.mirror")]
        assert not mirror, f"{path.name} imports {mirror}: the checkpointer sees the mirror through CheckpointMirror"


def test_no_import_cycle_runs_through_the_checkpoint_or_mirror_modules() -> None:
    graph = _graph()
    for path in OWN:
        start = _module_name(path)
        stack, seen = list(graph.get(start, ())), set()
        while stack:
            module = stack.pop()
            assert module != start, f"{start} imports itself back through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                stack.extend(graph.get(module, ()))


def test_no_private_names_cross_a_module_boundary() -> None:
    for path in OWN:
        for module, name in _imports(path):
            assert not (name or module.rsplit(".", 1)[-1]).startswith("_") or name == "__version__", (
                f"{path.relative_to(PACKAGE)} imports the private {module}.{name}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                # os._exit is the standard library's public way to end a process without cleanup.
                assert owner in ("self", "cls") or (owner, node.attr) == ("os", "_exit"), (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} reaches into {owner}.{node.attr}")
