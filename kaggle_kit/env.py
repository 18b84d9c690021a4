"""The Kaggle runtime in one place: where we run, the three folders, and what is attached as input.

Kaggle mounts inputs under two layouts, and both occur in the wild:

- legacy: ``input/<slug>`` for competitions, datasets, notebook outputs and models alike;
- current: ``input/competitions/<slug>``, ``input/datasets/<owner>/<slug>``,
  ``input/models/<owner>/<model>/<framework>/<variation>/<N>``, ``input/notebooks/<owner>/<slug>``.

The filesystem root is ``/kaggle`` unless ``KAGGLE_KIT_KAGGLE_ROOT`` names another folder, which is how the tests and
the offline sandbox's fallback stand a fake Kaggle up anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit import envvars
from kaggle_kit.errors import InputNotFoundError

KAGGLE_ROOT_ENV = envvars.KIT_KAGGLE_ROOT
RUN_TYPE_ENV = envvars.KERNEL_RUN_TYPE
KINDS = ("competition", "dataset", "model", "notebook")
LAYOUTS = ("current", "legacy")
_KIND_FOLDERS = {"competition": "competitions", "dataset": "datasets", "model": "models", "notebook": "notebooks"}
_LAYOUT_FOLDERS = frozenset(_KIND_FOLDERS.values())
_HANDLE_PARTS = {"competition": 1, "dataset": 2, "model": 5, "notebook": 2}


@dataclass(frozen=True)
class AttachedInput:
    """One input attached to the session: what it is, its handle, where it is mounted, under which layout."""

    kind: str | None  # None when the legacy layout cannot tell
    handle: str
    path: Path
    layout: str  # "current" or "legacy"


def kaggle_root() -> Path:
    """The Kaggle filesystem root: ``/kaggle``, or the folder ``KAGGLE_KIT_KAGGLE_ROOT`` names."""
    override = os.environ.get(KAGGLE_ROOT_ENV)
    return Path(override).expanduser() if override else Path("/kaggle")


def input_dir() -> Path:
    """Read-only inputs (competitions, datasets, models, earlier notebooks' outputs)."""
    return kaggle_root() / "input"


def working_dir() -> Path:
    """Becomes a Batch run's output; an Interactive session's copy is lost when the session ends."""
    return kaggle_root() / "working"


def temp_dir() -> Path:
    """Scratch space, never saved."""
    return kaggle_root() / "temp"


def run_type() -> str | None:
    """``"Interactive"`` or ``"Batch"`` inside a Kaggle kernel, None elsewhere."""
    value = os.environ.get(RUN_TYPE_ENV)
    return value or None


def in_kaggle() -> bool:
    """Whether this process runs inside a Kaggle kernel (or the offline sandbox, which sets the same variables)."""
    return run_type() is not None


def is_batch() -> bool:
    return run_type() == "Batch"


def mount_target(kind: str, handle: str, layout: str) -> str:
    """Where Kaggle mounts an input under ``/kaggle/input`` with the given layout (a relative path).

    Args:
        kind: one of :data:`KINDS`.
        handle: ``slug`` (competition), ``owner/slug`` (dataset, notebook), ``owner/model/framework/variation/N``
            (model).
        layout: ``"current"`` (``datasets/<owner>/<slug>``, ...) or ``"legacy"`` (``<slug>``; a model's
            ``<model>/<framework>/<variation>/<N>``).

    Raises:
        ValueError: an unknown kind or layout, or a handle with the wrong number of parts.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r}: use one of {', '.join(KINDS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown input layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    parts = handle.split("/")
    if len(parts) != _HANDLE_PARTS[kind] or not all(parts) or any(p in (".", "..") for p in parts):
        shapes = {"competition": "slug", "dataset": "owner/slug", "notebook": "owner/slug",
                  "model": "owner/model/framework/variation/N"}
        raise ValueError(f"{kind} handle {handle!r} is not {shapes[kind]}")
    if layout == "current":
        return "/".join((_KIND_FOLDERS[kind], *parts))
    return "/".join(parts[1:] if kind in ("dataset", "notebook", "model") else parts)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        return []


def attached_inputs() -> list[AttachedInput]:
    """Every input attached to the session, under either layout."""
    root = input_dir()
    found: list[AttachedInput] = []
    for top in _subdirs(root):
        if top.name not in _LAYOUT_FOLDERS:
            found.append(AttachedInput(kind=None, handle=top.name, path=top, layout="legacy"))
            continue
        kind = next(k for k, folder in _KIND_FOLDERS.items() if folder == top.name)
        depth = {"competition": 1, "dataset": 2, "notebook": 2, "model": 5}[kind]
        for path in _walk_depth(top, depth):
            handle = path.relative_to(top).as_posix()
            found.append(AttachedInput(kind=kind, handle=handle, path=path, layout="current"))
    return found


def _walk_depth(top: Path, depth: int) -> list[Path]:
    level = [top]
    for _ in range(depth):
        level = [child for parent in level for child in _subdirs(parent)]
    return level


def _candidates(handle: str, kind: str | None) -> list[Path]:
    """Where an input with this handle would be mounted, current layout first, then legacy."""
    parts = [p for p in handle.strip("/").split("/") if p]
    if parts[-1:] and parts[-1] == "versions":
        parts = parts[:-1]
    if len(parts) >= 3 and parts[-2] == "versions":  # kagglehub's owner/slug/versions/N
        parts = parts[:-2] + parts[-1:]
    root = input_dir()
    kinds = [kind] if kind else list(KINDS)
    out: list[Path] = []
    for k in kinds:
        folder = root / _KIND_FOLDERS[k]
        if k == "competition" and len(parts) == 1:
            out.append(folder / parts[0])
        elif k in ("dataset", "notebook") and len(parts) in (2, 3):
            out.append(folder / parts[0] / parts[1])
        elif k == "model" and len(parts) >= 2:
            out.append(folder.joinpath(*parts))
    # Legacy layout: the slug alone (for a model, the model name).
    if parts:
        slug = parts[0] if len(parts) == 1 else parts[1]
        out.append(root / slug)
    return out


def find_input(handle: str, kind: str | None = None) -> Path:
    """Find an attached competition, dataset, model or notebook output by its handle, under either layout.

    Args:
        handle: ``slug`` (competition), ``owner/slug[/N]`` (dataset or notebook),
            ``owner/model/framework/variation[/N]`` (model; without N the newest mounted version is taken).
        kind: ``"competition"``, ``"dataset"``, ``"model"`` or ``"notebook"``; None tries them all.

    Raises:
        InputNotFoundError: nothing is mounted there; the message lists every place looked at.
    """
    if kind is not None and kind not in KINDS:
        raise InputNotFoundError(f"unknown input kind {kind!r}: use one of {', '.join(KINDS)}")
    if not handle or not handle.strip("/"):
        raise InputNotFoundError("empty input handle: pass e.g. 'owner/slug' or a competition slug")
    candidates = _candidates(handle, kind)
    for path in candidates:
        if kind == "model" and path.is_dir() and len(handle.strip("/").split("/")) == 4:
            versions = sorted((p for p in _subdirs(path) if p.name.isdigit()), key=lambda p: int(p.name))
            if versions:
                return versions[-1]
        if path.is_dir():
            return path
    looked = "\n  ".join(str(p) for p in dict.fromkeys(candidates))
    raise InputNotFoundError(
        f"input {handle!r} is not attached; looked in:\n  {looked}\n"
        "Attach it to the notebook (Add Input in the editor, or the matching *_sources field of "
        "kernel-metadata.json) and start the session again."
    )
