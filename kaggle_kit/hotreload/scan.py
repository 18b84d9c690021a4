"""Source analysis for the hot reloader: import edges, ``from x import y`` bindings, pyc headers, installed copies."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# A cheap scan is enough to order modules; exact ``from`` bindings use the syntax tree, parsed only when needed.
_IMPORT_RE = re.compile(
    rb"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([^\n#)]*)|import[ \t]+([^\n#;]+))", re.M)

Signature = tuple[int, int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What the no-change check compares: a ``git pull`` gives a new inode and ctime even when mtime goes back."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def digest(data: bytes) -> bytes:
    """Content hash that decides whether a file whose stat changed really changed."""
    return hashlib.blake2b(data, digest_size=16).digest()


def package_of(name: str, is_package: bool) -> str:
    """The package relative imports in module ``name`` start from."""
    return name if is_package else name.rpartition(".")[0]


def _absolute(package: str, dots: int, target: str) -> str | None:
    if not dots:
        return target
    parts = package.split(".") if package else []
    if dots - 1 > len(parts):
        return None
    base = parts[: len(parts) - (dots - 1)]
    return ".".join([*base, target] if target else base) or None


def imported_modules(source: bytes, package: str) -> set[str]:
    """Every module name an import statement in ``source`` may refer to (``from p import m`` gives p and p.m)."""
    found: set[str] = set()
    for m in _IMPORT_RE.finditer(source):
        if m.group(4) is not None:
            for part in m.group(4).decode("utf-8", "replace").split(","):
                target = part.strip().split(" ")[0].strip()
                if target:
                    found.add(target)
            continue
        base = _absolute(package, len(m.group(1)), m.group(2).decode("utf-8", "replace"))
        if base is None:
            continue
        found.add(base)
        for part in m.group(3).decode("utf-8", "replace").split(","):
            name = part.strip().split(" ")[0].strip()
            if name and name != "*":
                found.add(f"{base}.{name}")
    return found


def import_order(graph: dict[str, set[str]]) -> dict[str, int]:
    """Position of each module when every module comes after those it imports (a cycle keeps a stable order)."""
    order: dict[str, int] = {}
    visiting: set[str] = set()
    for start in sorted(graph):
        if start in order:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        visiting.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                visiting.discard(node)
                order[node] = len(order)
            elif child not in order and child not in visiting:
                visiting.add(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return order


def from_bindings(source: str | bytes, package: str) -> set[tuple[str, str, str]]:
    """``(module, name, bound_as)`` for each module-level ``from module import name as bound_as``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[tuple[str, str, str]] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue  # names imported there are local, not module-level bindings
            if isinstance(child, ast.ImportFrom):
                base = _absolute(package, child.level, child.module or "")
                if base:
                    found.update((base, a.name, a.asname or a.name) for a in child.names)
            stack.append(child)
    return found


def changed_since_import(cached: str | None, st: os.stat_result, data: bytes) -> bool:
    """Whether a module's source differs from what its pyc was compiled from, i.e. from what was imported.

    The import system rewrites a stale pyc, so its header records the source the module was loaded from. Without a
    readable pyc (read-only folder) the loaded module is taken as current; so it is when bytecode is not written
    (``PYTHONDONTWRITEBYTECODE``): the import then compiled the source without replacing a stale pyc, whose header
    says nothing about what was imported.
    """
    if not cached or sys.dont_write_bytecode:
        return False
    try:
        with open(cached, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    if len(head) < 16 or head[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(head[4:8], "little")
    if flags & 1:
        return head[8:16] != importlib.util.source_hash(data)
    mtime = int.from_bytes(head[8:12], "little")
    size = int.from_bytes(head[12:16], "little")
    return mtime != (int(st.st_mtime) & 0xFFFFFFFF) or size != (st.st_size & 0xFFFFFFFF)


def checkout_packages(roots: list[Path]) -> dict[str, Path]:
    """Top-level packages and modules a checkout holds (``root/pkg``, ``root/src/pkg``, ``root/mod.py``)."""
    found: dict[str, Path] = {}
    for root in roots:
        for folder in (root, root / "src"):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
                    found.setdefault(entry.name, Path(entry.path))
                elif entry.name.endswith(".py") and entry.is_file():
                    found.setdefault(entry.name[:-3], Path(entry.path))
    return found


@dataclass
class InstalledCopy:
    """A project package imported from outside the checkout (a non-editable install), watched against the checkout."""

    package: str
    installed: Path
    checkout: Path
    # checkout file -> (installed file, last stat signature of the checkout file)
    files: dict[str, tuple[str, Signature | None]] = field(default_factory=dict)

    def watch(self, module_file: str) -> None:
        """Pair a loaded module file of the installed copy with its counterpart in the checkout."""
        if self.installed.is_dir():
            try:
                rel = Path(module_file).relative_to(self.installed)
            except ValueError:
                return
            counterpart = self.checkout / rel
        else:
            counterpart = self.checkout
        self.files.setdefault(str(counterpart), (module_file, None))

    def newer_files(self) -> list[str]:
        """Checkout files whose stat changed since last asked and that now differ from, and are newer than, the copy."""
        newer: list[str] = []
        # Only a checkout holding every loaded file of the copy is taken as the same project (a folder that merely
        # shares a name with an installed package, say ``utils``, is not).
        same_project = not self.installed.is_dir() or len(self.files) >= 2
        for checkout_file, (installed_file, old_sig) in list(self.files.items()):
            try:
                st = os.stat(checkout_file)
            except OSError:
                same_project = False
                continue
            sig = signature(st)
            if sig == old_sig:
                continue
            self.files[checkout_file] = (installed_file, sig)
            try:
                installed_st = os.stat(installed_file)
                with open(checkout_file, "rb") as a, open(installed_file, "rb") as b:
                    differs = digest(a.read()) != digest(b.read())
            except OSError:
                continue
            if differs and st.st_mtime_ns > installed_st.st_mtime_ns:
                newer.append(checkout_file)
        return newer if same_project else []

    def warning(self, newer: list[str]) -> str:
        """The stale-copy line: where the copy is, which checkout files are newer, and the fix."""
        root = self.checkout.parent.parent if self.checkout.parent.name == "src" else self.checkout.parent
        files = ", ".join(os.path.relpath(f, root) for f in newer[:3]) + (" ..." if len(newer) > 3 else "")
        return (f"stale copy: {self.package} is imported from {self.installed} (an installed copy), but the checkout "
                f"at {root} is newer ({files}); nothing there can be reloaded. Fix: `pip install -e {root}` (or put "
                f"{root} first on sys.path), then restart the kernel")
