"""Full-state, atomic training checkpoints that survive a killed Kaggle session.

* :mod:`~kaggle_kit.checkpoint.identity`: :func:`run_id_for`, the id of the run every checkpoint belongs to.
* :mod:`~kaggle_kit.checkpoint.format`: the files on disk (names, the manifest, verify, copy, credential refusal).
* :mod:`~kaggle_kit.checkpoint.codec`: training state to JSON plus a flat tensor dict, and back.
* :mod:`~kaggle_kit.checkpoint.validate`: a whole checkpoint checked and decoded before anything is applied.
* :mod:`~kaggle_kit.checkpoint.store`: :class:`Checkpointer`, the save side (cadence, signals, retention).
* :mod:`~kaggle_kit.checkpoint.restore`: finding and loading checkpoints, :class:`Restored`, and :func:`load`, the
  one-call loader for inference.
* :mod:`~kaggle_kit.checkpoint.mirror_protocol`: :class:`CheckpointMirror`, all the checkpointer needs of a mirror.

The names are re-exported here lazily, so importing the package pulls in neither torch nor numpy.
"""

from __future__ import annotations

from kaggle_kit.lazy_exports import lazy_exports

_EXPORTS = {
    "Checkpointer": "kaggle_kit.checkpoint.store",
    "Restored": "kaggle_kit.checkpoint.restore",
    "load": "kaggle_kit.checkpoint.restore",
    "CheckpointInfo": "kaggle_kit.checkpoint.format",
    "FORMAT": "kaggle_kit.checkpoint.format",
    "checkpoint_name": "kaggle_kit.checkpoint.format",
    "verify_checkpoint": "kaggle_kit.checkpoint.format",
    "verify_files": "kaggle_kit.checkpoint.format",
    "copy_checkpoint": "kaggle_kit.checkpoint.format",
    "refuse_credentials_in": "kaggle_kit.checkpoint.format",
    "CheckpointMirror": "kaggle_kit.checkpoint.mirror_protocol",
    "run_id_for": "kaggle_kit.checkpoint.identity",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
