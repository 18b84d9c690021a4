"""The offline Kaggle: a loopback stand-in for Kaggle's API and a sandbox that runs notebooks as Kaggle does.

The public names are re-exported lazily, so ``import kaggle_kit.sim`` pulls in neither the HTTP server nor Jupyter.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimServer": "kaggle_kit.sim.server",
    "SimSettings": "kaggle_kit.sim.settings",
    "FAULT_KINDS": "kaggle_kit.sim.faults",
    "Sandbox": "kaggle_kit.sim.sandbox",
    "SessionSpec": "kaggle_kit.sim.sandbox",
    "SessionResult": "kaggle_kit.sim.sandbox",
    "InputMount": "kaggle_kit.sim.sandbox",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kaggle_kit.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
