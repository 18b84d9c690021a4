"""The offline Kaggle: a loopback stand-in for Kaggle's API and a sandbox that runs notebooks as Kaggle does.

The public names are re-exported lazily, so ``import kaggle_kit.sim`` pulls in neither the HTTP server nor Jupyter.
"""

from __future__ import annotations

from kaggle_kit.lazy_exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
