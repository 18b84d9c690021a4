"""Mirror checkpoints to a private, versioned Kaggle Dataset in the background, and fetch them back.

* :mod:`~kaggle_kit.mirror.dataset_mirror`: :class:`DatasetMirror`, the training side (a ``CheckpointMirror``).
* :mod:`~kaggle_kit.mirror.worker`: the uploader process (``python -m kaggle_kit.mirror.worker``).
* :mod:`~kaggle_kit.mirror.client`: the Kaggle API calls and their retry policy.
* :mod:`~kaggle_kit.mirror.ledger`: ``latest.json`` and ``ledger.json``, and :class:`Confirmed`.

The mirror depends on the checkpoint format (:mod:`kaggle_kit.checkpoint.format`), never the reverse. The names are
re-exported here lazily, so importing the package pulls in neither torch nor the Kaggle client.
"""

from __future__ import annotations

from kaggle_kit.lazy_exports import lazy_exports

_EXPORTS = {
    "DatasetMirror": "kaggle_kit.mirror.dataset_mirror",
    "Confirmed": "kaggle_kit.mirror.ledger",
    "POINTER_FILE": "kaggle_kit.mirror.ledger",
    "LEDGER_FILE": "kaggle_kit.mirror.ledger",
}
# Names that lived in kaggle_kit.mirror before it became a package, and where they went.
_MOVED = {"loud_warning": "kaggle_kit.notify"}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, moved=_MOVED)
