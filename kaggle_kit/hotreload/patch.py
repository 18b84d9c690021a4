"""In-place patching for the hot reloader: old objects take the new code, or the change is reported.

Functions keep their identity and take the new code, defaults and closure contents (IPython's ``update_function``
does the plain attributes; closures are patched cell by cell here, which it cannot do). Classes keep their identity
too, so live instances and ``isinstance`` keep working without a garbage-collector walk, unless their shape changed
(bases, metaclass, ``__slots__``, Enum members, dataclass or namedtuple fields): then the change is reported as
needing a restart and the new class is used from then on.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Any

from IPython.extensions.autoreload import update_function

# Stands for a name a namespace does not hold (None may be a real value).
MISSING = object()

# Class attributes that belong to the class object itself, never copied from the new class.
_CLASS_OWN = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "_abc_impl"})
_LAYOUT_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


class Canon:
    """New objects kept as their old selves (``new -> old``), holding both so no id is reused while patching."""

    def __init__(self) -> None:
        self._pairs: dict[int, tuple[Any, Any]] = {}

    def add(self, new: Any, old: Any) -> None:
        self._pairs[id(new)] = (new, old)

    def has(self, obj: Any) -> bool:
        pair = self._pairs.get(id(obj))
        return pair is not None and pair[0] is obj

    def get(self, obj: Any) -> Any:
        """The old object standing for ``obj``, or ``obj`` itself."""
        pair = self._pairs.get(id(obj))
        return pair[1] if pair is not None and pair[0] is obj else obj

    def __bool__(self) -> bool:
        return bool(self._pairs)


class PatchLog:
    """What one module's patching did, for the one-line report."""

    def __init__(self) -> None:
        self.changed: list[str] = []
        self.added: list[str] = []
        self.removed: list[str] = []

    def note(self, kind: str, name: str) -> None:
        bucket = {"changed": self.changed, "added": self.added, "removed": self.removed}[kind]
        if name not in bucket:
            bucket.append(name)


def qualified(obj: Any) -> str:
    """``module.qualname`` of a class or function, to compare objects across two executions of a module."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether two code objects do the same thing, ignoring line numbers (a line added above moves them)."""
    if (a.co_code != b.co_code or a.co_names != b.co_names or a.co_varnames != b.co_varnames
            or a.co_freevars != b.co_freevars or len(a.co_consts) != len(b.co_consts)):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not same_code(x, y):
                return False
        elif type(x) is not type(y) or not values_equal(x, y):
            return False
    return True


def values_equal(a: Any, b: Any) -> bool:
    """``a == b``, False where the comparison raises or is not a plain truth value."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and odd __eq__ raise; treat as different
        return False


def same_function(old: types.FunctionType, new: types.FunctionType) -> bool:
    """Whether a function's code and defaults are unchanged."""
    return (same_code(old.__code__, new.__code__) and values_equal(old.__defaults__, new.__defaults__)
            and values_equal(old.__kwdefaults__, new.__kwdefaults__))


def patch_function(old: types.FunctionType, new: types.FunctionType, canon: Canon,
                   _seen: set[int] | None = None) -> bool:
    """Give ``old`` the code, defaults and closure contents of ``new``; False if it cannot be done in place.

    ``canon`` maps new objects to the old ones kept in their place (patched classes and functions), so a closure
    cell holding a new class (``super()``'s ``__class__``) ends up holding the old one that instances have.
    """
    seen = _seen if _seen is not None else set()
    if id(old) in seen:
        return True
    seen.add(id(old))
    if old.__code__.co_freevars != new.__code__.co_freevars:
        return False
    update_function(old, new)
    for old_cell, new_cell in zip(old.__closure__ or (), new.__closure__ or ()):
        try:
            value = new_cell.cell_contents
        except ValueError:
            continue
        value = canon.get(value)
        try:
            current = old_cell.cell_contents
        except ValueError:
            current = MISSING
        if current is value:
            continue
        # A decorator's wrapper closes over the wrapped function: patch that one too, keeping its identity.
        if (isinstance(current, types.FunctionType) and isinstance(value, types.FunctionType)
                and qualified(current) == qualified(value) and patch_function(current, value, canon, seen)):
            continue
        old_cell.cell_contents = value
    return True


def adopt(value: Any, canon: Canon) -> Any:
    """Point the closure cells of a new function (or method wrapper) at the old objects kept in place."""
    for func in _functions_in(value):
        for cell in func.__closure__ or ():
            try:
                held = cell.cell_contents
            except ValueError:
                continue
            if canon.has(held):
                cell.cell_contents = canon.get(held)
    return value


def _functions_in(value: Any) -> list[types.FunctionType]:
    if isinstance(value, types.FunctionType):
        return [value]
    if isinstance(value, (classmethod, staticmethod)):
        return _functions_in(value.__func__)
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType)]
    return []


def restart_reasons(old: type, new: type) -> list[str]:
    """Why a class cannot be patched in place: its instances' layout or identity-bound parts changed."""
    name = new.__qualname__
    reasons: list[str] = []
    if qualified(type(old)) != qualified(type(new)):
        reasons.append(f"metaclass of {name} changed ({type(old).__name__} -> {type(new).__name__})")
    old_bases = [qualified(b) for b in old.__bases__]
    new_bases = [qualified(b) for b in new.__bases__]
    if old_bases != new_bases:
        reasons.append(f"bases of {name} changed ({_names(old.__bases__)} -> {_names(new.__bases__)})")
    if not values_equal(old.__dict__.get("__slots__"), new.__dict__.get("__slots__")):
        reasons.append(f"__slots__ of {name} changed")
    elif old.__basicsize__ != new.__basicsize__:
        reasons.append(f"instance layout of {name} changed")
    if isinstance(old, enum.EnumMeta) and isinstance(new, enum.EnumMeta):
        old_members = {k: repr(m.value) for k, m in old.__members__.items()}
        new_members = {k: repr(m.value) for k, m in new.__members__.items()}
        if old_members != new_members:
            reasons.append(f"members of Enum {name} changed ({_diff(old_members, new_members)})")
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new):
        old_fields = {f.name: _type_name(f.type) for f in dataclasses.fields(old)}
        new_fields = {f.name: _type_name(f.type) for f in dataclasses.fields(new)}
        if list(old_fields.items()) != list(new_fields.items()):
            reasons.append(f"fields of dataclass {name} changed ({_diff(old_fields, new_fields)})")
        if repr(old.__dict__.get("__dataclass_params__")) != repr(new.__dict__.get("__dataclass_params__")):
            reasons.append(f"dataclass options of {name} changed (frozen, order, eq, ...)")
    elif dataclasses.is_dataclass(old) != dataclasses.is_dataclass(new):
        reasons.append(f"{name} became {'a' if dataclasses.is_dataclass(new) else 'no'} dataclass")
    old_nt, new_nt = old.__dict__.get("_fields"), new.__dict__.get("_fields")
    if isinstance(old_nt, tuple) and isinstance(new_nt, tuple) and old_nt != new_nt:
        reasons.append(f"fields of namedtuple {name} changed ({', '.join(old_nt)} -> {', '.join(new_nt)})")
    for key, new_value in new.__dict__.items():
        old_value = old.__dict__.get(key)
        if isinstance(old_value, type) and isinstance(new_value, type) and old_value.__qualname__ == new_value.__qualname__:
            reasons.extend(restart_reasons(old_value, new_value))
    return reasons


def _names(classes: tuple[type, ...]) -> str:
    return ", ".join(c.__name__ for c in classes)


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))


def _diff(old: dict[str, str], new: dict[str, str]) -> str:
    parts = [f"added {k}" for k in new if k not in old]
    parts += [f"removed {k}" for k in old if k not in new]
    parts += [f"{k}: {old[k]} -> {new[k]}" for k in new if k in old and old[k] != new[k]]
    return ", ".join(parts) or "order changed"


def collect_class_pairs(old: type, new: type, canon: Canon) -> None:
    """Record ``new -> old`` for a compatible class and its nested classes, before any patching starts."""
    canon.add(new, old)
    for key, new_value in new.__dict__.items():
        old_value = old.__dict__.get(key)
        if (isinstance(old_value, type) and isinstance(new_value, type)
                and old_value.__qualname__ == new_value.__qualname__ and not restart_reasons(old_value, new_value)):
            collect_class_pairs(old_value, new_value, canon)


def patch_class(old: type, new: type, canon: Canon, log: PatchLog) -> None:
    """Make ``old`` behave as ``new``: methods patched in place, new attributes added, removed ones dropped."""
    members = set(old.__members__) if isinstance(old, enum.EnumMeta) else set()
    prefix = old.__qualname__
    for key, new_value in new.__dict__.items():
        if key in _CLASS_OWN or key in members or isinstance(new_value, _LAYOUT_DESCRIPTORS):
            continue
        if members and _sunder(key):
            continue  # the Enum's member tables must keep pointing at the members instances already hold
        old_value = old.__dict__.get(key, MISSING)
        if old_value is MISSING:
            _set(old, key, adopt(canon.get(new_value), canon))
            log.note("added", f"{prefix}.{key}")
            continue
        if old_value is new_value:
            continue
        changed = _patch_member(old_value, new_value, canon, log)
        if changed is None:
            if not (isinstance(new_value, type) or _sunder(key) or key.startswith("__")
                    or (type(old_value) is type(new_value) and values_equal(old_value, new_value))):
                log.note("changed", f"{prefix}.{key}")
            _set(old, key, adopt(canon.get(new_value), canon))
        elif changed:
            log.note("changed", f"{prefix}.{key}")
    for key in [k for k in old.__dict__ if k not in new.__dict__]:
        if key in _CLASS_OWN or key in members or isinstance(old.__dict__[key], _LAYOUT_DESCRIPTORS):
            continue
        try:
            delattr(old, key)
            log.note("removed", f"{prefix}.{key}")
        except (AttributeError, TypeError):
            pass


def _sunder(key: str) -> bool:
    return len(key) > 2 and key[0] == key[-1] == "_" and key[1] != "_"


def _set(cls: type, key: str, value: Any) -> None:
    try:
        setattr(cls, key, value)
    except (AttributeError, TypeError):
        pass  # read-only class attributes (``__doc__`` of some builtins' subclasses) stay as they are


def _patch_member(old: Any, new: Any, canon: Canon, log: PatchLog) -> bool | None:
    """Patch one class attribute in place; True/False = patched (changed or not), None = replace it instead."""
    if isinstance(old, type) and isinstance(new, type):
        if canon.get(new) is old:
            patch_class(old, new, canon, log)
            return False
        return None
    if isinstance(old, types.FunctionType) and isinstance(new, types.FunctionType):
        unchanged = same_function(old, new)
        return (not unchanged) if patch_function(old, new, canon) else None
    if isinstance(old, (classmethod, staticmethod)) and type(old) is type(new):
        return _patch_member(old.__func__, new.__func__, canon, log)
    if isinstance(old, property) and isinstance(new, property):
        return _patch_property(old, new, canon)
    return None


def _patch_property(old: property, new: property, canon: Canon) -> bool | None:
    pairs = [(getattr(old, a), getattr(new, a)) for a in ("fget", "fset", "fdel")]
    if any((o is None) != (n is None) for o, n in pairs):
        return None  # a setter or deleter was added or removed: the new property object replaces the old one
    changed = False
    for o, n in pairs:
        if isinstance(o, types.FunctionType) and isinstance(n, types.FunctionType):
            unchanged = same_function(o, n)
            if not patch_function(o, n, canon):
                return None
            changed = changed or not unchanged
        elif o is not n:
            return None
    return changed


def fix_containers(value: Any, canon: Canon) -> Any:
    """Swap new objects kept as their old selves inside a module-level list, dict, set or tuple (registries)."""
    if isinstance(value, list):
        if any(canon.has(v) for v in value):
            value[:] = [canon.get(v) for v in value]
    elif isinstance(value, dict):
        for key, item in list(value.items()):
            if canon.has(item):
                value[key] = canon.get(item)
    elif type(value) is tuple and any(canon.has(v) for v in value):
        return tuple(canon.get(v) for v in value)
    elif isinstance(value, set) and any(canon.has(v) for v in value):
        replaced = {canon.get(v) for v in value}
        value.clear()
        value.update(replaced)
    return value

