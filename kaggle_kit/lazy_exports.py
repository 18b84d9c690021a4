"""Lazy re-exports for package ``__init__`` modules: a name is imported when first used, never at import.

That keeps ``import kaggle_kit`` (and ``kaggle_kit.training``, ``kaggle_kit.checkpoint``, ...) free of torch and the
Kaggle client until a name that needs them is touched. Names that moved to another module stay importable from their
old place for one release, with a ``DeprecationWarning`` naming the new one.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], *, moved: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package that re-exports names lazily.

    Args:
        package: the package's ``__name__``.
        exports: public name -> ``"module"`` (same name there), ``"module:attribute"`` (another name there) or
            ``"module:"`` (the module itself).
        moved: old name -> the module it moved to; reading it warns, then returns the name from there.

    Usage, in a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    """
    old_names = dict(moved or {})

    def __getattr__(name: str) -> Any:
        if name in old_names:
            home = old_names[name]
            warnings.warn(f"{package}.{name} moved to {home}.{name}: import it from there; the old path goes in the "
                          "next release", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(home), name)
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, colon, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        value = module if colon and not attribute else getattr(module, attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
