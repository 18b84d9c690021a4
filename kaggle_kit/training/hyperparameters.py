"""The optimizer's and scheduler's hyperparameters across a resume: this run's config wins over the checkpoint's.

Restoring an optimizer restores its hyperparameters too (``lr``, ``weight_decay``, ``betas``...), so a user who
changed ``train.lr`` between sessions would silently keep the old one. The loop therefore records, in every
checkpoint, the hyperparameters the run's optimizer was built with (:func:`declared_hyperparameters`), and after a
restore :func:`apply_declared_hyperparameters` puts this run's values back wherever they changed, keeping what the
checkpoint carries of the run's progress: the optimizer's moments, the scheduler's position, and the factor by which
a schedule or a plateau has scaled the learning rate so far. A change of the run's length (``train.epochs``,
``max_steps_per_epoch``) re-times a LambdaLR schedule (the default cosine); another scheduler class cannot be
re-timed from outside, and the resume is refused with the choices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from kaggle_kit.errors import CheckpointError

__all__ = ["declared_hyperparameters", "apply_declared_hyperparameters"]

# What a ReduceLROnPlateau takes from its arguments (the config), as opposed to what it learns while training.
_PLATEAU_SETTINGS = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps", "min_lrs")


def _plain(value: Any) -> Any:
    """A JSON-able copy of a hyperparameter value; None for what is not one (a tensor learning rate, a callable)."""
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None for i in items) else items
    return None


def declared_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any, *, total_steps: int) -> dict[str, Any]:
    """What the run's optimizer and scheduler were built with, before any training: for the checkpoint's record.

    Call it on the freshly built optimizer and scheduler (a scheduler adds ``initial_lr`` to each group).
    """
    groups = [{key: _plain(value) for key, value in group.items() if key != "params" and _plain(value) is not None}
              for group in optimizer.param_groups]
    record: dict[str, Any] = {"param_groups": groups, "total_steps": int(total_steps)}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        record["plateau"] = {key: _plain(getattr(scheduler, key)) for key in _PLATEAU_SETTINGS}
    return record


def _inferred_record(optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """The record of a checkpoint written before records existed: the restored groups. Their ``lr`` is the declared
    one only without a scheduler (a scheduler keeps the base in ``initial_lr``; a plateau lowers ``lr`` itself)."""
    skip = ("params",) if scheduler is None else ("params", "lr")
    groups = []
    for group in optimizer.param_groups:
        values = {key: _plain(value) for key, value in group.items() if key not in skip}
        groups.append({key: value for key, value in values.items() if value is not None})
    return {"param_groups": groups}


def _checked_record(record: Any, where: str) -> dict[str, Any] | None:
    if record is None:
        return None
    groups = record.get("param_groups") if isinstance(record, Mapping) else None
    total = record.get("total_steps") if isinstance(record, Mapping) else None
    if not (isinstance(groups, list) and all(isinstance(g, Mapping) for g in groups)
            and (total is None or (isinstance(total, int) and not isinstance(total, bool)))):
        raise CheckpointError(f"{where}: the recorded optimizer hyperparameters are malformed; it was not written by "
                              "kaggle_kit.training: start afresh from an empty checkpoint folder")
    return dict(record)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _as_before(new: Any, old_value: Any) -> Any:
    """``new`` in the container type the optimizer had (``betas`` is a tuple; JSON gives a list)."""
    return tuple(new) if isinstance(old_value, tuple) and isinstance(new, list) else new


def _describe(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _apply_groups(optimizer: torch.optim.Optimizer, scheduler: Any, now: list[Mapping[str, Any]],
                  then: list[Mapping[str, Any]]) -> list[str]:
    changes = []
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    base_lrs = getattr(scheduler, "base_lrs", None)
    for index, (group, new, old) in enumerate(zip(optimizer.param_groups, now, then)):
        where = f" (param group {index})" if len(optimizer.param_groups) > 1 else ""
        for key, value in new.items():
            if key not in old or _same(old[key], value) or (key == "lr" and "initial_lr" in new):
                continue  # a scheduled lr follows from initial_lr, below
            changes.append(f"{'lr' if key == 'initial_lr' else key} {_describe(old[key])} -> {_describe(value)}{where}")
            if key in ("lr", "initial_lr"):
                # Keep the factor the schedule or the plateau has applied so far; rescale its base.
                ratio = value / old[key] if old[key] else None
                group["lr"] = group["lr"] * ratio if ratio is not None and (key == "initial_lr" or plateau) else value
                if key == "initial_lr":
                    group["initial_lr"] = value
                    if isinstance(base_lrs, list) and index < len(base_lrs):
                        base_lrs[index] = value
            else:
                group[key] = _as_before(value, group.get(key))
    return changes


def _retime(scheduler: Any, optimizer: torch.optim.Optimizer, *, steps_now: int, steps_then: int | None,
            lr_changed: bool) -> list[str]:
    length_changed = steps_then is not None and steps_then != steps_now
    if scheduler is None or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return []
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        if length_changed or lr_changed:
            # A LambdaLR's rate is base * lambda(step): the lambdas were built for this run's length.
            for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * factor(scheduler.last_epoch)
        return [f"the schedule spans {steps_now} steps (was {steps_then})"] if length_changed else []
    if length_changed:
        raise CheckpointError(
            f"the run is now {steps_now} optimizer steps long and the checkpoint's {type(scheduler).__name__} was "
            f"built for {steps_then}, which the kit cannot re-time (it re-times a LambdaLR, like the default cosine). "
            f"Either set train.epochs / train.max_steps_per_epoch back so the run is {steps_then} steps long, or "
            "start a new run from an empty checkpoint folder"
        )
    return []


def _apply_plateau(scheduler: Any, now: Mapping[str, Any] | None, then: Mapping[str, Any] | None) -> list[str]:
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) or not now or not then:
        return []
    changes = []
    for key in _PLATEAU_SETTINGS:
        if key in now and key in then and not _same(now[key], then[key]):
            changes.append(f"plateau {key} {_describe(then[key])} -> {_describe(now[key])}")
            setattr(scheduler, key, list(now[key]) if key == "min_lrs" else now[key])
    if any(c.startswith(("plateau mode", "plateau threshold_mode")) for c in changes):
        # The best value so far was judged the other way round: count from scratch.
        scheduler.mode_worse = math.inf if scheduler.mode == "min" else -math.inf
        scheduler.best = scheduler.mode_worse
        scheduler.num_bad_epochs = 0
    return changes


def apply_declared_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any, *, now: Mapping[str, Any],
                                   then: Any, where: str) -> list[str]:
    """After a restore: this run's declared hyperparameters wherever the checkpoint's record differs.

    Args:
        optimizer: The restored optimizer.
        scheduler: The restored scheduler, or None.
        now: :func:`declared_hyperparameters` of this run, taken before the restore.
        then: The checkpoint's record; None for a checkpoint written before records (inferred from the optimizer).
        where: The checkpoint, for messages.

    Returns:
        One line per change applied, for the log.

    Raises:
        CheckpointError: the record is malformed, or the run's length changed under a scheduler the kit cannot
            re-time (the message gives the two ways on).
    """
    record = _checked_record(then, where) or _inferred_record(optimizer, scheduler)
    new_groups, old_groups = now["param_groups"], record["param_groups"]
    if len(new_groups) != len(old_groups):
        return []  # the optimizer's own restore would have refused mismatched groups
    changes = _apply_groups(optimizer, scheduler, new_groups, old_groups)
    lr_changed = any(c.startswith("lr ") for c in changes)
    changes += _retime(scheduler, optimizer, steps_now=now["total_steps"], steps_then=record.get("total_steps"),
                       lr_changed=lr_changed)
    changes += _apply_plateau(scheduler, now.get("plateau"), record.get("plateau"))
    return changes
