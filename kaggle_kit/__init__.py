"""kaggle-kit: make long training runs survive Kaggle.

The public API is re-exported here lazily, so ``import kaggle_kit`` stays cheap and pulls in neither torch nor the
Kaggle client until a name that needs them is used.
"""

from __future__ import annotations

from kaggle_kit.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "env": "kaggle_kit.env:",
    "find_root": "kaggle_kit.root",
    "kit_origin": "kaggle_kit.root",
    "ProjectRoot": "kaggle_kit.root",
    "load_config": "kaggle_kit.config",
    "config_from_dict": "kaggle_kit.config",
    "config_hash": "kaggle_kit.config",
    "find_input": "kaggle_kit.env",
    "find_credentials": "kaggle_kit.kaggle_api",
    "make_api": "kaggle_kit.kaggle_api",
    "reload": "kaggle_kit.hotreload",
    "enable_autoreload": "kaggle_kit.hotreload",
    "Checkpointer": "kaggle_kit.checkpoint",
    "load_checkpoint": "kaggle_kit.checkpoint:load",
    "run_id_for": "kaggle_kit.checkpoint",
    "DatasetMirror": "kaggle_kit.mirror",
    "SessionClock": "kaggle_kit.guard.clock",
    "detect_accelerator": "kaggle_kit.guard.accelerator",
    "plan_devices": "kaggle_kit.guard.accelerator",
    "run_preflight": "kaggle_kit.guard.preflight",
    "plan_budget": "kaggle_kit.guard.budget",
    "BudgetPlan": "kaggle_kit.guard.budget",
    "TrainConfig": "kaggle_kit.training.config",
    "TrainResult": "kaggle_kit.training.config",
    "steps_per_epoch": "kaggle_kit.training.config",
    "total_steps": "kaggle_kit.training.config",
    "train": "kaggle_kit.training.loop",
    "train_with_plan": "kaggle_kit.training.distributed",
    "checkpointer_for_rank": "kaggle_kit.training.distributed",
    "seed_everything": "kaggle_kit.training.seeding",
    "supervised_loss": "kaggle_kit.training.objectives",
    "ScoreFunction": "kaggle_kit.training.objectives",
    "plot_history": "kaggle_kit.training.history",
    "FIGURE_FILE": "kaggle_kit.training.history",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
