"""The generic training loop: resumable to the sample, deadline-aware, checkpointed, DDP when asked.

It knows nothing of any competition: it takes a model, a map-style dataset, a loss function, an optional evaluation
function, optimizer and scheduler factories and a :class:`TrainConfig`, and works the same in a notebook, a script or
a DDP rank started by :func:`kaggle_kit.guard.ddp.launch`.

Resuming from a checkpoint gives bit-identical weights (on CPU) to an uninterrupted run with the same seed: the data
order is a function of (seed, epoch, position), and checkpoints carry the position (``data_state``), the running
epoch loss and the history (``extra``); :class:`kaggle_kit.checkpoint.Checkpointer` saves and restores the random
generator states (dropout) itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from kaggle_kit._training_data import ResumableBatchSampler, SeededView, epoch_order, mix_seed
from kaggle_kit.errors import CheckpointError, ConfigError
from kaggle_kit.fileio import atomic_write_json

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "seed_everything",
    "plot_history",
    "make_optimizer",
    "make_scheduler",
    "train_on_ranks",
    "train_with_plan",
    "supervised_loss",
    "ScoreFunction",
    "checkpointer_for_rank",
    "epoch_order",
    "HISTORY_FILE",
    "PROGRESS_FILE",
    "FIGURE_FILE",
]

HISTORY_FILE = "history.json"
PROGRESS_FILE = "progress.json"
FIGURE_FILE = "training_curves.png"
_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """How to train; the schema of the ``train:`` section of a workload's YAML config.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Samples per micro-batch over all DDP ranks together (must divide by the number of ranks).
        grad_accum_steps: Micro-batches per optimizer step.
        seed: Seeds the data order and each sample's augmentation.
        precision: ``fp32``, ``bf16`` or ``fp16``; mixed precision (autocast, plus GradScaler for fp16) on CUDA only.
        lr: Learning rate for :func:`make_optimizer`.
        weight_decay: Weight decay for :func:`make_optimizer`.
        optimizer: ``adamw`` or ``sgd`` for :func:`make_optimizer`.
        scheduler: ``none``, ``cosine`` (per step, with warmup) or ``plateau`` (per epoch, on the monitored metric).
        warmup_steps: Linear warmup for ``cosine``.
        grad_clip_norm: Clip the gradient norm to this value; None for no clipping.
        num_workers: DataLoader worker processes.
        max_steps_per_epoch: Cap on optimizer steps per epoch (quick runs); None for the whole dataset.
        deadline_margin_s: Save and stop when the session has this many seconds left.
        flush_timeout_s: Longest wait at the end for the mirror to confirm the last checkpoint (never past the
            session's end).
        monitor: Metric of ``evaluate`` that picks the best epoch.
        monitor_mode: ``max`` or ``min``.
        log_every_s: Seconds between progress lines in a Batch log.
    """

    epochs: int = 1
    batch_size: int = 8
    grad_accum_steps: int = 1
    seed: int = 0
    precision: str = "bf16"
    lr: float = 3e-4
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_steps: int = 0
    grad_clip_norm: float | None = 1.0
    num_workers: int = 0
    max_steps_per_epoch: int | None = None
    deadline_margin_s: float = 600.0
    flush_timeout_s: float = 600.0
    monitor: str = "score"
    monitor_mode: str = "max"
    log_every_s: float = 30.0

    def validate(self) -> None:
        """Raises ConfigError naming the first bad field."""
        checks = [
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.grad_accum_steps >= 1, "grad_accum_steps", "at least 1"),
            (self.precision in _PRECISIONS, "precision", f"one of {', '.join(_PRECISIONS)}"),
            (self.lr > 0, "lr", "positive"),
            (self.optimizer in ("adamw", "sgd"), "optimizer", "adamw or sgd"),
            (self.scheduler in ("none", "cosine", "plateau"), "scheduler", "none, cosine or plateau"),
            (self.warmup_steps >= 0, "warmup_steps", "0 or more"),
            (self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm", "positive or null"),
            (self.num_workers >= 0, "num_workers", "0 or more"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1, "max_steps_per_epoch",
             "at least 1 or null"),
            (self.deadline_margin_s >= 0, "deadline_margin_s", "0 or more"),
            (self.flush_timeout_s >= 0, "flush_timeout_s", "0 or more"),
            (self.monitor_mode in ("max", "min"), "monitor_mode", "max or min"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"train.{name} = {getattr(self, name)!r} is invalid: it must be {expected}")


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        status: ``finished`` (all epochs done) or ``stopped`` (the session deadline came first; resume later).
        step: Optimizer steps done in total, over all sessions.
        epoch: Epochs completed.
        resumed_from_step: The checkpoint's step this session started from; None for a fresh start.
        steps_this_session: Optimizer steps done by this call.
        history: One record per completed epoch (see ``history.json``).
        best: The best epoch's record by ``monitor``; None without evaluation.
        output_dir: Where history, progress and the figure were written.
    """

    status: str
    step: int
    epoch: int
    resumed_from_step: int | None
    steps_this_session: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    output_dir: Path | None


class _Clock(Protocol):
    def time_left(self) -> float: ...

    def should_stop(self, margin_s: float) -> bool: ...


LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvaluateFn = Callable[[nn.Module], Mapping[str, float]]
OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch (all devices), e.g. before building a model."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the parameters that require gradients, as ``config`` says."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: TrainConfig) -> Any:
    """The scheduler ``config.scheduler`` names (None for ``none``); ``cosine`` steps per optimizer step."""
    if config.scheduler == "none":
        return None
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=config.monitor_mode, factor=0.5, patience=1)
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def supervised_loss(criterion: Callable[[Any, Any], torch.Tensor], model: nn.Module, batch: Any) -> torch.Tensor:
    """``criterion(model(batch[0]), batch[1])``: the usual loss for (input, target, ...) batches.

    Bind the criterion with ``functools.partial(supervised_loss, criterion)``; that pickles for DDP.
    """
    return criterion(model(batch[0]), batch[1])


@dataclass
class ScoreFunction:
    """``evaluate`` for :func:`train` from a metric ``fn(model, *args, device=..., **kwargs) -> float``.

    A module-level class, so it pickles into DDP ranks where a notebook's lambda would not.
    """

    fn: Callable[..., float]
    name: str = "score"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        return {self.name: float(self.fn(model, *self.args, device=device, **self.kwargs))}


def checkpointer_for_rank(
    rank: int, *, directory: str | os.PathLike[str], mirror: str | None = None, **options: Any
) -> Any:
    """A :class:`kaggle_kit.checkpoint.Checkpointer`; rank 0 alone gets the :class:`DatasetMirror` of ``mirror``.

    ``functools.partial(checkpointer_for_rank, directory=..., mirror=...)`` is the ``checkpointer`` to pass to
    :func:`train_with_plan` under DDP.
    """
    from kaggle_kit.checkpoint import Checkpointer

    dataset_mirror = None
    if mirror and rank == 0:
        from kaggle_kit.mirror import DatasetMirror

        dataset_mirror = DatasetMirror(mirror)
    return Checkpointer(directory, mirror=dataset_mirror, restore_only=rank != 0, **options)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _default_device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device("cpu")


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


class _LineProgress:
    """Progress as plain lines at most every ``interval_s`` seconds: a Batch log keeps no carriage returns."""

    def __init__(self, *, total: int, initial: int, desc: str, interval_s: float) -> None:
        self.total, self.n, self.desc, self.interval_s = total, initial, desc, interval_s
        self._postfix = ""
        self._start = time.monotonic()
        self._first = initial
        self._last = self._start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._print()

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def _print(self) -> None:
        rate = (self.n - self._first) / max(time.monotonic() - self._start, 1e-9)
        print(f"{self.desc}: {self.n}/{self.total} steps, {rate:.2f} steps/s, {self._postfix}", flush=True)

    def close(self) -> None:
        self._print()


def _progress(*, total: int, initial: int, desc: str, enabled: bool, interval_s: float) -> Any:
    if not enabled:
        return None
    from kaggle_kit.env import is_batch

    if is_batch() or not (sys.stderr.isatty() or _in_notebook()):
        return _LineProgress(total=total, initial=initial, desc=desc, interval_s=interval_s)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def plot_history(
    history: list[Mapping[str, Any]], path: str | os.PathLike[str], *, show: bool | None = None
) -> Path:
    """Draws loss and score curves per epoch, saves them as a PNG, and shows them inline in a notebook.

    The figure is drawn on the Agg canvas directly, so no pyplot backend is selected and nothing opens a window.

    Args:
        history: Epoch records as :func:`train` writes them.
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
    if show if show is not None else _in_notebook():
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    return path


@dataclass
class _State:
    """Everything besides model/optimizer/scheduler/scaler that a checkpoint must carry to resume exactly."""

    epoch: int = 0
    position: int = 0  # micro-batches of the current epoch already done
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    data: dict[str, int] = field(default_factory=dict)

    def checkpoint_parts(self) -> dict[str, Any]:
        return {
            "data_state": {"epoch": self.epoch, "position": self.position, **self.data},
            "extra": {"loss_sum": self.loss_sum, "loss_count": self.loss_count, "history": self.history,
                      "best": self.best},
        }


def _state_from(restored: Any) -> _State:
    data, extra = dict(restored.data_state or {}), dict(restored.extra or {})
    if "position" not in data or "history" not in extra:
        raise CheckpointError(
            f"{restored.path} (step {restored.step}) holds no training-loop state: it was not written by "
            "kaggle_kit.training; point the Checkpointer at an empty folder to start afresh"
        )
    epoch, position = int(data.pop("epoch", restored.epoch)), int(data.pop("position"))
    return _State(
        epoch=epoch, position=position, step=int(restored.step), loss_sum=float(extra.get("loss_sum", 0.0)),
        loss_count=int(extra.get("loss_count", 0)), history=list(extra["history"]), best=extra.get("best"),
        data={k: int(v) for k, v in data.items()},
    )


def _check_same_data(saved: Mapping[str, int], current: Mapping[str, int], source: str) -> None:
    changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if changed:
        detail = ", ".join(f"{k} was {old} and is now {new}" for k, (old, new) in changed.items())
        raise CheckpointError(
            f"cannot resume from {source}: the data order changed ({detail}); resume with the same dataset, "
            "batch_size, grad_accum_steps and seed, or start from an empty checkpoint folder"
        )


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


def _group_sizes(num_micro: int, accum: int) -> Iterator[int]:
    for start in range(0, num_micro, accum):
        yield min(accum, num_micro - start)


def train(
    model: nn.Module,
    dataset: Any,
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    optimizer_factory: OptimizerFactory | None = None,
    scheduler_factory: SchedulerFactory | None = None,
    evaluate: EvaluateFn | None = None,
    checkpointer: Any | None = None,
    clock: _Clock | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    plot: bool = True,
) -> TrainResult:
    """Trains ``model`` for ``config.epochs``, resuming from ``checkpointer`` when it holds a checkpoint.

    Args:
        model: The model; moved to ``device`` and wrapped in DistributedDataParallel when torch.distributed is
            initialised (as :func:`kaggle_kit.guard.ddp.launch` does).
        dataset: Map-style dataset of training samples.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, the mean loss of the micro-batch (batch on ``device``).
        config: How to train.
        optimizer_factory: ``factory(model) -> optimizer``; default :func:`make_optimizer` with ``config``.
        scheduler_factory: ``factory(optimizer, total_steps) -> scheduler or None``; default :func:`make_scheduler`.
            ReduceLROnPlateau steps once per epoch on the monitored metric, any other scheduler once per optimizer step.
        evaluate: ``evaluate(model) -> {name: value}`` after each epoch, on rank 0, in eval mode without gradients;
            recorded as ``val_<name>``; ``config.monitor`` picks the best epoch.
        checkpointer: A :class:`kaggle_kit.checkpoint.Checkpointer`, or ``factory(rank) -> Checkpointer`` (built in
            each DDP rank; give the mirror to rank 0 only). Every rank restores from it; rank 0 alone saves.
        clock: Session clock; default :meth:`SessionClock.from_environment`. When it says to stop, the loop saves,
            flushes the mirror and returns with status ``stopped``.
        output_dir: Where ``history.json``, ``progress.json`` and the figure go (rank 0); None writes nothing.
        collate_fn: DataLoader collate function.
        device: Default: this rank's CUDA device, else the CPU.
        progress: Show progress (tqdm.auto widget in a notebook, plain lines in a Batch log).
        plot: Save (and in a notebook show) the loss and score figure at the end.

    Returns:
        What happened; see :class:`TrainResult`.

    Raises:
        ConfigError: bad ``config`` or a dataset too small for one global batch.
        CheckpointError: the checkpoint was made with another data order.
    """
    config.validate()
    rank, world = _dist()
    main = rank == 0
    if config.batch_size % world:
        raise ConfigError(
            f"train.batch_size = {config.batch_size} does not divide among {world} DDP ranks: "
            f"use a multiple of {world}"
        )
    num_samples = len(dataset)
    num_micro = num_samples // config.batch_size
    if num_micro == 0:
        raise ConfigError(
            f"the training set has {num_samples} samples, fewer than train.batch_size = {config.batch_size}: "
            "lower the batch size or add data"
        )
    if config.max_steps_per_epoch is not None:
        num_micro = min(num_micro, config.max_steps_per_epoch * config.grad_accum_steps)
    steps_per_epoch = math.ceil(num_micro / config.grad_accum_steps)
    total_steps = steps_per_epoch * config.epochs

    device = torch.device(device) if device is not None else _default_device(rank)
    model.to(device)
    cuda = device.type == "cuda"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision) if cuda else None
    if main and not cuda and config.precision != "fp32":
        print(f"note: precision {config.precision} is for CUDA; training in fp32 on {device}", flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    optimizer = optimizer_factory(model) if optimizer_factory else make_optimizer(model, config)
    scheduler = (
        scheduler_factory(optimizer, total_steps) if scheduler_factory
        else make_scheduler(optimizer, total_steps, config)
    )
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if clock is None:
        from kaggle_kit.guard.clock import SessionClock

        clock = SessionClock.from_environment()
    if checkpointer is not None and not hasattr(checkpointer, "restore"):
        checkpointer = checkpointer(rank)
    out = Path(output_dir) if output_dir is not None and main else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    data_identity = {
        "num_samples": num_samples,
        "batch_size": config.batch_size,
        "grad_accum_steps": config.grad_accum_steps,
        "seed": config.seed,
    }
    state = _State(data=data_identity)
    resumed_from: int | None = None
    if checkpointer is not None:
        restored = checkpointer.restore(
            model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler if scaler.is_enabled() else None
        )
        if restored is not None:
            state = _state_from(restored)
            source = f"{restored.path} ({restored.source})"
            _check_same_data(state.data, data_identity, source)
            resumed_from = state.step
            if main:
                print(f"Resuming from {source}: step {state.step}, epoch {state.epoch + 1}, "
                      f"batch {state.position}/{num_micro} of the epoch", flush=True)

    train_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if world > 1 and rank > 0:
        # Rank 0's generator states travel in the checkpoint; the other ranks draw their own dropout streams.
        torch.manual_seed(mix_seed(config.seed, rank, state.step))

    session_start = time.time()
    last_saved: dict[str, float | int | None] = {"step": None, "time": None}

    def save_checkpoint(*, force: bool, metrics: Mapping[str, float] | None = None) -> None:
        """Rank 0: save now (``force``) or when the Checkpointer's cadence says so."""
        if checkpointer is None or not main:
            return
        kwargs = dict(
            step=state.step, epoch=state.epoch, model=model, optimizer=optimizer, scheduler=scheduler,
            scaler=scaler if scaler.is_enabled() else None, **state.checkpoint_parts(),
        )
        info = checkpointer.save(**kwargs, metrics=dict(metrics or {})) if force else checkpointer.maybe_save(**kwargs)
        if info is not None:
            last_saved.update(step=state.step, time=time.time())

    def write_progress(status: str) -> None:
        # Read by the rehearsal and by people: where the run is, and what a kill now would lose.
        if out is not None:
            atomic_write_json(out / PROGRESS_FILE, default=float, allow_nan=True, data={
                "status": status, "step": state.step, "epoch": state.epoch, "position": state.position,
                "micro_batches_per_epoch": num_micro, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                "resumed_from_step": resumed_from, "steps_this_session": state.step - (resumed_from or 0),
                "session_start_time": session_start, "time": time.time(),
                "last_checkpoint_step": last_saved["step"], "last_checkpoint_time": last_saved["time"],
            })

    def write_history() -> None:
        if out is not None:
            atomic_write_json(out / HISTORY_FILE, default=float, allow_nan=True, data={
                "history": state.history, "best": state.best, "monitor": config.monitor, "config": asdict(config)})

    start_step = state.step
    autocast = (
        (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    )
    status = "finished"
    model.train()
    while state.epoch < config.epochs:
        epoch = state.epoch
        if state.position < num_micro:
            stopped = _run_epoch_steps(
                train_model=train_model, model=model, dataset=dataset, loss_fn=loss_fn, config=config,
                state=state, num_micro=num_micro, steps_per_epoch=steps_per_epoch, rank=rank, world=world,
                device=device, optimizer=optimizer, scheduler=None if plateau else scheduler, scaler=scaler,
                autocast=autocast, collate_fn=collate_fn, clock=clock, save_checkpoint=save_checkpoint,
                write_progress=write_progress, progress=progress and main,
            )
            if stopped:
                status = "stopped"
                break
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.step,
            "train_loss": state.loss_sum / max(state.loss_count, 1),
            "lr": optimizer.param_groups[0]["lr"],
        }
        metrics = _evaluate(evaluate, model, autocast, main=main, world=world)
        record.update({f"val_{k}": float(v) for k, v in metrics.items()})
        monitored = metrics.get(config.monitor)
        if monitored is not None and _better(float(monitored), (state.best or {}).get(config.monitor), config.monitor_mode):
            state.best = {**record, config.monitor: float(monitored)}
        if plateau and scheduler is not None and monitored is not None:
            scheduler.step(float(monitored))
        state.history.append(record)
        state.epoch, state.position, state.loss_sum, state.loss_count = epoch + 1, 0, 0.0, 0
        if main:
            print(_epoch_line(record, config.epochs), flush=True)
            write_history()
        save_checkpoint(force=True, metrics=metrics)
        if main:
            write_progress("running")
    if status == "stopped" and main:
        time_left = clock.time_left()
        save_checkpoint(force=True)
        write_history()
    if main and checkpointer is not None:
        if not checkpointer.flush(timeout=min(config.flush_timeout_s, max(5.0, clock.time_left() - 5.0))):
            print(f"WARNING: the mirror did not confirm step {state.step} within {config.flush_timeout_s:.0f} s; "
                  f"the local checkpoint in {checkpointer.directory} still holds it", flush=True)
    if main:
        write_progress(status)
    if status == "stopped" and main:
        print(_resume_advice(state, num_micro, time_left, checkpointer), flush=True)
    if main and plot and out is not None and state.history:
        plot_history(state.history, out / FIGURE_FILE)
    return TrainResult(
        status=status, step=state.step, epoch=state.epoch, resumed_from_step=resumed_from,
        steps_this_session=state.step - start_step, history=list(state.history), best=state.best, output_dir=out,
    )


def train_on_ranks(ctx: Any, *, model: nn.Module, **kwargs: Any) -> TrainResult:
    """Per-rank entry for :func:`kaggle_kit.guard.ddp.launch`: :func:`train` on the rank's device."""
    import copy

    # Spawn hands tensors over in shared memory: without a private copy every rank would step the same weights.
    return train(copy.deepcopy(model), device=ctx.device, **kwargs)


def train_with_plan(plan: Any, **kwargs: Any) -> TrainResult:
    """Trains as a :class:`kaggle_kit.guard.accelerator.DevicePlan` says: one process, or DDP over its ranks.

    Args:
        plan: The device plan (``world_size``, ``backend``, ``device_type``).
        **kwargs: Arguments of :func:`train`. Under DDP they must pickle: module-level functions (not notebook
            cells), and ``checkpointer`` as a ``factory(rank)``.

    Returns:
        Rank 0's result.
    """
    if plan.world_size > 1:
        from kaggle_kit.guard.ddp import launch

        return launch(train_on_ranks, world_size=plan.world_size, backend=plan.backend, kwargs=kwargs)[0]
    return train(device=torch.device(plan.device_type), **kwargs)


def _evaluate(
    evaluate: EvaluateFn | None, model: nn.Module, autocast: Callable[[], Any], *, main: bool, world: int
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if evaluate is not None and main:
        model.eval()
        with torch.no_grad(), autocast():
            metrics = {k: float(v) for k, v in evaluate(model).items()}
        model.train()
    if world > 1:
        shared = [metrics]
        torch.distributed.broadcast_object_list(shared, src=0)
        metrics = shared[0]
    return metrics


def _epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"step {record['step']}", f"train_loss {record['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
    return ", ".join(parts)


def _resume_advice(state: _State, num_micro: int, time_left: float, checkpointer: Any | None) -> str:
    where = "no checkpointer was given, so nothing was saved"
    if checkpointer is not None:
        mirror = checkpointer.mirror
        where = f"saved to {checkpointer.directory}"
        if mirror is not None and mirror.enabled:
            where += f" and mirrored to the dataset {mirror.handle}"
    return (
        f"Stopped before the session limit ({time_left / 60:.1f} min left) at step {state.step}, epoch "
        f"{state.epoch + 1}, batch {state.position}/{num_micro}; {where}. To resume, run the notebook again "
        "(Save Version) with the checkpoint dataset attached or internet on: training restarts from this step."
    )


def _run_epoch_steps(
    *,
    train_model: nn.Module,
    model: nn.Module,
    dataset: Any,
    loss_fn: LossFn,
    config: TrainConfig,
    state: _State,
    num_micro: int,
    steps_per_epoch: int,
    rank: int,
    world: int,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    autocast: Callable[[], Any],
    collate_fn: Callable[[list[Any]], Any] | None,
    clock: _Clock,
    save_checkpoint: Callable[..., None],
    write_progress: Callable[[str], None],
    progress: bool,
) -> bool:
    """Runs the rest of the current epoch; True when the deadline stopped it."""
    accum = config.grad_accum_steps
    if hasattr(dataset, "set_epoch"):
        # The DistributedSampler convention: datasets that vary augmentation per epoch learn which one it is.
        dataset.set_epoch(state.epoch)
    sampler = ResumableBatchSampler(
        epoch_order(len(dataset), seed=config.seed, epoch=state.epoch), global_batch_size=config.batch_size,
        num_micro_batches=num_micro, start=state.position, rank=rank, world_size=world, seed=config.seed,
        epoch=state.epoch,
    )
    loader = DataLoader(
        SeededView(dataset), batch_sampler=sampler, num_workers=config.num_workers, collate_fn=collate_fn,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(mix_seed(config.seed, state.epoch)),
        persistent_workers=False,
    )
    bar = _progress(
        total=steps_per_epoch, initial=state.position // accum, desc=f"epoch {state.epoch + 1}/{config.epochs}",
        enabled=progress, interval_s=config.log_every_s,
    )
    groups = list(_group_sizes(num_micro, accum))
    group_index = state.position // accum
    in_group = 0
    step_loss = torch.zeros((), device=device, dtype=torch.float64)
    try:
        for batch in loader:
            group_size = groups[group_index]
            last = in_group == group_size - 1
            batch = _to_device(batch, device)
            sync = contextlib.nullcontext() if (last or world == 1) else train_model.no_sync()
            with sync:
                with autocast():
                    loss = loss_fn(train_model, batch)
                if not scaler.is_enabled() and not torch.isfinite(loss.detach()):
                    raise FloatingPointError(
                        f"the loss is {loss.item()} at step {state.step + 1} (epoch {state.epoch + 1}, batch "
                        f"{state.position + in_group + 1}): lower train.lr, enable grad_clip_norm or check the inputs"
                    )
                scaler.scale(loss / group_size).backward()
            step_loss += loss.detach().to(torch.float64) / group_size
            in_group += 1
            if not last:
                continue
            if config.grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            stop = rank == 0 and clock.should_stop(config.deadline_margin_s)
            if world > 1:
                # One collective per step: ranks agree on the mean loss and on stopping together.
                shared = torch.stack([step_loss.to(torch.float64), torch.tensor(float(stop), dtype=torch.float64,
                                                                                device=device)])
                torch.distributed.all_reduce(shared)
                step_loss, stop = shared[0] / world, bool(shared[1].item() > 0)
            state.loss_sum += float(step_loss.item())
            state.loss_count += 1
            state.step += 1
            state.position += group_size
            group_index += 1
            in_group = 0
            step_loss = torch.zeros((), device=device, dtype=torch.float64)
            if bar is not None:
                bar.set_postfix_str(f"loss {state.loss_sum / state.loss_count:.4f}")
                bar.update(1)
            if stop:
                return True
            save_checkpoint(force=False)
            write_progress("running")
    finally:
        if bar is not None:
            bar.close()
    return False
