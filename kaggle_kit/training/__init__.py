"""The generic training loop, resumable across Kaggle sessions (see :mod:`kaggle_kit.training.loop`).

Modules: ``config`` (:class:`TrainConfig`, :class:`TrainResult`, the step counts), ``loop`` (:func:`train`), ``step``
(one optimizer step), ``data_order`` (the resumable data order), ``seeding``, ``optim`` (default optimizer and
scheduler), ``hyperparameters`` (the config's settings over a checkpoint's on resume), ``objectives`` (loss and score
helpers), ``history`` (history, progress and the figure), ``progress`` (the progress display), ``distributed`` (DDP
ranks and device plans).

Names are re-exported lazily: ``from kaggle_kit.training import TrainConfig`` does not import torch.
"""

from __future__ import annotations

from kaggle_kit.lazy_exports import lazy_exports

_EXPORTS = {
    "TrainConfig": "kaggle_kit.training.config",
    "TrainResult": "kaggle_kit.training.config",
    "micro_batches_per_epoch": "kaggle_kit.training.config",
    "steps_per_epoch": "kaggle_kit.training.config",
    "total_steps": "kaggle_kit.training.config",
    "train": "kaggle_kit.training.loop",
    "seed_everything": "kaggle_kit.training.seeding",
    "plot_history": "kaggle_kit.training.history",
    "HISTORY_FILE": "kaggle_kit.training.history",
    "PROGRESS_FILE": "kaggle_kit.training.history",
    "FIGURE_FILE": "kaggle_kit.training.history",
    "make_optimizer": "kaggle_kit.training.optim",
    "make_scheduler": "kaggle_kit.training.optim",
    "supervised_loss": "kaggle_kit.training.objectives",
    "ScoreFunction": "kaggle_kit.training.objectives",
    "epoch_order": "kaggle_kit.training.data_order",
    "train_on_ranks": "kaggle_kit.training.distributed",
    "train_with_plan": "kaggle_kit.training.distributed",
    "checkpointer_for_rank": "kaggle_kit.training.distributed",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
