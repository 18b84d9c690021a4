"""Mirror checkpoints to a private, versioned Kaggle Dataset in the background, and fetch them back.

* :mod:`~kaggle_kit.mirror.dataset_mirror`: :class:`DatasetMirror`, the training side (a ``CheckpointMirror``).
* :mod:`~kaggle_kit.mirror.worker`: the uploader process (``python -m kaggle_kit.mirror.worker``).
* :mod:`~kaggle_kit.mirror.client`: the Kaggle API calls and their retry policy.
* :mod:`~kaggle_kit.mirror.ledger`: ``latest.json`` and ``ledger.json``, and :class:`Confirmed`.

The mirror depends on the checkpoint format (:mod:`kaggle_kit.checkpoint.format`), never the reverse. The names are
re-exported here lazily, so importing the package pulls in neither torch nor the Kaggle client.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_EXPORTS = {
    "DatasetMirror": "kaggle_kit.mirror.dataset_mirror",
    "Confirmed": "kaggle_kit.mirror.ledger",
    "POINTER_FILE": "kaggle_kit.mirror.ledger",
    "LEDGER_FILE": "kaggle_kit.mirror.ledger",
}
# Names that lived in kaggle_kit.mirror before it became a package, and where they went.
_MOVED = {"loud_warning": "kaggle_kit.notify"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"kaggle_kit.mirror.{name} moved to {_MOVED[name]}.{name}; import it from there",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kaggle_kit.mirror' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
