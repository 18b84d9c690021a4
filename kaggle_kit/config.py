"""Typed configuration: YAML (or a dict) checked and converted against a dataclass schema.

YAML 1.1 reads ``1e-4`` as a string and people quote numbers; a schema that says ``float`` gets a float anyway, and a
value that cannot be one is an error naming the file, the key path and the expected type. Unknown keys are errors
with the closest known key suggested; missing keys take the dataclass defaults. Dotted overrides (``opt.lr=3e-4``)
apply on top, typed the same way. Nested dataclasses are sections.

A schema states the range or the choices of a field with :func:`setting` (``lr: float = setting(3e-4, gt=0)``);
values outside are refused when loading, and :func:`check_constraints` checks a config built in code. Files are read
as UTF-8 (or UTF-16/32 with a byte-order mark); a duplicate key, nesting deeper than :data:`MAX_CONFIG_DEPTH` or a file
over :data:`MAX_CONFIG_BYTES` is refused instead of being resolved silently or crashing the parser.
"""

from __future__ import annotations

import dataclasses
import codecs
import difflib
import enum
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union

import yaml

from kaggle_kit.errors import ConfigError, MalformedFileError
from kaggle_kit.fileio import read_limited

__all__ = ["load_config", "config_from_dict", "apply_overrides", "config_to_dict", "config_hash", "setting",
           "Constraint", "check_constraints", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH"]

T = TypeVar("T")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
MAX_CONFIG_BYTES = 4 << 20
MAX_CONFIG_DEPTH = 32
CONSTRAINT_KEY = "kaggle_kit.constraint"
_UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig"),
)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """The values a field accepts: bounds (``ge``/``gt``/``le``/``lt``, finite numbers only) and/or ``choices``.

    None always passes: whether a field may be None is its type's business.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """What a value must be, e.g. ``a finite number >= 0 and < 1``."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        bounds = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if bound is not None]
        return " ".join(["a finite number", " and ".join(bounds)]).strip()

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def setting(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field with a default and the values it accepts, checked when a config is loaded.

    Example: ``val_fraction: float = setting(0.2, gt=0, lt=1)``.
    """
    constraint = Constraint(ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata={CONSTRAINT_KEY: constraint})


def _constraint_problem(field: dataclasses.Field, value: Any) -> str | None:
    constraint = field.metadata.get(CONSTRAINT_KEY)
    if constraint is None or constraint.allows(value):
        return None
    return f"= {value!r} is invalid: it must be {constraint.describe()}"


def check_constraints(config: Any, *, prefix: str = "", source: str | None = None) -> None:
    """Checks every field declared with :func:`setting`, in nested sections too.

    Args:
        config: A dataclass instance.
        prefix: The section's key path, for the message (e.g. ``train``).
        source: Where the config came from, for the message; None for a config built in code.

    Raises:
        ConfigError: naming the first field out of range and what it must be.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        path = f"{prefix}.{field.name}" if prefix else field.name
        problem = _constraint_problem(field, value)
        if problem is not None:
            raise ConfigError(f"{source + ': ' if source else ''}{path} {problem}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_constraints(value, prefix=path, source=source)


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys and nesting deeper than :data:`MAX_CONFIG_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_CONFIG_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nests deeper than {MAX_CONFIG_DEPTH} levels; a config is never that deep",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges on purpose; the keys written beside it override it
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor refuses it with its own message
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first}); YAML would keep only the last one "
                    "silently: merge the two into one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _decode_config(data: bytes, file: Path) -> str:
    for bom, encoding in _UNICODE_BOMS:
        if data.startswith(bom):
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not {encoding.upper().replace('-SIG', '')} text ({exc.reason} at byte "
                          f"{exc.start}): save it as UTF-8") from None


class _Bad(Exception):
    """A value that does not fit its declared type; turned into a ConfigError with the location."""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, source)
            except _Bad as exc:
                errors.append(str(exc))
        raise _Bad(f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise _Bad(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _Bad(f"expected a section (mapping) for {tp.__name__}, got {value!r}")
        return _build(value, tp, where, source)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
            raise _Bad(f"expected a list, got {value!r}")
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise _Bad(f"expected {len(args)} items, got {len(items)}")
            return tuple(_coerce(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(items, args)))
        item_type = args[0] if args else Any
        out = [_coerce(v, item_type, f"{where}[{i}]", source) for i, v in enumerate(items)]
        container = origin or tp
        return container(out) if container is not list else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Bad(f"expected a mapping, got {value!r}")
        key_type, val_type = args if args else (Any, Any)
        return {_coerce(k, key_type, where, source): _coerce(v, val_type, f"{where}.{k}", source)
                for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Bad(f"expected bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise _Bad(f"expected int, got the boolean {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                return int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    number = math.nan
                if math.isfinite(number) and number.is_integer():
                    return int(number)
        raise _Bad(f"expected int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise _Bad(f"expected float, got the boolean {value!r}")
        number: float
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip().replace("_", ""))
            except ValueError:
                raise _Bad(f"expected float, got {value!r}") from None
        else:
            raise _Bad(f"expected float, got {value!r}")
        if math.isnan(number):
            raise _Bad(f"expected a number, got NaN ({value!r})")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Bad(f"expected a string, got {type(value).__name__} {value!r} (quote it in YAML)")
    if tp is Path or tp is os.PathLike:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise _Bad(f"expected a path, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if value == member.value or value == member.name or value == member:
                return member
        raise _Bad(f"expected one of {', '.join(m.name for m in tp)}, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Bad(f"expected {tp.__name__}, got {value!r}")
    return value


def _hints(schema: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(schema)
    except Exception as exc:  # an annotation naming something that is not importable is a schema bug
        raise ConfigError(f"cannot resolve the type annotations of {schema.__name__}: {exc}") from exc


def _build(data: dict, schema: type, where: str, source: str) -> Any:
    hints = _hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {(where + '.' if where else '') + close[0]!r}?" if close else ""
            known = ", ".join(fields)
            raise ConfigError(f"{source}: unknown key {path!r}{hint} (known keys here: {known})")
        try:
            kwargs[key] = _coerce(value, hints[key], path, source)
        except _Bad as exc:
            raise ConfigError(f"{source}: {path}: {exc}") from None
        problem = _constraint_problem(fields[key], kwargs[key])
        if problem is not None:
            raise ConfigError(f"{source}: {path} {problem}")
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        where_text = f" in section {where!r}" if where else ""
        raise ConfigError(f"{source}: required key(s) missing{where_text}: {', '.join(missing)}")
    try:
        return schema(**kwargs)
    except (TypeError, ValueError) as exc:  # a __post_init__ check of the schema itself
        raise ConfigError(f"{source}: {where or schema.__name__}: {exc}") from None


def config_from_dict(data: dict | None, schema: type[T], *, source: str = "<config>",
                     overrides: Iterable[str] = ()) -> T:
    """Build ``schema`` from a plain mapping, then apply dotted overrides."""
    if not dataclasses.is_dataclass(schema):
        raise ConfigError(f"schema must be a dataclass type, got {schema!r}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    merged = _merge_overrides(dict(data), overrides, schema)
    return _build(merged, schema, "", source)


def load_config(path: str | os.PathLike[str], schema: type[T], overrides: Iterable[str] = ()) -> T:
    """Load a YAML file into the dataclass ``schema``, with dotted ``overrides`` such as ``"opt.lr=3e-4"``.

    Raises:
        ConfigError: a missing, unreadable, oversize or malformed file (not UTF-8, a duplicate key, nested too
            deep), an unknown key, a value that does not fit its type or is out of its field's range.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found: pass the path of a YAML file")
    try:
        raw = read_limited(file, max_bytes=MAX_CONFIG_BYTES, what="config file")
    except MalformedFileError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = _parse_yaml(_decode_config(raw, file))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return config_from_dict(data, schema, source=str(file), overrides=overrides)


def _merge_overrides(data: dict, overrides: Iterable[str], schema: type) -> dict:
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} must look like key.path=value, e.g. opt.lr=3e-4")
        key_path, raw = override.split("=", 1)
        keys = [k.strip() for k in key_path.strip().split(".")]
        if not all(keys):
            raise ConfigError(f"override {override!r} has an empty key")
        try:
            value = _parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        section, section_schema = data, schema
        for depth, key in enumerate(keys[:-1]):
            fields = {f.name: f for f in dataclasses.fields(section_schema)}
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
                hint = f"; did you mean {'.'.join(keys[:depth] + close[:1])!r}?" if close else ""
                raise ConfigError(f"override {override!r}: unknown key {'.'.join(keys[:depth + 1])!r}{hint}")
            sub_schema = _hints(section_schema)[key]
            if not dataclasses.is_dataclass(sub_schema):
                raise ConfigError(f"override {override!r}: {'.'.join(keys[:depth + 1])!r} is not a section")
            existing = section.get(key)
            if existing is None:
                existing = {}
            elif dataclasses.is_dataclass(existing):
                existing = config_to_dict(existing)
            elif not isinstance(existing, dict):
                raise ConfigError(f"override {override!r}: {'.'.join(keys[:depth + 1])!r} is not a section")
            section[key] = dict(existing)
            section, section_schema = section[key], sub_schema
        section[keys[-1]] = value
    return data


def apply_overrides(config: T, overrides: Iterable[str]) -> T:
    """A copy of ``config`` with dotted overrides applied, typed as its schema says."""
    return config_from_dict(config_to_dict(config), type(config), source="<overrides>", overrides=overrides)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def config_to_dict(config: Any) -> dict:
    """A JSON-able mapping of a config (dataclass or mapping)."""
    plain = _plain(config)
    if not isinstance(plain, dict):
        raise ConfigError(f"expected a dataclass or a mapping, got {type(config).__name__}")
    return plain


def config_hash(config: Any) -> str:
    """A stable short hash of a config's content (key order and Path vs str do not matter)."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
