"""Finding checkpoints and loading them: the resume of a training run, and :func:`load` for inference.

Resume (:func:`restore_newest`, behind ``Checkpointer.restore``) resumes only its own run (see
:mod:`kaggle_kit.checkpoint.identity`). It looks, in this order of preference on a tie in steps, in:

1. the local checkpoint folder;
2. the inputs the caller names (``resume_inputs``: an earlier session's output, a dataset) and the run's mirror
   dataset when it is attached;
3. the run's mirror dataset through the API (a checkpoint there is downloaded only when it is tried).

It loads the newest checkpoint of the run that verifies; a checkpoint that fails any check is skipped with a warning
naming it, and the next one is tried. When the run has no checkpoint, it adopts one on purpose from ``resume_from``,
or, with a warning, one written before run ids existed when nothing else was found. Checkpoints of other runs are
never loaded: a warning lists them (run, step, where) and says how to adopt one. A checkpoint restored from
elsewhere is copied into the local folder, so this session's output carries it even if the session dies before its
next save.

Nothing is applied before the whole checkpoint has been read and checked (:mod:`kaggle_kit.checkpoint.validate`),
and if applying fails midway, the model, optimizer, scheduler, scaler and RNGs are put back as they were.

:func:`load` is the inference side: one call that finds the best (or newest) checkpoint in a folder or an attached
input and loads its weights into a model.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from kaggle_kit.checkpoint.codec import apply_rng_state, shape_differences, tensor_shapes, unwrap_model
from kaggle_kit.checkpoint.format import (
    MANIFEST_GLOB,
    MANIFEST_SUFFIX,
    CheckpointInfo,
    checkpoint_files,
    copy_checkpoint,
    copy_checkpoint_as,
    info_from_manifest,
    scan_folder,
    step_of,
)
from kaggle_kit.checkpoint.mirror_protocol import CheckpointMirror
from kaggle_kit.checkpoint.validate import PreparedCheckpoint, prepare
from kaggle_kit.errors import CheckpointError, HandleError, InputNotFoundError
from kaggle_kit.notify import loud_warning

if TYPE_CHECKING:
    import torch

__all__ = [
    "Restored",
    "load",
    "restore_newest",
    "apply_checkpoint",
    "resolve_checkpoint_source",
    "INPUT_SEARCH_DEPTH",
    "SOURCE_RANK",
]

# The search of inputs stops this deep: notebook outputs keep their folders, datasets are flat.
INPUT_SEARCH_DEPTH = 4
# On a tie in steps the nearer source wins.
SOURCE_RANK = {"local": 0, "input": 1, "mirror": 2, "adopted": 3}
LEGACY_RUN = "written before run ids existed"


@dataclasses.dataclass(frozen=True)
class Restored:
    """What ``Checkpointer.restore`` or :func:`load` loaded.

    Attributes:
        step: optimizer steps completed; continue with step ``step + 1``.
        epoch: the epoch in progress.
        source: "local", "input", "mirror", or "adopted" (from ``resume_from``).
        path: the manifest that was loaded.
        data_state: the data order state saved with it (where in the epoch to continue).
        extra: caller state saved with it.
        metrics: the metrics saved with it.
        best_metric: the best monitored value so far, or None.
        best_step: the step of the best checkpoint so far, or None.
        config_hash: the hash of the config it was trained with.
        versions: torch, timm, kit, numpy and python versions that wrote it.
        best_name: the name of the best checkpoint so far, or None.
        run_id: the run the checkpoint belongs to (None: written before run ids existed).
        adopted_from: when this run adopted another run's checkpoint (``resume_from``, or one written before run
            ids existed), that run's id or "written before run ids existed"; None otherwise.
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
    run_id: str | None = None
    adopted_from: str | None = None


def _describe_run(run_id: str | None) -> str:
    return f"run {run_id!r}" if run_id is not None else LEGACY_RUN


def _fit_model(model: torch.nn.Module, prepared: PreparedCheckpoint, *, force: bool) -> tuple[Any, bool]:
    """The state dict to load into ``model`` and whether tensors were left out (``force`` with other shapes).

    Raises:
        CheckpointError: the checkpoint holds no model, or does not fit this one (unless ``force``).
    """
    saved, where = prepared.model, prepared.where
    if saved is None:
        raise CheckpointError(f"{where}: holds no model state; pass model=None or use another checkpoint")
    own = unwrap_model(model).state_dict()
    recorded = prepared.model_shapes if prepared.model_shapes is not None else tensor_shapes(saved)
    diffs = shape_differences(recorded, tensor_shapes(own))
    # The recorded shapes must be those of the tensors themselves, or a forged record could hide a mismatch.
    diffs += [f"{key}: recorded {recorded[key]} but stored {list(v.shape)}" for key, v in saved.items()
              if key in recorded and list(recorded[key]) != list(v.shape)]
    if diffs and not force:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise CheckpointError(
            f"{where} does not fit this model: {shown}. The config changed the architecture; start a "
            "fresh run in another checkpoint folder, or pass force=True to load the matching tensors only"
        )
    if diffs:
        saved = {k: v for k, v in saved.items() if k in own and list(v.shape) == list(own[k].shape)}
        warnings.warn(f"{where}: force=True, skipped {len(diffs)} mismatched tensors", stacklevel=4)
    ordered: Any = type(own)(saved) if hasattr(own, "_metadata") else dict(saved)
    if prepared.model_metadata:
        # torch keeps the per-module state versions of a state dict in this attribute of the dict itself.
        setattr(ordered, "_metadata", prepared.model_metadata)
    return ordered, bool(diffs)


def _check_optimizer_fits(optimizer: Any, saved: Mapping[str, Any], where: str) -> None:
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise CheckpointError(f"{where}: the optimizer state lacks param_groups with params, or state")
    own = optimizer.param_groups
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in own]:
        raise CheckpointError(
            f"{where}: the optimizer state does not fit: {len(groups)} parameter groups of "
            f"{[len(g['params']) for g in groups]} parameters, this optimizer has {len(own)} of "
            f"{[len(g['params']) for g in own]}"
        )


def _check_like(label: str, current: Mapping[str, Any], saved: Mapping[str, Any], where: str) -> None:
    """The saved state's values have the types the object's own state dict has (a number stays a number)."""
    for key, own in current.items():
        if key not in saved or own is None or saved[key] is None:
            continue
        value = saved[key]
        if isinstance(own, bool) or isinstance(value, bool):
            same = isinstance(own, bool) == isinstance(value, bool)
        elif isinstance(own, (int, float)):
            same = isinstance(value, (int, float))
        elif isinstance(own, (str, list, tuple, dict)):
            same = isinstance(value, (list, tuple) if isinstance(own, (list, tuple)) else type(own))
        else:
            same = True
        if not same:
            raise CheckpointError(f"{where}: the {label} state does not fit: {key} is a {type(value).__name__}, "
                                  f"this {label} holds a {type(own).__name__}")


def _cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (a backup that costs no accelerator memory)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copied = type(value)((k, _cpu_copy(v)) for k, v in value.items()) if type(value) is not dict else {
            k: _cpu_copy(v) for k, v in value.items()}
        if hasattr(value, "_metadata"):
            setattr(copied, "_metadata", copy.deepcopy(getattr(value, "_metadata")))
        return copied
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


def _rng_backup() -> Callable[[], None]:
    import torch

    python, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def put_back() -> None:
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    return put_back


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


def _warn_config_change(prepared: PreparedCheckpoint, config: Any, config_hash: str | None) -> None:
    if prepared.config_hash and config_hash and prepared.config_hash != config_hash:
        changed = _config_changes(prepared.config, config)
        warnings.warn(
            f"{prepared.where}: written with a different config (hash {prepared.config_hash} vs {config_hash}"
            f"{'; changed: ' + changed if changed else ''}); resuming anyway",
            stacklevel=5,
        )


def _restored(prepared: PreparedCheckpoint, *, source: str | None = None,
              adopted_from: str | None = None) -> Restored:
    info, best = prepared.info, prepared.best
    return Restored(
        step=info.step,
        epoch=info.epoch,
        source=source or info.source,
        path=info.manifest_path,
        data_state=prepared.data_state,
        extra=prepared.extra,
        metrics=prepared.metrics,
        best_metric=best["value"],
        best_step=best["step"],
        config_hash=prepared.config_hash,
        versions=prepared.versions,
        best_name=best["name"],
        run_id=info.run_id,
        adopted_from=adopted_from,
    )


def apply_checkpoint(
    prepared: PreparedCheckpoint,
    *,
    model: torch.nn.Module | None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    force: bool = False,
    rng: bool = True,
    config: Any = None,
    config_hash: str | None = None,
) -> None:
    """Load a prepared checkpoint into the training objects and the RNGs: all of it, or none of it.

    Everything that can be checked against the objects is checked first; if loading still fails midway, what was
    loaded is put back from a backup before the error is raised.

    Raises:
        CheckpointError: the checkpoint does not fit the objects passed (named); nothing was changed.
    """
    where = prepared.where
    _warn_config_change(prepared, config, config_hash)
    parts: list[tuple[str, Any, Any]] = []
    model_changed = False
    if model is not None:
        ordered, model_changed = _fit_model(model, prepared, force=force)
        parts.append(("model", unwrap_model(model), (ordered, not model_changed)))
    for label, obj, saved in (("optimizer", optimizer, prepared.optimizer), ("scheduler", scheduler,
                              prepared.scheduler), ("scaler", scaler, prepared.scaler)):
        if obj is None:
            continue
        if saved is None:
            raise CheckpointError(f"{where}: has no {label} state but a {label} was passed; pass {label}=None to "
                                  "skip it")
        if label == "optimizer" and model_changed:
            # Optimizer state is indexed by parameter: after a forced load of a changed model it no longer lines up.
            warnings.warn(f"{where}: force=True with a changed model, optimizer state left fresh", stacklevel=3)
            continue
        if label == "optimizer":
            _check_optimizer_fits(obj, saved, where)
        else:
            _check_like(label, obj.state_dict(), saved, where)
        parts.append((label, obj, saved))
    backups = [(label, obj, _cpu_copy(obj.state_dict())) for label, obj, _ in parts]
    put_back_rng = _rng_backup()
    done: list[int] = []
    try:
        for index, (label, obj, saved) in enumerate(parts):
            if label == "model":
                state_dict, strict = saved
                obj.load_state_dict(state_dict, strict=strict)
            else:
                obj.load_state_dict(copy.copy(saved))
            done.append(index)
        if rng and prepared.rng is not None:
            apply_rng_state(prepared.rng, where)
    except Exception as exc:  # noqa: BLE001 - whatever failed, the objects go back to how they were, then it is named
        for index in reversed(done):
            label, obj, backup = backups[index]
            if backup or label == "model":
                obj.load_state_dict(backup)
        put_back_rng()
        failed = parts[len(done)][0] if len(done) < len(parts) else "RNG"
        raise CheckpointError(f"{where}: the {failed} state does not fit ({type(exc).__name__}: {str(exc)[:300]}); "
                              "nothing was loaded") from exc


def _names_a_folder(entry: str | os.PathLike[str]) -> bool:
    """A path-like, or a string naming an existing or absolute path (else it is an input handle)."""
    return isinstance(entry, os.PathLike) or Path(entry).exists() or Path(entry).is_absolute()


def resolve_checkpoint_source(entry: str | os.PathLike[str], *, what: str) -> Path:
    """The folder a checkpoint source names: a folder, or the handle of an attached dataset or notebook output.

    Args:
        entry: a folder (a path-like, or a string naming an existing or absolute path), or ``owner/slug[/N]``.
        what: the argument, for messages (e.g. ``"resume_from"``).

    Raises:
        CheckpointError: not a folder and not a handle.
        InputNotFoundError: a handle that is not attached (the message lists every place looked at).
    """
    from kaggle_kit import env
    from kaggle_kit.handles import parse_dataset, parse_kernel

    if not isinstance(entry, (str, os.PathLike)):
        raise CheckpointError(f"{what}={entry!r}: pass a checkpoint folder or an attached input's owner/slug")
    path = Path(entry)
    if _names_a_folder(entry):
        if not path.is_dir():
            raise CheckpointError(f"{what}: checkpoint folder {path} does not exist or is not a folder: pass the "
                                  "folder that holds the step-*.manifest.json files, or an attached input's owner/slug")
        return path
    try:
        handle = parse_dataset(entry, what="checkpoint dataset").cli_ref
    except HandleError as exc:
        try:
            handle = parse_kernel(entry, what="training notebook").cli_ref
        except HandleError:
            raise CheckpointError(f"{what}: {entry!r} is neither an existing folder nor a dataset handle "
                                  f"({exc})") from exc
    return env.find_input(handle)


def _input_candidates(
    entries: Sequence[str | os.PathLike[str]], *, exclude: Path, mirror_handle: str | None
) -> list[CheckpointInfo]:
    """Checkpoints in the inputs the caller named and in the run's mirror dataset, when attached."""
    from kaggle_kit import env

    roots: list[Path] = []
    if mirror_handle is not None:
        try:
            roots.append(env.find_input(mirror_handle, kind="dataset"))
        except (InputNotFoundError, HandleError):
            pass  # a mirror dataset that is not attached is read through the API instead
    for entry in entries:
        try:
            roots.append(resolve_checkpoint_source(entry, what="resume_inputs"))
        except (CheckpointError, InputNotFoundError) as exc:
            warnings.warn(f"resume input {entry!s} is not searched: {exc}", RuntimeWarning, stacklevel=4)
    seen: set[Path] = set()
    found: list[CheckpointInfo] = []
    for root in roots:
        resolved = root.resolve()
        if resolved in seen or resolved == exclude.resolve():
            continue
        seen.add(resolved)
        found.extend(scan_folder(root, "input", depth=INPUT_SEARCH_DEPTH))
    return found


@dataclasses.dataclass
class _Remote:
    """One checkpoint the mirror's newest version lists, fetched only when it is tried."""

    name: str
    step: int
    run_id: str | None
    fetch: Callable[[], CheckpointInfo]
    source: str = "mirror"
    where: str = ""


def _mirror_entries(mirror: CheckpointMirror, pointer: Mapping[str, Any], dest: Path) -> list[_Remote]:
    listed = pointer.get("checkpoints") or [pointer.get("latest"), pointer.get("best")]
    names = [n for n in listed if isinstance(n, str) and step_of(n) is not None]
    version = pointer.get("version") if isinstance(pointer.get("version"), int) else None
    run_id = pointer.get("run_id") if isinstance(pointer.get("run_id"), str) else None
    where = f"{mirror.handle}" + (f" version {version}" if version else "")

    def fetcher(name: str) -> Callable[[], CheckpointInfo]:
        def fetch() -> CheckpointInfo:
            manifest = mirror.download_checkpoint(name, dest, version=version)
            return info_from_manifest(Path(manifest), "mirror")
        return fetch

    return [_Remote(n, step_of(n) or 0, run_id, fetcher(n), where=where) for n in dict.fromkeys(names)]


def _found_line(item: CheckpointInfo | _Remote) -> str:
    where = item.where if isinstance(item, _Remote) else str(item.manifest_path)
    return f"{_describe_run(item.run_id)}, step {item.step}, in {where}"


def _adopt_locally(info: CheckpointInfo, directory: Path, *, run_id: str, mirror: CheckpointMirror | None) -> None:
    """Copy a restored checkpoint (and the best one beside it) into the local folder, as this run's.

    So the next session still finds it if this one dies before its next save, and so every version the mirror
    uploads still carries the best checkpoint.
    """
    wanted = [info]
    if info.best_name and info.best_name != info.name:
        best_manifest = info.folder / checkpoint_files(info.best_name)[2]
        try:
            wanted.append(info_from_manifest(best_manifest, info.source))
        except CheckpointError:
            pass  # not beside it (a mirror version with only the newest, or an input without it)
    for item in wanted:
        try:
            if item.run_id == run_id:
                if item.folder.resolve() != directory.resolve():
                    copy_checkpoint(item, directory, durable=True)
            else:
                copy_checkpoint_as(item, directory, run_id=run_id)
        except (CheckpointError, OSError) as exc:
            warnings.warn(f"could not copy {item.name} into {directory}: {exc}", stacklevel=4)
    if mirror is not None and info.source != "local":
        mirror.seed_ledger(info.folder)


def _try(candidates: Sequence[CheckpointInfo | _Remote], attempt: Callable[[PreparedCheckpoint], Restored],
         problems: list[str], *, run_id: str | None = None,
         elsewhere: list[CheckpointInfo] | None = None) -> Restored | None:
    """Prepare and apply the candidates in order; a bad one is skipped with a warning naming it.

    With ``run_id``, a fetched mirror checkpoint whose manifest names another run is not applied but put into
    ``elsewhere`` (its pointer did not say, or said otherwise).
    """
    for item in candidates:
        where = f"{item.name} from {item.where}" if isinstance(item, _Remote) else str(item.manifest_path)
        try:
            info = item.fetch() if isinstance(item, _Remote) else item
            if run_id is not None and info.run_id != run_id and elsewhere is not None:
                elsewhere.append(info)
                continue
            prepared = prepare(info)
        except Exception as exc:  # noqa: BLE001 - a checkpoint that cannot be fetched or checked is skipped
            warnings.warn(f"skipping checkpoint {where}: {exc}", stacklevel=4)
            problems.append(f"{where}: {exc}")
            continue
        return attempt(prepared)
    return None


def restore_newest(
    directory: Path,
    *,
    run_id: str,
    mirror: CheckpointMirror | None,
    resume_inputs: Sequence[str | os.PathLike[str]] = (),
    resume_from: str | os.PathLike[str] | None = None,
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
    """Load the newest checkpoint of run ``run_id`` that verifies, from the sources the module docstring lists.

    The arguments are those of ``Checkpointer.restore``, plus the checkpointer's folder, run, mirror, inputs and
    config.

    Returns:
        None when the run has no usable checkpoint (a fresh start), else what was restored.

    Raises:
        CheckpointError: the newest usable checkpoint does not fit the objects passed (nothing was loaded).
    """
    found = scan_folder(directory, "local")
    if search_inputs:
        found += _input_candidates(resume_inputs, exclude=directory, mirror_handle=mirror.handle if mirror else None)
    problems: list[str] = []

    def attempt(source: str | None = None, adopted_from: str | None = None) -> Callable[[PreparedCheckpoint],
                                                                                         Restored]:
        def run(prepared: PreparedCheckpoint) -> Restored:
            apply_checkpoint(prepared, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                             force=force, config=config, config_hash=config_hash)
            info = prepared.info
            if info.source == "mirror" and info.best_name and info.best_name != info.name:
                # The best comes along (fetched beside it), so the next version uploaded still carries it.
                for entry in remote:
                    if entry.name == info.best_name and not (info.folder / f"{entry.name}{MANIFEST_SUFFIX}").exists():
                        try:
                            entry.fetch()
                        except Exception as exc:  # noqa: BLE001 - the resume stands without it
                            warnings.warn(f"could not fetch the best checkpoint {entry.name}: {exc}", stacklevel=4)
            if info.source != "local" or info.run_id != run_id:
                _adopt_locally(info, directory, run_id=run_id, mirror=mirror)
            return _restored(prepared, source=source, adopted_from=adopted_from)
        return run

    with tempfile.TemporaryDirectory(prefix="kaggle-kit-restore-") as tmp:
        remote: list[_Remote] = []
        if search_mirror and mirror is not None and mirror.enabled:
            pointer = mirror.remote_pointer()
            if pointer is not None:
                remote = _mirror_entries(mirror, pointer, Path(tmp))
        own: list[CheckpointInfo | _Remote] = [c for c in found if c.run_id == run_id]
        # A mirror checkpoint is downloaded only when it is tried: when nothing nearer holds its step or a newer
        # one that verifies. The pointer says whose run it holds; one that does not say (written before run ids,
        # or rebuilt from the file list) is fetched to find out.
        own += [r for r in remote if r.run_id in (run_id, None)]
        own.sort(key=lambda c: (-c.step, SOURCE_RANK[c.source]))
        fetched: list[CheckpointInfo] = []
        restored = _try(own, attempt(), problems, run_id=run_id, elsewhere=fetched)
        if restored is not None:
            return restored
        legacy: list[CheckpointInfo | _Remote] = [c for c in found + fetched if c.run_id is None]
        foreign: list[CheckpointInfo | _Remote] = [c for c in found + fetched if c.run_id not in (run_id, None)]
        foreign += [r for r in remote if r.run_id not in (run_id, None)]
        if resume_from is not None:
            root = resolve_checkpoint_source(resume_from, what="resume_from")
            chosen = scan_folder(root, "adopted", depth=INPUT_SEARCH_DEPTH)
            if not chosen:
                raise CheckpointError(f"resume_from={str(resume_from)!r}: no checkpoint ({MANIFEST_GLOB}) in {root}")
            chosen.sort(key=lambda c: -c.step)
            restored = _try(chosen, _adopting(attempt, run_id), problems)
            if restored is not None:
                return restored
            raise CheckpointError(f"resume_from={str(resume_from)!r}: no checkpoint in {root} verifies: "
                                  + "; ".join(problems[-4:]))
        if legacy and not foreign:
            legacy.sort(key=lambda c: (-c.step, SOURCE_RANK[c.source]))
            restored = _try(legacy, _adopting(attempt, run_id), problems)
            if restored is not None:
                return restored
        if foreign or legacy:
            _report_others(run_id, foreign + legacy)
        elif problems:
            loud_warning(f"run {run_id!r} starts fresh: none of its {len(problems)} checkpoints verifies ("
                         + "; ".join(problems[:3]) + ")")
    return None


def _adopting(attempt: Callable[..., Callable[[PreparedCheckpoint], Restored]],
              run_id: str) -> Callable[[PreparedCheckpoint], Restored]:
    """Apply a checkpoint of another run (or of none) as this run's, saying so."""
    def run(prepared: PreparedCheckpoint) -> Restored:
        info = prepared.info
        origin = _describe_run(info.run_id)
        source = "adopted" if info.source == "adopted" else None
        restored = attempt(source, info.run_id or LEGACY_RUN)(prepared)
        why = ("as resume_from asked" if info.source == "adopted"
               else "because it is the only checkpoint found; pass resume_from to choose another")
        warnings.warn(f"run {run_id!r} adopts {info.manifest_path} ({origin}, step {info.step}) {why}; its "
                      "next checkpoints belong to this run", RuntimeWarning, stacklevel=5)
        return restored
    return run


def _report_others(run_id: str, others: Sequence[CheckpointInfo | _Remote]) -> None:
    """Say loudly which checkpoints of other runs were found and left alone, and how to adopt one."""
    ordered = sorted(others, key=lambda c: -c.step)
    lines = "\n  ".join(_found_line(c) for c in ordered[:8])
    more = f"\n  and {len(ordered) - 8} more" if len(ordered) > 8 else ""
    message = (
        f"starting run {run_id!r} fresh: the checkpoints found belong to other runs and are not loaded:\n  {lines}"
        f"{more}\nTo continue one of them on purpose, pass resume_from=<its folder or input handle> to the "
        "Checkpointer (e.g. checkpointer_for_rank(..., resume_from=...)); to resume this run, name it as it was "
        "named before (the same mirror dataset and run_name)."
    )
    warnings.warn(message, RuntimeWarning, stacklevel=4)
    loud_warning(message)


def _search_roots(path_or_dataset: str | os.PathLike[str] | None) -> tuple[list[Path], str, str]:
    """The folders to search, the source label, and a description of where that is (for errors)."""
    from kaggle_kit import env

    if path_or_dataset is None:
        roots = [Path(i.path) for i in env.attached_inputs() if i.kind != "competition"]
        looked = ", ".join(str(r) for r in roots) if roots else f"nothing is attached under {env.input_dir()}"
        return roots, "input", f"the attached inputs ({looked}; competitions are not searched)"
    root = resolve_checkpoint_source(path_or_dataset, what="load")
    if _names_a_folder(path_or_dataset):
        return [root], "local", str(root)
    return [root], "input", f"{root} (the attached {path_or_dataset})"


def _load_order(candidates: list[CheckpointInfo], which: str) -> list[CheckpointInfo]:
    """The checkpoints to try in order: for "best", the one the newest manifest names as best comes first."""
    if which == "newest" or candidates[0].best_name is None:
        return candidates
    newest = candidates[0]
    named = [c for c in candidates if c.name == newest.best_name]
    # The newest's own run and folder first: another folder's checkpoint of that name may belong to another run.
    named.sort(key=lambda c: (c.run_id != newest.run_id, c.folder != newest.folder,
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

    def weights_only(prepared: PreparedCheckpoint) -> Restored:
        apply_checkpoint(prepared, model=model, force=force, rng=False)
        return _restored(prepared)

    restored = _try(_load_order(candidates, which), weights_only, problems)
    if restored is None:
        raise CheckpointError(f"no checkpoint in {where} verifies: " + "; ".join(problems[:4]))
    return restored
