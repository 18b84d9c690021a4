"""A checkpoint read, verified and decoded whole before anything is applied.

:func:`prepare` turns a :class:`~kaggle_kit.checkpoint.format.CheckpointInfo` into a :class:`PreparedCheckpoint`:
the files checked against the manifest, the state JSON checked field by field (types, shapes of the recorded
model, the RNG states on scratch generators) and every tensor reference resolved. A checkpoint that fails any check
raises :class:`~kaggle_kit.errors.CheckpointError` naming it, and nothing of it has touched the model, the optimizer
or the RNGs: the caller skips it and tries the next.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kaggle_kit.checkpoint.codec import RngState, check_rng_state, decode
from kaggle_kit.checkpoint.format import CheckpointInfo, read_checkpoint, step_of
from kaggle_kit.errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["PreparedCheckpoint", "prepare"]


@dataclasses.dataclass(frozen=True)
class PreparedCheckpoint:
    """Everything a checkpoint holds, checked and decoded; applying it cannot fail on the checkpoint's account.

    Attributes:
        info: the checkpoint.
        state: the raw state JSON (for re-stamping an adopted copy).
        model: the model's state dict, or None when none was saved.
        model_metadata: torch's per-module state versions, or None.
        model_shapes: ``{key: shape}`` as recorded at save time, or None.
        optimizer, scheduler, scaler: their state dicts, or None when none was saved.
        rng: the RNG states, or None when none were saved.
        metrics, data_state, extra: the decoded caller state.
        best: the best so far when it was written (``name``, ``value``, ``step``; each may be None).
        config, config_hash: the run's config and its hash, or None.
        versions: the library versions that wrote it.
    """

    info: CheckpointInfo
    state: dict[str, Any]
    model: dict[str, torch.Tensor] | None
    model_metadata: dict[str, Any] | None
    model_shapes: dict[str, list[int]] | None
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    scaler: dict[str, Any] | None
    rng: RngState | None
    metrics: dict[str, Any]
    data_state: dict[str, Any]
    extra: dict[str, Any]
    best: dict[str, Any]
    config: dict[str, Any] | None
    config_hash: str | None
    versions: dict[str, str]

    @property
    def where(self) -> str:
        return str(self.info.manifest_path)


def _number_or_none(value: Any, what: str, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise CheckpointError(f"{where}: {what} {str(value)[:60]!r} is not a number")
    return float(value)


def _optional_dict(state: Mapping[str, Any], key: str, tensors: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    raw = state.get(key)
    if raw is None:
        return None
    value = decode(raw, tensors, where)
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: the {key} state is a {type(value).__name__}, not an object")
    return value


def _model_state(state: Mapping[str, Any], tensors: Mapping[str, Any], where: str) -> dict[str, torch.Tensor] | None:
    import torch

    model = _optional_dict(state, "model", tensors, where)
    if model is not None and not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise CheckpointError(f"{where}: the model state is not a flat mapping of names to tensors")
    return model


def _model_shapes(state: Mapping[str, Any], where: str) -> dict[str, list[int]] | None:
    shapes = state.get("model_shapes")
    if shapes is None:
        return None
    if not isinstance(shapes, dict) or not all(
        isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        for shape in shapes.values()
    ):
        raise CheckpointError(f"{where}: model_shapes is not a mapping of names to lists of sizes")
    return shapes


def _best(state: Mapping[str, Any], where: str) -> dict[str, Any]:
    best = state.get("best")
    if best is None:
        return {"name": None, "value": None, "step": None}
    if not isinstance(best, dict):
        raise CheckpointError(f"{where}: best is a {type(best).__name__}, not an object")
    name, step = best.get("name"), best.get("step")
    if name is not None and (not isinstance(name, str) or step_of(name) is None):
        raise CheckpointError(f"{where}: best name {str(name)[:60]!r} is not a checkpoint name")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise CheckpointError(f"{where}: best step {str(step)[:60]!r} is not a step")
    return {"name": name, "value": _number_or_none(best.get("value"), "best value", where), "step": step}


def prepare(info: CheckpointInfo) -> PreparedCheckpoint:
    """Read, verify, check and decode a whole checkpoint without applying any of it.

    Raises:
        CheckpointError: a file is missing, truncated, altered, unparsable, or a field has the wrong type or shape;
            the message names the checkpoint.
    """
    state, tensors = read_checkpoint(info)
    where = str(info.manifest_path)
    epoch = state.get("epoch")
    if epoch != info.epoch or not isinstance(epoch, int) or isinstance(epoch, bool):
        raise CheckpointError(f"{where}: the state's epoch {str(epoch)[:60]!r} is not the manifest's {info.epoch}")
    if state.get("name", info.name) != info.name:
        raise CheckpointError(f"{where}: the state names {str(state.get('name'))[:60]!r}, not {info.name}")
    metrics = _optional_dict(state, "metrics", tensors, where) or {}
    data_state = _optional_dict(state, "data_state", tensors, where) or {}
    extra = _optional_dict(state, "extra", tensors, where) or {}
    config = state.get("config")
    if config is not None and not isinstance(config, dict):
        raise CheckpointError(f"{where}: config is a {type(config).__name__}, not an object")
    config_hash = state.get("config_hash")
    if config_hash is not None and not isinstance(config_hash, str):
        raise CheckpointError(f"{where}: config_hash is not a string")
    versions = state.get("versions") or {}
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise CheckpointError(f"{where}: versions is not a mapping of names to version strings")
    metadata = state.get("model_metadata")
    if metadata is not None:
        metadata = decode(metadata, {}, where)
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{where}: model_metadata is not an object")
    rng = state.get("rng")
    return PreparedCheckpoint(
        info=info,
        state=state,
        model=_model_state(state, tensors, where),
        model_metadata=metadata or None,
        model_shapes=_model_shapes(state, where),
        optimizer=_optional_dict(state, "optimizer", tensors, where),
        scheduler=_optional_dict(state, "scheduler", tensors, where),
        scaler=_optional_dict(state, "scaler", tensors, where),
        rng=None if rng is None else check_rng_state(decode(rng, tensors, where), where),
        metrics=metrics,
        data_state=data_state,
        extra=extra,
        best=_best(state, where),
        config=config,
        config_hash=config_hash,
        versions=dict(versions),
    )
