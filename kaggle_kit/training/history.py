"""What a run leaves in its output folder: ``history.json`` (one record per epoch), ``progress.json`` (where the run
is, and what a kill now would lose) and the loss and score figure."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kaggle_kit.fileio import atomic_write_json
from kaggle_kit.training.config import TrainConfig
from kaggle_kit.training.progress import in_notebook

__all__ = ["HISTORY_FILE", "PROGRESS_FILE", "FIGURE_FILE", "RunFiles", "plot_history"]

HISTORY_FILE = "history.json"
PROGRESS_FILE = "progress.json"
FIGURE_FILE = "training_curves.png"


class RunFiles:
    """Writes a run's history, progress and figure into ``directory`` (created); each file is replaced atomically."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_progress(self, progress: Mapping[str, Any]) -> None:
        """``progress.json``: read by the rehearsal and by people."""
        atomic_write_json(self.directory / PROGRESS_FILE, dict(progress), default=float, allow_nan=True)

    def write_history(self, history: list[dict[str, Any]], best: dict[str, Any] | None, config: TrainConfig) -> None:
        """``history.json``: the epoch records, the best one, the monitored metric and the config."""
        atomic_write_json(self.directory / HISTORY_FILE, default=float, allow_nan=True, data={
            "history": history, "best": best, "monitor": config.monitor, "config": asdict(config)})

    def plot(self, history: list[Mapping[str, Any]]) -> Path:
        """The figure of :func:`plot_history`, saved as ``FIGURE_FILE``."""
        return plot_history(history, self.directory / FIGURE_FILE)


def plot_history(
    history: list[Mapping[str, Any]], path: str | os.PathLike[str], *, show: bool | None = None
) -> Path:
    """Draws loss and score curves per epoch, saves them as a PNG, and shows them inline in a notebook.

    The figure is drawn on the Agg canvas directly, so no pyplot backend is selected and nothing opens a window.

    Args:
        history: Epoch records as :func:`kaggle_kit.training.train` writes them.
        path: Where to save the PNG.
        show: Display it inline; default: when running in a notebook.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    epochs = [int(r["epoch"]) for r in history]
    losses = [k for k in ("train_loss", "val_loss") if any(k in r for r in history)]
    scores = sorted({k for r in history for k, v in r.items() if k.startswith("val_") and k != "val_loss"})
    figure = Figure(figsize=(10 if scores else 5, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if scores else 1, squeeze=False)[0]
    for key in losses:
        axes[0].plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    axes[0].legend()
    if scores:
        for key in scores:
            axes[1].plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key[4:])
        axes[1].set_xlabel("epoch")
        axes[1].set_title("validation")
        axes[1].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    if show if show is not None else in_notebook():
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    return path
