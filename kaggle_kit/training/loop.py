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
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from kaggle_kit.errors import CheckpointError
from kaggle_kit.guard.clock import ESTIMATED_SAVE_BYTES_PER_S, SessionClock, deadline_margin, describe_margin
from kaggle_kit.training.config import (
    TrainConfig,
    TrainResult,
    micro_batches_per_epoch,
    steps_per_epoch,
    total_steps,
)
from kaggle_kit.training.data_order import epoch_loader
from kaggle_kit.training.history import RunFiles
from kaggle_kit.training.hyperparameters import apply_declared_hyperparameters, declared_hyperparameters
from kaggle_kit.training.objectives import EvaluateFn, LossFn
from kaggle_kit.training.progress import ProgressBar, progress_bar
from kaggle_kit.training.seeding import mix_seed
from kaggle_kit.training.step import (
    OptimizerFactory,
    OptimizerStep,
    SchedulerFactory,
    evaluate_model,
    move_to_device,
)

__all__ = ["train", "DeadlineClock", "TrainingCheckpointer", "LoopState", "rank_and_world", "default_device",
           "micro_batch_groups"]


class DeadlineClock(Protocol):
    """What the loop asks of the session clock (:class:`kaggle_kit.guard.clock.SessionClock` has both)."""

    def time_left(self) -> float: ...

    def should_stop(self, margin_s: float) -> bool: ...


class TrainingCheckpointer(Protocol):
    """What the loop needs of :class:`kaggle_kit.checkpoint.Checkpointer`."""

    directory: Path
    mirror: Any

    def restore(self, *, model: nn.Module | None = None, optimizer: Any = None, scheduler: Any = None,
                scaler: Any = None) -> Any: ...

    def save(self, **kwargs: Any) -> Any: ...

    def maybe_save(self, **kwargs: Any) -> Any: ...

    def flush(self, timeout: float | None = 600.0) -> bool: ...


@dataclass
class LoopState:
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
        """The ``data_state`` and ``extra`` arguments of ``Checkpointer.save``."""
        return {
            "data_state": {"epoch": self.epoch, "position": self.position, **self.data},
            "extra": {"loss_sum": self.loss_sum, "loss_count": self.loss_count, "history": self.history,
                      "best": self.best},
        }

    @classmethod
    def from_restored(cls, restored: Any) -> LoopState:
        """The state a checkpoint written by :func:`train` carries.

        Raises:
            CheckpointError: the checkpoint holds no loop state.
        """
        data, extra = dict(restored.data_state or {}), dict(restored.extra or {})
        if "position" not in data or "history" not in extra:
            raise CheckpointError(
                f"{restored.path} (step {restored.step}) holds no training-loop state: it was not written by "
                "kaggle_kit.training; point the Checkpointer at an empty folder to start afresh"
            )
        epoch, position = int(data.pop("epoch", restored.epoch)), int(data.pop("position"))
        return cls(
            epoch=epoch, position=position, step=int(restored.step), loss_sum=float(extra.get("loss_sum", 0.0)),
            loss_count=int(extra.get("loss_count", 0)), history=list(extra["history"]), best=extra.get("best"),
            data={k: int(v) for k, v in data.items()},
        )

    def check_same_data(self, current: Mapping[str, int], source: str) -> None:
        """Refuses to resume when the data order the checkpoint was made with differs from ``current``.

        Raises:
            CheckpointError: naming what changed.
        """
        changed = {k: (self.data.get(k), v) for k, v in current.items() if self.data.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} was {old} and is now {new}" for k, (old, new) in changed.items())
            raise CheckpointError(
                f"cannot resume from {source}: the data order changed ({detail}); resume with the same dataset, "
                "batch_size, grad_accum_steps and seed, or start from an empty checkpoint folder"
            )


def rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and the number of ranks; (0, 1) without torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def default_device(rank: int) -> torch.device:
    """This rank's CUDA device (by ``LOCAL_RANK``), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device("cpu")


def micro_batch_groups(num_micro: int, accum: int) -> Iterator[int]:
    """Micro-batches per optimizer step over an epoch: ``accum`` each, the last step taking what is left."""
    for start in range(0, num_micro, accum):
        yield min(accum, num_micro - start)


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


def _epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"step {record['step']}", f"train_loss {record['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_")]
    return ", ".join(parts)


class _Run:
    """One call of :func:`train`: the loop's state and the parts it drives, with one method per phase."""

    def __init__(
        self,
        *,
        step: OptimizerStep,
        dataset: Any,
        loss_fn: LossFn,
        config: TrainConfig,
        evaluate: EvaluateFn | None,
        checkpointer: TrainingCheckpointer | None,
        clock: DeadlineClock,
        files: RunFiles | None,
        collate_fn: Callable[[list[Any]], Any] | None,
        device: torch.device,
        rank: int,
        world: int,
        num_micro: int,
        epoch_steps: int,
        all_steps: int,
        show_progress: bool,
    ) -> None:
        self.step, self.dataset, self.loss_fn, self.config = step, dataset, loss_fn, config
        self.evaluate, self.checkpointer, self.clock, self.files = evaluate, checkpointer, clock, files
        self.collate_fn, self.device, self.rank, self.world = collate_fn, device, rank, world
        self.main = rank == 0
        self.num_micro, self.steps_per_epoch, self.total_steps = num_micro, epoch_steps, all_steps
        self.show_progress = show_progress and self.main
        self.data_identity = {
            "num_samples": len(dataset),
            "batch_size": config.batch_size,
            "grad_accum_steps": config.grad_accum_steps,
            "seed": config.seed,
        }
        self.state = LoopState(data=dict(self.data_identity))
        # What this run's optimizer and scheduler were built with: every checkpoint records it, and a resume puts
        # these values back over the checkpoint's where the config changed them.
        self.declared = declared_hyperparameters(step.optimizer, step.scheduler, total_steps=all_steps)
        self.resumed_from: int | None = None
        self.session_start = 0.0
        self.last_saved_step: int | None = None
        self.last_saved_time: float | None = None
        # What the automatic deadline margin is made of (see kaggle_kit.guard.clock.deadline_margin).
        self.session_s = 0.0
        self.save_s: float | None = None
        self.save_estimate_s = 0.0
        self.step_s = 0.0
        self.eval_s = 0.0
        self.last_step_end = 0.0

    def restore(self) -> None:
        """Continues from the checkpointer's newest checkpoint, if it has one."""
        if self.checkpointer is None:
            return
        restored = self.checkpointer.restore(
            model=self.step.model, optimizer=self.step.optimizer, scheduler=self.step.scheduler,
            scaler=self.step.checkpoint_scaler,
        )
        if restored is None:
            return
        self.state = LoopState.from_restored(restored)
        source = f"{restored.path} ({restored.source})"
        self.state.check_same_data(self.data_identity, source)
        changes = apply_declared_hyperparameters(
            self.step.optimizer, self.step.scheduler, now=self.declared,
            then=dict(restored.extra or {}).get("hyperparameters"), where=source,
        )
        self.resumed_from = self.state.step
        if self.main:
            print(f"Resuming from {source}: step {self.state.step}, epoch {self.state.epoch + 1}, "
                  f"batch {self.state.position}/{self.num_micro} of the epoch", flush=True)
            if changes:
                print(f"The config changed since that checkpoint; applying this run's values: {'; '.join(changes)} "
                      "(the optimizer's moments and the schedule's position are kept)", flush=True)

    def save_checkpoint(self, *, force: bool, metrics: Mapping[str, float] | None = None) -> None:
        """Rank 0: save now (``force``) or when the Checkpointer's cadence says so."""
        if self.checkpointer is None or not self.main:
            return
        parts = self.state.checkpoint_parts()
        parts["extra"]["hyperparameters"] = self.declared
        kwargs = dict(
            step=self.state.step, epoch=self.state.epoch, model=self.step.model, optimizer=self.step.optimizer,
            scheduler=self.step.scheduler, scaler=self.step.checkpoint_scaler, **parts,
        )
        started = time.monotonic()
        if force:
            info = self.checkpointer.save(**kwargs, metrics=dict(metrics or {}))
        else:
            info = self.checkpointer.maybe_save(**kwargs)
        if info is not None:
            self.last_saved_step, self.last_saved_time = self.state.step, time.time()
            self.save_s = max(self.save_s or 0.0, time.monotonic() - started)

    def estimated_save_s(self) -> float:
        """A save's time before one is measured: weights and two optimizer moments at a slow disk's speed."""
        if self.checkpointer is None:
            return 0.0
        weights = sum(t.nelement() * t.element_size() for t in self.step.model.state_dict().values())
        return 3 * weights / ESTIMATED_SAVE_BYTES_PER_S

    def margin_s(self) -> float:
        """Seconds before the session's end at which to save and stop: the config's, or scaled with the session."""
        if self.config.deadline_margin_s is not None:
            return self.config.deadline_margin_s
        save_s = self.save_s if self.save_s is not None else self.save_estimate_s
        return deadline_margin(self.session_s, save_s=save_s, step_s=self.step_s, eval_s=self.eval_s)

    def announce_margin(self) -> None:
        if not self.main:
            return
        if self.config.deadline_margin_s is not None:
            print(f"deadline margin {self.config.deadline_margin_s:.0f} s (train.deadline_margin_s)", flush=True)
            return
        print(describe_margin(self.margin_s(), self.session_s, save_s=self.save_estimate_s), flush=True)

    def write_progress(self, status: str) -> None:
        """Where the run is, and what a kill now would lose."""
        if self.files is None:
            return
        state = self.state
        self.files.write_progress({
            "status": status, "step": state.step, "epoch": state.epoch, "position": state.position,
            "micro_batches_per_epoch": self.num_micro, "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps, "resumed_from_step": self.resumed_from,
            "steps_this_session": state.step - (self.resumed_from or 0),
            "session_start_time": self.session_start, "time": time.time(),
            "last_checkpoint_step": self.last_saved_step, "last_checkpoint_time": self.last_saved_time,
        })

    def write_history(self) -> None:
        if self.files is not None:
            self.files.write_history(self.state.history, self.state.best, self.config)

    def run(self, *, plot: bool) -> TrainResult:
        """Trains the remaining epochs, or until the deadline; then saves, flushes and reports."""
        self.session_start = time.time()
        self.session_s = self.clock.time_left()
        self.save_estimate_s = self.estimated_save_s()
        self.last_step_end = time.monotonic()
        self.announce_margin()
        start_step = self.state.step
        status = "finished"
        self.step.model.train()
        while self.state.epoch < self.config.epochs:
            epoch = self.state.epoch
            if self.state.position < self.num_micro and self.run_epoch():
                status = "stopped"
                break
            self.end_epoch(epoch)
        self.finish(status, plot=plot)
        state = self.state
        return TrainResult(
            status=status, step=state.step, epoch=state.epoch, resumed_from_step=self.resumed_from,
            steps_this_session=state.step - start_step, history=list(state.history), best=state.best,
            output_dir=self.files.directory if self.files is not None else None,
        )

    def loader(self) -> DataLoader:
        """The rest of the current epoch's micro-batches for this rank, in the order of (seed, epoch)."""
        config, state = self.config, self.state
        return epoch_loader(
            self.dataset, seed=config.seed, epoch=state.epoch, global_batch_size=config.batch_size,
            num_micro_batches=self.num_micro, start=state.position, rank=self.rank, world_size=self.world,
            num_workers=config.num_workers, collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda",
        )

    def run_epoch(self) -> bool:
        """Runs the rest of the current epoch; True when the deadline stopped it."""
        accum = self.config.grad_accum_steps
        if hasattr(self.dataset, "set_epoch"):
            # The DistributedSampler convention: datasets that vary augmentation per epoch learn which one it is.
            self.dataset.set_epoch(self.state.epoch)
        loader = self.loader()
        bar = None
        if self.show_progress:
            bar = progress_bar(total=self.steps_per_epoch, initial=self.state.position // accum,
                               desc=f"epoch {self.state.epoch + 1}/{self.config.epochs}",
                               interval_s=self.config.log_every_s)
        try:
            return self.run_steps(loader, bar)
        finally:
            if bar is not None:
                bar.close()

    def run_steps(self, loader: Iterable[Any], bar: ProgressBar | None) -> bool:
        """Groups the loader's micro-batches into optimizer steps; True when the deadline stopped the run."""
        groups = list(micro_batch_groups(self.num_micro, self.config.grad_accum_steps))
        group_index = self.state.position // self.config.grad_accum_steps
        in_group = 0
        step_loss = self.zero_loss()
        for batch in loader:
            group_size = groups[group_index]
            last = in_group == group_size - 1
            step_loss += self.micro_batch(batch, group_size, in_group=in_group, last=last)
            in_group += 1
            if not last:
                continue
            stop = self.finish_step(step_loss, group_size)
            group_index += 1
            in_group = 0
            step_loss = self.zero_loss()
            if bar is not None:
                bar.set_postfix_str(f"loss {self.state.loss_sum / self.state.loss_count:.4f}")
                bar.update(1)
            if stop:
                return True
            self.save_checkpoint(force=False)
            self.write_progress("running")
        return False

    def zero_loss(self) -> torch.Tensor:
        return torch.zeros((), device=self.device, dtype=torch.float64)

    def micro_batch(self, batch: Any, group_size: int, *, in_group: int, last: bool) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns its share of the step's loss."""
        batch = move_to_device(batch, self.device)
        # Under DDP only the step's last micro-batch all-reduces the gradients.
        sync = contextlib.nullcontext() if (last or self.world == 1) else self.step.train_model.no_sync()
        with sync:
            loss = self.step.forward(self.loss_fn, batch)
            if not self.step.scaler.is_enabled() and not torch.isfinite(loss.detach()):
                raise FloatingPointError(
                    f"the loss is {loss.item()} at step {self.state.step + 1} (epoch {self.state.epoch + 1}, batch "
                    f"{self.state.position + in_group + 1}): lower train.lr, enable grad_clip_norm or check the inputs"
                )
            self.step.backward(loss, group_size)
        return loss.detach().to(torch.float64) / group_size

    def finish_step(self, step_loss: torch.Tensor, group_size: int) -> bool:
        """Steps the optimizer and counts the step; True when the ranks agree the deadline has come."""
        self.step.apply()
        now = time.monotonic()
        # A slowly forgetting maximum: one slow step (a save, a loader restart) keeps the margin wide for a while.
        self.step_s = max(now - self.last_step_end, 0.9 * self.step_s)
        self.last_step_end = now
        stop = self.rank == 0 and self.clock.should_stop(self.margin_s())
        if self.world > 1:
            # One collective per step: ranks agree on the mean loss and on stopping together.
            shared = torch.stack([step_loss.to(torch.float64),
                                  torch.tensor(float(stop), dtype=torch.float64, device=self.device)])
            torch.distributed.all_reduce(shared)
            step_loss, stop = shared[0] / self.world, bool(shared[1].item() > 0)
        self.state.loss_sum += float(step_loss.item())
        self.state.loss_count += 1
        self.state.step += 1
        self.state.position += group_size
        return stop

    def evaluate_epoch(self) -> dict[str, float]:
        """Rank 0 evaluates; every rank gets its metrics."""
        metrics: dict[str, float] = {}
        if self.evaluate is not None and self.main:
            started = time.monotonic()
            metrics = evaluate_model(self.evaluate, self.step.model, self.step.autocast)
            self.eval_s = time.monotonic() - started
        if self.world > 1:
            shared = [metrics]
            torch.distributed.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        return metrics

    def end_epoch(self, epoch: int) -> None:
        """Records the finished epoch, evaluates, keeps the best, and checkpoints it."""
        state, config = self.state, self.config
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.step,
            "train_loss": state.loss_sum / max(state.loss_count, 1),
            "lr": self.step.optimizer.param_groups[0]["lr"],
        }
        metrics = self.evaluate_epoch()
        record.update({f"val_{k}": float(v) for k, v in metrics.items()})
        monitored = metrics.get(config.monitor)
        if monitored is not None and _better(float(monitored), (state.best or {}).get(config.monitor),
                                             config.monitor_mode):
            state.best = {**record, config.monitor: float(monitored)}
        if self.step.scheduler_per_epoch and monitored is not None:
            self.step.scheduler.step(float(monitored))
        state.history.append(record)
        state.epoch, state.position, state.loss_sum, state.loss_count = epoch + 1, 0, 0.0, 0
        if self.main:
            print(_epoch_line(record, config.epochs), flush=True)
            self.write_history()
        self.save_checkpoint(force=True, metrics=metrics)
        if self.main:
            self.write_progress("running")
        self.last_step_end = time.monotonic()  # the evaluation and the save are counted on their own

    def finish(self, status: str, *, plot: bool) -> None:
        """Rank 0: the last save when stopped, the mirror flush, the progress file, resume advice, the figure."""
        if not self.main:
            return
        time_left = None
        if status == "stopped":
            time_left = self.clock.time_left()
            self.save_checkpoint(force=True)
            self.write_history()
        if self.checkpointer is not None:
            timeout = min(self.config.flush_timeout_s, max(5.0, self.clock.time_left() - 5.0))
            if not self.checkpointer.flush(timeout=timeout):
                print(f"WARNING: the mirror did not confirm step {self.state.step} within "
                      f"{self.config.flush_timeout_s:.0f} s; the local checkpoint in {self.checkpointer.directory} "
                      "still holds it", flush=True)
        self.write_progress(status)
        if time_left is not None:
            print(self.resume_advice(time_left), flush=True)
        if plot and self.files is not None and self.state.history:
            self.files.plot(self.state.history)

    def resume_advice(self, time_left: float) -> str:
        state = self.state
        where = "no checkpointer was given, so nothing was saved"
        if self.checkpointer is not None:
            mirror = self.checkpointer.mirror
            where = f"saved to {self.checkpointer.directory}"
            if mirror is not None and mirror.enabled:
                where += f" and mirrored to the dataset {mirror.handle}"
        return (
            f"Stopped before the session limit ({time_left / 60:.1f} min left, deadline margin "
            f"{self.margin_s():.0f} s) at step {state.step}, epoch "
            f"{state.epoch + 1}, batch {state.position}/{self.num_micro}; {where}. To resume, run the notebook again "
            "(Save Version) with the checkpoint dataset attached or internet on: training restarts from this step."
        )


def train(
    model: nn.Module,
    dataset: Any,
    loss_fn: LossFn,
    config: TrainConfig,
    *,
    optimizer_factory: OptimizerFactory | None = None,
    scheduler_factory: SchedulerFactory | None = None,
    evaluate: EvaluateFn | None = None,
    checkpointer: TrainingCheckpointer | Callable[[int], TrainingCheckpointer] | None = None,
    clock: DeadlineClock | None = None,
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
    rank, world = rank_and_world()
    main = rank == 0
    num_micro = micro_batches_per_epoch(len(dataset), config, world)
    per_epoch = steps_per_epoch(len(dataset), config, world)
    all_steps = total_steps(len(dataset), config, world)
    device = torch.device(device) if device is not None else default_device(rank)
    model.to(device)
    if main and device.type != "cuda" and config.precision != "fp32":
        print(f"note: precision {config.precision} is for CUDA; training in fp32 on {device}", flush=True)
    step = OptimizerStep.create(model, config, device, total_steps=all_steps,
                                optimizer_factory=optimizer_factory, scheduler_factory=scheduler_factory)
    if clock is None:
        clock = SessionClock.from_environment()
    if checkpointer is not None and not hasattr(checkpointer, "restore"):
        checkpointer = checkpointer(rank)
    run = _Run(
        step=step, dataset=dataset, loss_fn=loss_fn, config=config, evaluate=evaluate, checkpointer=checkpointer,
        clock=clock, files=RunFiles(output_dir) if output_dir is not None and main else None, collate_fn=collate_fn,
        device=device, rank=rank, world=world, num_micro=num_micro, epoch_steps=per_epoch, all_steps=all_steps,
        show_progress=progress,
    )
    run.restore()
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step.train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if rank > 0:
            # Rank 0's generator states travel in the checkpoint; the other ranks draw their own dropout streams.
            torch.manual_seed(mix_seed(config.seed, rank, run.state.step))
    return run.run(plot=plot)
