"""Build torch objects whose constructors changed between releases, the same way on every version.

``ReduceLROnPlateau(verbose=...)`` (and the other schedulers' ``verbose``) was deprecated in torch 2.2 and later
removed: code written for older torch crashes at the first line of training on a current Kaggle image.
``torch.cuda.amp.GradScaler`` moved to ``torch.amp.GradScaler("cuda")``. :func:`compat_notes` lists which of these
apply to the installed torch, for the preflight report.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from kaggle_kit.errors import ConfigError

# Arguments some torch releases accept and others reject, dropped when the installed release has no use for them.
_REMOVED_ARGS = frozenset({"verbose"})
_ALIASES = {
    "plateau": "ReduceLROnPlateau",
    "reduce_on_plateau": "ReduceLROnPlateau",
    "cosine": "CosineAnnealingLR",
    "cosine_warm_restarts": "CosineAnnealingWarmRestarts",
    "step": "StepLR",
    "multistep": "MultiStepLR",
    "exponential": "ExponentialLR",
    "onecycle": "OneCycleLR",
    "lambda": "LambdaLR",
    "linear": "LinearLR",
}

__all__ = ["make_scheduler", "make_grad_scaler", "compat_notes"]


def _scheduler_class(name: str | type) -> type:
    import torch.optim.lr_scheduler as schedulers

    if isinstance(name, type):
        return name
    resolved = _ALIASES.get(name.lower(), name)
    cls = getattr(schedulers, resolved, None)
    if not isinstance(cls, type):
        raise ConfigError(f"unknown scheduler {name!r}: use a class name from torch.optim.lr_scheduler (e.g. "
                          f"ReduceLROnPlateau) or one of {', '.join(sorted(_ALIASES))}")
    return cls


def _accepted(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {n for n in params if n not in ("self", "optimizer")}, takes_any


def make_scheduler(name: str | type, optimizer: Any, **kwargs: Any) -> Any:
    """Build an LR scheduler, dropping arguments the installed torch removed instead of crashing.

    Args:
        name: A class of ``torch.optim.lr_scheduler`` or its name (``"ReduceLROnPlateau"``), or an alias such as
            ``"plateau"`` or ``"cosine"``.
        optimizer: The optimizer to schedule.
        **kwargs: Constructor arguments; ``verbose`` is passed only where this torch still accepts it.

    Raises:
        ConfigError: an unknown scheduler, or an argument it does not take in any torch release.
    """
    cls = _scheduler_class(name)
    accepted, takes_any = _accepted(cls)
    if not takes_any:
        dropped = sorted(k for k in kwargs if k not in accepted and k in _REMOVED_ARGS)
        unknown = sorted(k for k in kwargs if k not in accepted and k not in _REMOVED_ARGS)
        if unknown:
            raise ConfigError(f"{cls.__name__} takes no argument(s) {', '.join(unknown)}: it accepts "
                              f"{', '.join(sorted(accepted))}")
        if dropped:
            warnings.warn(f"{cls.__name__}: this torch has no {', '.join(dropped)} argument; dropped "
                          "(log the learning rate from optimizer.param_groups instead)", stacklevel=2)
            kwargs = {k: v for k, v in kwargs.items() if k not in dropped}
    return cls(optimizer, **kwargs)


def make_grad_scaler(*, enabled: bool = True) -> Any:
    """A CUDA gradient scaler for float16 AMP, from ``torch.amp`` where it exists, else ``torch.cuda.amp``."""
    import torch

    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def compat_notes() -> list[str]:
    """What changed in the installed torch that old training code trips over, and how the kit copes."""
    import torch
    import torch.optim.lr_scheduler as schedulers

    notes = []
    accepted, _ = _accepted(schedulers.ReduceLROnPlateau)
    if "verbose" not in accepted:
        notes.append(f"torch {torch.__version__}: ReduceLROnPlateau(verbose=...) is gone; build schedulers with "
                     "kaggle_kit.guard.compat.make_scheduler, which drops it")
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        notes.append("torch.cuda.amp.GradScaler/autocast are deprecated: use torch.amp.GradScaler('cuda') and "
                     "torch.autocast('cuda') (make_grad_scaler does)")
    return notes
