"""Applying a module's new source: all of it or none of it.

Two ways, tried in this order:

* Code swap: when only function and method bodies changed (the rest of the module is the same statement for
  statement), the new code objects from one compile of the file replace the old functions' ``__code__``. Module-level
  code does not run again, so module state (loaded data, caches, registries) is untouched and line numbers stay true.
* Re-execution: the new code runs in the module's own namespace; if it raises, the old namespace is put back whole.
  Then old functions and compatible classes take the new code in place (``patch``) and keep their identity;
  other values are new objects that names bound elsewhere must be rebound to.
"""

from __future__ import annotations

import ast
import gc
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any

import kaggle_kit.hotreload.patch as patch

MODULE_META = ("__name__", "__doc__", "__file__", "__package__", "__loader__", "__spec__", "__path__", "__cached__",
               "__builtins__")
# Values that many unrelated names share by identity: rebound only where an import statement confirms the binding.
SHARED_ATOMS = (int, float, complex, bool, str, bytes, type(None), tuple, frozenset)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Rebind:
    """A module-level name whose object was replaced: names bound to ``old`` elsewhere should point at ``new``."""

    name: str
    old: Any
    new: Any
    value_changed: bool


@dataclass
class Outcome:
    """What applying one module's source did."""

    error: str | None = None
    syntax_error: bool = False
    log: patch.PatchLog = field(default_factory=patch.PatchLog)
    rebinds: dict[int, Rebind] = field(default_factory=dict)
    restart: list[str] = field(default_factory=list)


def apply_source(module: types.ModuleType, path: str, old_source: bytes, data: bytes, *,
                 rerun: bool = False) -> Outcome:
    """Bring ``module`` to the source ``data`` (``old_source``: what it was loaded from, or b"" if unknown).

    ``rerun`` re-executes the module even if its own source did not change (a value it imports did).
    """
    outcome = Outcome()
    try:
        new_tree = ast.parse(data, filename=path)
        code = compile(new_tree, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f"{getattr(exc, 'filename', None) or path}:{getattr(exc, 'lineno', None) or '?'}"
        outcome.error, outcome.syntax_error = f"{type(exc).__name__}: {getattr(exc, 'msg', exc)} at {where}", True
        return outcome
    if old_source and not rerun and _swap_code(module, old_source, data, new_tree, code, outcome.log):
        return outcome
    old_ns = dict(module.__dict__)
    module.__dict__.clear()
    module.__dict__.update({k: old_ns[k] for k in MODULE_META if k in old_ns})
    try:
        exec(code, module.__dict__)  # noqa: S102 - re-executing the project's own module is the point
    except BaseException as exc:
        module.__dict__.clear()
        module.__dict__.update(old_ns)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        outcome.error = f"{type(exc).__name__}: {exc} at {_where(exc, path)}"
        return outcome
    _restore_submodules(module.__name__, old_ns, module)
    _patch_namespace(module.__name__, old_ns, module.__dict__, code, outcome)
    return outcome


def _swap_code(module: types.ModuleType, old_source: bytes, new_source: bytes, new_tree: ast.Module,
               code: types.CodeType, log: patch.PatchLog) -> bool:
    try:
        old_tree = ast.parse(old_source)
    except (SyntaxError, ValueError):
        return False
    changed: list[str] = []
    if not _same_but_bodies(old_source.splitlines(), old_tree.body, new_source.splitlines(), new_tree.body, "",
                            changed):
        return False
    if {q.partition(".")[0] for q in changed} & _called_at_import(new_tree.body):
        return False  # module-level results computed by a changed function must be computed again
    new_codes: dict[str, types.CodeType] = {}
    _collect_codes(code, new_codes)
    targets: list[tuple[types.FunctionType, types.CodeType, Any]] = []
    for qualname, new_code in new_codes.items():
        holder = _lookup(module.__dict__, qualname)
        func = _unwrap(holder, qualname, 0)
        if func is None or func.__code__.co_freevars != new_code.co_freevars:
            if qualname in changed:
                return False  # a changed body we cannot reach: re-execute the module instead
            continue
        if func.__code__ != new_code:
            targets.append((func, new_code, holder))
    for func, new_code, holder in targets:
        func.__code__ = new_code
        if callable(getattr(holder, "cache_clear", None)):
            holder.cache_clear()  # an lru_cache must not keep answers computed by the old body
    for qualname in changed:
        log.note("changed", qualname)
    return True


def _segment(lines: list[bytes], node: ast.stmt) -> list[bytes]:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
    return lines[first - 1: node.end_lineno]


def _same_but_bodies(old_lines: list[bytes], old_body: list[ast.stmt], new_lines: list[bytes],
                     new_body: list[ast.stmt], prefix: str, changed: list[str]) -> bool:
    """Whether two statement lists differ only inside function bodies; collects those functions' qualnames."""
    if len(old_body) != len(new_body):
        return False
    names = [n.name for n in new_body if isinstance(n, (*_DEFS, ast.ClassDef))]
    if len(names) != len(set(names)):
        return False  # a property setter or overloads share a name: which object holds which code is unclear
    for a, b in zip(old_body, new_body):
        if type(a) is not type(b):
            return False
        if _segment(old_lines, a) == _segment(new_lines, b):
            continue
        if isinstance(a, _DEFS):
            if (a.name != b.name or _dump(a.args) != _dump(b.args) or _dump(a.returns) != _dump(b.returns)
                    or _dump(a.decorator_list) != _dump(b.decorator_list)):
                return False
            if _dump(a.body) != _dump(b.body):
                changed.append(prefix + a.name)
        elif isinstance(a, ast.ClassDef):
            if (a.name != b.name or _dump(a.bases) != _dump(b.bases) or _dump(a.keywords) != _dump(b.keywords)
                    or _dump(a.decorator_list) != _dump(b.decorator_list)):
                return False
            if not _same_but_bodies(old_lines, a.body, new_lines, b.body, f"{prefix}{a.name}.", changed):
                return False
        elif _dump(a) != _dump(b):
            return False
    return True


def _called_at_import(body: list[ast.stmt]) -> set[str]:
    """Names called (or applied as decorators) by the code that runs when the module executes."""
    called: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, _DEFS):
            stack.extend(node.decorator_list)
            stack.extend(node.args.defaults)
            stack.extend(d for d in node.args.kw_defaults if d is not None)
            called.update(_root_name(d) for d in node.decorator_list)
            continue
        if isinstance(node, ast.ClassDef):
            called.update(_root_name(d) for d in node.decorator_list)
        if isinstance(node, ast.Call):
            called.add(_root_name(node.func))
        stack.extend(ast.iter_child_nodes(node))
    return called


def _root_name(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _dump(node: ast.AST | list[Any] | None) -> str:
    if isinstance(node, list):
        return "|".join(_dump(n) for n in node)
    return "" if node is None else ast.dump(node, include_attributes=False)


def _collect_codes(code: types.CodeType, found: dict[str, types.CodeType]) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            qualname = getattr(const, "co_qualname", const.co_name)
            if "<" in qualname:
                continue  # lambdas, comprehensions and nested functions ride along with their parent's code
            if const.co_flags & 0x2 and qualname not in found:  # CO_NEWLOCALS: a function, not a class body
                found[qualname] = const
            _collect_codes(const, found)


def _lookup(namespace: dict[str, Any], qualname: str) -> Any:
    parts = qualname.split(".")
    obj = namespace.get(parts[0])
    for part in parts[1:]:
        obj = obj.__dict__.get(part) if isinstance(obj, type) else None
    return obj


def _unwrap(obj: Any, qualname: str, depth: int) -> types.FunctionType | None:
    """The function object whose code has ``qualname``, through decorators' wrappers."""
    if obj is None or depth > 6:
        return None
    if isinstance(obj, (classmethod, staticmethod)):
        return _unwrap(obj.__func__, qualname, depth + 1)
    if isinstance(obj, property):
        return _unwrap(obj.fget, qualname, depth + 1)
    if isinstance(obj, types.FunctionType):
        if getattr(obj.__code__, "co_qualname", obj.__code__.co_name) == qualname:
            return obj
        for cell in obj.__closure__ or ():
            try:
                found = _unwrap(cell.cell_contents, qualname, depth + 1)
            except ValueError:
                continue
            if found is not None:
                return found
    wrapped = getattr(obj, "__wrapped__", None)
    return _unwrap(wrapped, qualname, depth + 1) if wrapped is not obj else None


def _restore_submodules(name: str, old_ns: dict[str, Any], module: types.ModuleType) -> None:
    # The import system set these attributes on the package; its __init__ need not import them again.
    for key, value in old_ns.items():
        if key not in module.__dict__ and isinstance(value, types.ModuleType) \
                and sys.modules.get(f"{name}.{key}") is value:
            module.__dict__[key] = value


def _patch_namespace(name: str, old_ns: dict[str, Any], new_ns: dict[str, Any], code: types.CodeType,
                     outcome: Outcome) -> None:
    canon = patch.Canon()
    plan: list[tuple[str, str]] = []
    values: list[str] = []
    log = outcome.log
    for key, new in new_ns.items():
        old = old_ns.get(key, patch.MISSING)
        if key in MODULE_META or old is new:
            continue
        if old is patch.MISSING:
            if getattr(new, "__module__", name) == name and not isinstance(new, types.ModuleType):
                log.note("added", key)
            continue
        own = getattr(old, "__module__", None) == name == getattr(new, "__module__", None) \
            and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
        if own and isinstance(old, types.FunctionType) and isinstance(new, types.FunctionType) \
                and old.__code__.co_freevars == new.__code__.co_freevars:
            canon.add(new, old)
            plan.append((key, "function"))
        elif own and isinstance(old, type) and isinstance(new, type):
            reasons = patch.restart_reasons(old, new)
            if reasons:
                line = _class_line(code, new.__qualname__)
                outcome.restart.extend(f"{r}, in {new_ns.get('__file__')}:{line}" for r in reasons)
                values.append(key)
            else:
                patch.collect_class_pairs(old, new, canon)
                plan.append((key, "class"))
        else:
            values.append(key)
    # Registries and tuples built by the module hold the new objects: point them at the old ones kept in place first,
    # so that comparing old and new values below sees them equal.
    if canon:
        for key, value in list(new_ns.items()):
            if isinstance(value, (list, dict, tuple, set)) and len(value) <= 1000 and key not in MODULE_META:
                new_ns[key] = patch.fix_containers(value, canon)
    for key, kind in plan:
        old, new = old_ns[key], new_ns[key]
        if kind == "function":
            if not patch.same_function(old, new):
                log.note("changed", key)
            patch.patch_function(old, new, canon)
        else:
            patch.patch_class(old, new, canon, log)
        new_ns[key] = old
    for key in values:
        old, new = old_ns[key], new_ns[key]
        equal = type(old) is type(new) and patch.values_equal(old, new)
        if equal and isinstance(old, SHARED_ATOMS):
            new_ns[key] = old  # an equal constant keeps its identity, so nothing bound to it needs rebinding
            continue
        if not equal and not key.startswith("__"):
            log.note("changed", key)
        outcome.rebinds[id(old)] = Rebind(key, old, new, not equal)
    for key, old in old_ns.items():
        if key not in new_ns and getattr(old, "__module__", name) == name and not isinstance(old, types.ModuleType):
            log.note("removed", key)


def still_held(rebind: Rebind, namespaces: list[dict[str, Any]], history: list[Any]) -> list[str]:
    """Holders of a replaced module-level object other than namespaces and IPython's output history.

    Called after rebinding, when the only expected references are the caller's bookkeeping; a cheap reference count
    rules out the common case before the garbage collector is asked who the holders are.
    """
    old = rebind.old
    if isinstance(old, SHARED_ATOMS) or isinstance(old, (type, types.FunctionType, types.ModuleType)):
        return []
    # rebind.old, the getrefcount argument, the module's old namespace copy: anything beyond is a holder
    if sys.getrefcount(old) <= 3:
        return []
    ignored = {id(ns) for ns in namespaces} | {id(h) for h in history} | {id(rebind.__dict__)}
    holders: list[str] = []
    for ref in gc.get_referrers(old):
        if id(ref) in ignored or isinstance(ref, (types.FrameType, Rebind)):
            continue
        holders.append(_describe(ref))
    return holders


def _describe(ref: Any) -> str:
    if isinstance(ref, dict):
        for owner in gc.get_referrers(ref):
            if getattr(owner, "__dict__", None) is ref:
                return f"an attribute of a {type(owner).__name__} object"
        return "a dict"
    if isinstance(ref, types.CellType):
        return "a closure"
    if isinstance(ref, (list, tuple, set, frozenset)):
        return f"a {type(ref).__name__}"
    return f"a {type(ref).__name__} object"


def _where(exc: BaseException, path: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    own = [f for f in frames if f.filename == path]
    frame = (own or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame is not None else path


def _class_line(code: types.CodeType, qualname: str) -> int | str:
    stack = [code]
    while stack:
        current = stack.pop()
        if getattr(current, "co_qualname", current.co_name) == qualname and current is not code:
            return current.co_firstlineno
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return "?"
