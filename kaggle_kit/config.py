"""Typed configuration: YAML (or a dict) checked and converted against a dataclass schema.

YAML 1.1 reads ``1e-4`` as a string and people quote numbers; a schema that says ``float`` gets a float anyway, and a
value that cannot be one is an error naming the file, the key path and the expected type. Unknown keys are errors
with the closest known key suggested; missing keys take the dataclass defaults. Dotted overrides (``opt.lr=3e-4``)
apply on top, typed the same way. Nested dataclasses are sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, Union

import yaml

from kaggle_kit.errors import ConfigError

__all__ = ["load_config", "config_from_dict", "apply_overrides", "config_to_dict", "config_hash"]

T = TypeVar("T")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


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
        ConfigError: a missing or malformed file, an unknown key, a value that does not fit its type.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found: pass the path of a YAML file")
    try:
        data = yaml.safe_load(file.read_text())
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
            value = yaml.safe_load(raw) if raw.strip() else ""
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
