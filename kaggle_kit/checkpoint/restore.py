"""Finding checkpoints and loading them: the resume of a training run, and :func:`load` for inference.

Resume (:func:`restore_newest`, behind ``Checkpointer.restore``) looks in the local folder, in the attached inputs
(the mirror dataset, an earlier notebook's output) and in the mirror's latest remote copy, and loads the newest
checkpoint that verifies; on a tie the nearer source wins. A checkpoint restored from elsewhere is copied into the
local folder, so this session's output carries it even if the session dies before its next save.

:func:`load` is the inference side: one call that finds the best (or newest) checkpoint in a folder or an attached
input and loads its weights into a model.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kaggle_kit.checkpoint.codec import apply_rng_state, decode, shape_differences, tensor_shapes, unwrap_model
from kaggle_kit.checkpoint.format import (
    MANIFEST_GLOB,
    CheckpointInfo,
    copy_checkpoint,
    info_from_manifest,
    read_checkpoint,
    scan_folder,
    step_of,
)
from kaggle_kit.checkpoint.mirror_protocol import CheckpointMirror
from kaggle_kit.errors import CheckpointError, HandleError, KaggleKitError

if TYPE_CHECKING:
    import torch

__all__ = ["Restored", "load", "restore_newest", "load_model_state", "INPUT_SEARCH_DEPTH", "SOURCE_RANK"]

# The search of attached inputs stops this deep: notebook outputs keep their folders, datasets are flat.
INPUT_SEARCH_DEPTH = 4
# On a tie in steps the nearer source wins.
SOURCE_RANK = {"local": 0, "input": 1, "mirror": 2}


@dataclasses.dataclass(frozen=True)
class Restored:
    """What ``Checkpointer.restore`` or :func:`load` loaded.

    Attributes:
        step: optimizer steps completed; continue with step ``step + 1``.
        epoch: the epoch in progress.
        source: "local", "input" or "mirror".
        path: the manifest that was loaded.
        data_state: the data order state saved with it (where in the epoch to continue).
        extra: caller state saved with it.
        metrics: the metrics saved with it.
        best_metric: the best monitored value so far, or None.
        best_step: the step of the best checkpoint so far, or None.
        config_hash: the hash of the config it was trained with.
        versions: torch, timm, kit, numpy and python versions that wrote it.
        best_name: the name of the best checkpoint so far, or None.
    """

    step: int
    epoch: int
    source: str
    path: Path
    data_state: dict[str, Any]
    extra: dict[str, Any]
    metrics: dict[str, Any]
    best_metric: float | None
    best_step: int | None
    config_hash: str | None
    versions: dict[str, str]
    best_name: str | None = None


def load_model_state(
    model: torch.nn.Module, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], where: str, *,
    force: bool,
) -> bool:
    """Load a checkpoint's model weights into ``model`` (wrappers looked through).

    Returns:
        True when tensors were skipped because their shapes differ (only with ``force``).

    Raises:
        CheckpointError: the checkpoint holds no model, or does not fit this one (unless ``force``).
    """
    saved = decode(state.get("model"), tensors, where)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: holds no model state; pass model=None or use another checkpoint")
    target = unwrap_model(model)
    own = target.state_dict()
    recorded = state.get("model_shapes")
    diffs = shape_differences(recorded if isinstance(recorded, dict) else tensor_shapes(saved), tensor_shapes(own))
    if diffs and not force:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise CheckpointError(
            f"{where} does not fit this model: {shown}. The config changed the architecture; start a "
            "fresh run in another checkpoint folder, or pass force=True to load the matching tensors only"
        )
    if diffs:
        saved = {k: v for k, v in saved.items() if k in own and list(v.shape) == list(own[k].shape)}
        warnings.warn(f"{where}: force=True, skipped {len(diffs)} mismatched tensors", stacklevel=3)
    ordered: Any = type(own)(saved) if hasattr(own, "_metadata") else saved
    metadata = state.get("model_metadata")
    if isinstance(metadata, dict) and metadata:
        # torch keeps the per-module state versions of a state dict in this attribute of the dict itself.
        setattr(ordered, "_metadata", decode(metadata, {}, where))
    try:
        target.load_state_dict(ordered, strict=not diffs)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} does not fit this model ({exc})") from exc
    return bool(diffs)


def _restored(info: CheckpointInfo, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Restored:
    where = str(info.manifest_path)
    recorded = state.get("best")
    best: Mapping[str, Any] = recorded if isinstance(recorded, dict) else {}
    metrics = decode(state.get("metrics") or {}, tensors, where)
    best_name = best.get("name")
    best_value = best.get("value")
    best_step = best.get("step")
    versions = state.get("versions")
    return Restored(
        step=info.step,
        epoch=info.epoch,
        source=info.source,
        path=info.manifest_path,
        data_state=decode(state.get("data_state") or {}, tensors, where),
        extra=decode(state.get("extra") or {}, tensors, where),
        metrics=metrics if isinstance(metrics, dict) else {},
        best_metric=float(best_value) if isinstance(best_value, (int, float)) else None,
        best_step=best_step if isinstance(best_step, int) else None,
        config_hash=state.get("config_hash") if isinstance(state.get("config_hash"), str) else None,
        versions=dict(versions) if isinstance(versions, dict) else {},
        best_name=best_name if isinstance(best_name, str) and step_of(best_name) is not None else None,
    )


def _config_changes(old: Any, new: Any, prefix: str = "") -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "" if old == new else (prefix or "config")
    changes = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in old or key not in new:
            changes.append(path)
        elif old[key] != new[key]:
            changes.append(_config_changes(old[key], new[key], path) or path)
    return ", ".join(c for c in changes if c)[:400]


def _apply_state(
    info: CheckpointInfo,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    *,
    model: torch.nn.Module | None,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    force: bool,
    config: Any,
    config_hash: str | None,
) -> Restored:
    """Load a verified checkpoint into the training objects and the RNGs."""
    where = str(info.manifest_path)
    if state.get("config_hash") and config_hash and state["config_hash"] != config_hash:
        changed = _config_changes(state.get("config"), config)
        warnings.warn(
            f"{where}: written with a different config (hash {state['config_hash']} vs {config_hash}"
            f"{'; changed: ' + changed if changed else ''}); resuming anyway",
            stacklevel=4,
        )
    model_changed = False
    if model is not None:
        model_changed = load_model_state(model, state, tensors, where, force=force)
    for label, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        saved = state.get(label)
        if saved is None:
            raise CheckpointError(
                f"{where}: has no {label} state but a {label} was passed; pass {label}=None to skip it"
            )
        if label == "optimizer" and model_changed:
            # Optimizer state is indexed by parameter: after a forced load of a changed model it no longer lines up.
            warnings.warn(f"{where}: force=True with a changed model, optimizer state left fresh", stacklevel=4)
            continue
        try:
            obj.load_state_dict(decode(saved, tensors, where))
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{where}: the {label} state does not fit ({exc})") from exc
    rng = state.get("rng")
    if isinstance(rng, dict):
        apply_rng_state(decode(rng, tensors, where), where)
    return _restored(info, state, tensors)


def _input_candidates(*, exclude: Path, mirror_handle: str | None) -> list[CheckpointInfo]:
    from kaggle_kit import env

    roots: list[Path] = []
    if mirror_handle is not None:
        try:
            roots.append(env.find_input(mirror_handle, kind="dataset"))
        except KaggleKitError:
            pass  # not attached is the common case; attached_inputs() covers the rest
    try:
        # Competition data never holds checkpoints; skipping it spares a walk over thousands of images.
        roots.extend(Path(i.path) for i in env.attached_inputs() if i.kind != "competition")
    except OSError as exc:
        warnings.warn(f"could not list attached inputs: {exc}", stacklevel=4)
    seen: set[Path] = set()
    found: list[CheckpointInfo] = []
    for root in roots:
        resolved = root.resolve()
        if resolved in seen or resolved == exclude.resolve():
            continue
        seen.add(resolved)
        found.extend(scan_folder(root, "input", depth=INPUT_SEARCH_DEPTH))
    return found


def _mirror_candidates(mirror: CheckpointMirror, pointer: Mapping[str, Any], dest: Path) -> list[CheckpointInfo]:
    names = [n for n in (pointer.get("latest"), pointer.get("best")) if isinstance(n, str) and step_of(n) is not None]
    version = pointer.get("version") if isinstance(pointer.get("version"), int) else None
    found: list[CheckpointInfo] = []
    for name in dict.fromkeys(names):
        try:
            manifest = mirror.download_checkpoint(name, dest, version=version)
            found.append(info_from_manifest(Path(manifest), "mirror"))
        except Exception as exc:  # noqa: BLE001 - a failed download means "not available", never a crash
            warnings.warn(f"could not fetch checkpoint {name} from {mirror.handle}: {exc}", stacklevel=4)
    return found


def _adopt(info: CheckpointInfo, candidates: Sequence[CheckpointInfo], directory: Path,
           mirror: CheckpointMirror | None) -> None:
    """Copy a restored checkpoint (and the best one beside it) into the local folder.

    So the next session still finds it if this one dies before its next save, and so every version the mirror
    uploads still carries the best checkpoint.
    """
    wanted = [info]
    if info.best_name and info.best_name != info.name:
        best = next((c for c in candidates if c.name == info.best_name and c.folder == info.folder), None)
        if best is not None:
            wanted.append(best)
    for item in wanted:
        if (directory / item.manifest_path.name).exists():
            continue
        try:
            read_checkpoint(item)
            copy_checkpoint(item, directory, durable=True)
        except (CheckpointError, OSError) as exc:
            warnings.warn(f"could not copy {item.name} into {directory}: {exc}", stacklevel=4)
    if mirror is not None:
        mirror.seed_ledger(info.folder)


def restore_newest(
    directory: Path,
    *,
    mirror: CheckpointMirror | None,
    model: torch.nn.Module | None,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    force: bool,
    search_inputs: bool,
    search_mirror: bool,
    config: Any,
    config_hash: str | None,
) -> Restored | None:
    """Load the newest checkpoint that verifies, from ``directory``, the attached inputs or the mirror.

    The arguments are those of ``Checkpointer.restore``, plus the checkpointer's folder, mirror and config.

    Returns:
        None when no usable checkpoint exists, else what was restored.
    """
    candidates = scan_folder(directory, "local")
    if search_inputs:
        candidates.extend(_input_candidates(exclude=directory, mirror_handle=mirror.handle if mirror else None))
    remote: Mapping[str, Any] | None = None
    if search_mirror and mirror is not None and mirror.enabled:
        remote = mirror.remote_pointer()
    newest_local = max((c.step for c in candidates), default=-1)
    tried: set[tuple[str, int]] = set()
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-restore-") as tmp:
        if mirror is not None and remote is not None and int(remote.get("step", -1)) > newest_local:
            candidates.extend(_mirror_candidates(mirror, remote, Path(tmp)))
        candidates.sort(key=lambda c: (-c.step, SOURCE_RANK[c.source]))
        for info in candidates:
            if (info.source, info.step) in tried:
                continue
            tried.add((info.source, info.step))
            try:
                state, tensors = read_checkpoint(info)
            except CheckpointError as exc:
                warnings.warn(f"skipping checkpoint {info.manifest_path}: {exc}", stacklevel=3)
                continue
            restored = _apply_state(info, state, tensors, model=model, optimizer=optimizer, scheduler=scheduler,
                                    scaler=scaler, force=force, config=config, config_hash=config_hash)
            if info.source != "local":
                _adopt(info, candidates, directory, mirror)
            return restored
    return None


def _search_roots(path_or_dataset: str | os.PathLike[str] | None) -> tuple[list[Path], str, str]:
    """The folders to search, the source label, and a description of where that is (for errors)."""
    from kaggle_kit import env
    from kaggle_kit.handles import parse_dataset, parse_kernel

    if path_or_dataset is None:
        roots = [Path(i.path) for i in env.attached_inputs() if i.kind != "competition"]
        looked = ", ".join(str(r) for r in roots) if roots else f"nothing is attached under {env.input_dir()}"
        return roots, "input", f"the attached inputs ({looked}; competitions are not searched)"
    if not isinstance(path_or_dataset, (str, os.PathLike)):
        raise CheckpointError(
            f"load({path_or_dataset!r}): pass a checkpoint folder, an attached dataset's owner/slug, or None"
        )
    path = Path(path_or_dataset)
    if isinstance(path_or_dataset, os.PathLike) or path.exists() or path.is_absolute():
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {path} does not exist or is not a folder: pass the folder that "
                                  "holds the step-*.manifest.json files, or an attached dataset's owner/slug")
        return [path], "local", str(path)
    try:
        handle = parse_dataset(path_or_dataset, what="checkpoint dataset").cli_ref
    except HandleError as exc:
        try:
            handle = parse_kernel(path_or_dataset, what="training notebook").cli_ref
        except HandleError:
            raise CheckpointError(f"{path_or_dataset!r} is neither an existing folder nor a dataset handle "
                                  f"({exc})") from exc
    # find_input raises InputNotFoundError listing every place it looked; a notebook output works too.
    root = env.find_input(handle)
    return [root], "input", f"{root} (the attached {handle})"


def _load_order(candidates: list[CheckpointInfo], which: str) -> list[CheckpointInfo]:
    """The checkpoints to try in order: for "best", the one the newest manifest names as best comes first."""
    if which == "newest" or candidates[0].best_name is None:
        return candidates
    newest = candidates[0]
    named = [c for c in candidates if c.name == newest.best_name]
    # The newest's own folder first: another folder's checkpoint of that name may belong to another run.
    named.sort(key=lambda c: (c.folder != newest.folder,
                              c.manifest.get("config_hash") != newest.manifest.get("config_hash")))
    if not named:
        warnings.warn(f"the best checkpoint {newest.best_name} named by {newest.manifest_path} is not there; "
                      "loading the newest instead", RuntimeWarning, stacklevel=3)
    return named + [c for c in candidates if c not in named]


def load(
    path_or_dataset: str | os.PathLike[str] | None = None,
    *,
    model: torch.nn.Module,
    which: Literal["best", "newest"] = "best",
    force: bool = False,
) -> Restored:
    """Find a checkpoint and load its weights into ``model``, in one call (inference).

    Args:
        path_or_dataset: a folder holding checkpoints (searched four folder levels deep; a string is a folder
            when one exists there, or when it is absolute); or the handle ``owner/slug[/N]`` of an attached dataset
            or notebook output, under either input layout; or None for every attached input but the competition
            data.
        model: the model to load into (DataParallel, DDP and ``torch.compile`` wrappers are looked through).
        which: ``"best"``, the best checkpoint by the run's monitored metric, as the newest checkpoint names it
            (the newest when the run monitored nothing); or ``"newest"``.
        force: when shapes differ, load the matching tensors only instead of refusing.

    Returns:
        What was loaded: step, epoch, path, metrics, best metric. Only the weights are loaded: no optimizer,
        no RNG state.

    Raises:
        CheckpointError: nothing usable was found (the message says where it looked), or the checkpoint does not
            fit the model.
        InputNotFoundError: the handle is not attached (the message lists every place looked at).
    """
    if which not in ("best", "newest"):
        raise CheckpointError(f"which={which!r}: use 'best' or 'newest'")
    if not callable(getattr(model, "state_dict", None)) or not callable(getattr(model, "load_state_dict", None)):
        raise CheckpointError(f"model={type(model).__name__}: pass the torch.nn.Module to load the weights into")
    roots, source, where = _search_roots(path_or_dataset)
    candidates: list[CheckpointInfo] = []
    for root in dict.fromkeys(r.resolve() for r in roots):
        candidates.extend(scan_folder(root, source, depth=INPUT_SEARCH_DEPTH))
    candidates.sort(key=lambda c: -c.step)
    if not candidates:
        raise CheckpointError(
            f"no checkpoint ({MANIFEST_GLOB}) in {where}: attach the checkpoint dataset or the output of a training "
            "run that saved one, or pass the folder that holds them"
        )
    problems: list[str] = []
    for info in _load_order(candidates, which):
        try:
            state, tensors = read_checkpoint(info)
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint {info.manifest_path}: {exc}", stacklevel=2)
            problems.append(str(exc))
            continue
        load_model_state(model, state, tensors, str(info.manifest_path), force=force)
        return _restored(info, state, tensors)
    raise CheckpointError(f"no checkpoint in {where} verifies: " + "; ".join(problems[:4]))
