"""Find the project root wherever git or Kaggle put it.

Upward from the start (an explicit path, else the working directory, then the caller's file), an explicit
``.kaggle-kit-root`` anywhere above wins; otherwise the nearest folder holding ``kernel-metadata.json``, ``setup.cfg``,
``pyproject.toml`` or ``.git``. If nothing is above, search downward a few levels: the working directory (a clone, or a
clone inside a clone), then the attached inputs under either layout (the code published as a dataset, perhaps
extracted into a sub-folder). A writable clone under the working directory beats a read-only copy under input.
``KAGGLE_KIT_ROOT`` overrides everything. The working directory is never changed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kaggle_kit import env, envvars
from kaggle_kit.errors import RootNotFoundError

ROOT_ENV = envvars.KIT_ROOT
EXPLICIT_MARKER = ".kaggle-kit-root"
MARKERS = (EXPLICIT_MARKER, "kernel-metadata.json", "setup.cfg", "pyproject.toml", ".git")
DOWNWARD_DEPTH = 3
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", "site-packages", ".ipynb_checkpoints",
                        "build", "dist"})

__all__ = ["ProjectRoot", "find_root", "ROOT_ENV", "EXPLICIT_MARKER", "MARKERS"]


@dataclass(frozen=True)
class ProjectRoot:
    """The chosen project root and why it was chosen."""

    path: Path
    reason: str
    marker: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def _marker_in(folder: Path) -> str | None:
    for marker in MARKERS:
        if (folder / marker).exists():
            return marker
    return None


def _upward(start: Path) -> ProjectRoot | None:
    chain = [start, *start.parents]
    for folder in chain:
        if (folder / EXPLICIT_MARKER).exists():
            return ProjectRoot(folder, f"{EXPLICIT_MARKER} found upward from {start}", EXPLICIT_MARKER)
    for folder in chain:
        marker = _marker_in(folder)
        if marker:
            return ProjectRoot(folder, f"{marker} found upward from {start}", marker)
    return None


def _downward(top: Path, depth: int) -> list[tuple[int, Path, str]]:
    """Folders holding a marker under ``top`` (not ``top`` itself), as (depth, path, marker), shallowest first."""
    found: list[tuple[int, Path, str]] = []
    level = [top]
    for d in range(1, depth + 1):
        children: list[Path] = []
        for parent in level:
            try:
                entries = sorted(p for p in parent.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS)
            except OSError:
                continue
            children.extend(entries)
        for child in children:
            marker = _marker_in(child)
            if marker:
                found.append((d, child, marker))
        if found:
            return found
        level = children
    return found


def _rank(candidates: list[tuple[int, Path, str]]) -> tuple[int, Path, str]:
    return min(candidates, key=lambda c: (c[0], MARKERS.index(c[2]), str(c[1])))


def _caller_file() -> Path | None:
    """The file of the first caller outside the kit; None for a notebook cell or an interactive prompt."""
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("kaggle_kit"):
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    return path.resolve() if path.is_file() else None


def find_root(start: str | os.PathLike[str] | None = None, *, add_to_path: bool = False) -> ProjectRoot:
    """Find the project root.

    Args:
        start: Where to start looking; default the working directory, then the caller's file.
        add_to_path: Put the root first on ``sys.path`` so its packages import from the checkout.

    Raises:
        RootNotFoundError: nothing found; the message lists every place searched.
    """
    root = _find(start)
    if add_to_path and str(root.path) not in sys.path:
        sys.path.insert(0, str(root.path))
    return root


def _find(start: str | os.PathLike[str] | None) -> ProjectRoot:
    override = os.environ.get(ROOT_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise RootNotFoundError(f"{ROOT_ENV}={override!r} is not a folder: point it at the project's checkout "
                                    f"or unset it")
        return ProjectRoot(path, f"{ROOT_ENV} is set", None)

    searched: list[str] = []
    if start is not None:
        starts = [Path(start).expanduser().resolve()]
        if not starts[0].exists():
            raise RootNotFoundError(f"start path {start!s} does not exist: pass an existing folder or file")
    else:
        starts = [Path.cwd().resolve()]
        caller = _caller_file()
        if caller is not None:
            starts.append(caller.parent)
    for s in starts:
        folder = s if s.is_dir() else s.parent
        found = _upward(folder)
        if found:
            return found
        searched.append(f"{folder} and every folder above it")

    top = starts[0] if starts[0].is_dir() else starts[0].parent
    in_working = _downward(top, DOWNWARD_DEPTH)
    searched.append(f"{DOWNWARD_DEPTH} levels below {top}")
    kaggle_working = env.working_dir()
    if not in_working and kaggle_working.is_dir() and kaggle_working.resolve() != top:
        top = kaggle_working
        in_working = _downward(top, DOWNWARD_DEPTH)
        searched.append(f"{DOWNWARD_DEPTH} levels below {top}")
    inputs = env.input_dir()
    # The current layout puts a dataset 3 levels down (datasets/<owner>/<slug>), plus an extraction sub-folder.
    in_inputs = _downward(inputs, 5) if inputs.is_dir() else []
    searched.append(f"5 levels below {inputs}")

    if in_working:
        depth, path, marker = _rank(in_working)
        notes = tuple(f"also found a copy at {p}" for _, p, _ in in_working if p != path)
        reason = f"{marker} found in {path}, {depth} level(s) below {top}"
        if in_inputs:
            copy = _rank(in_inputs)[1]
            notes += (f"a read-only copy is attached at {copy}; using the writable clone at {path}",)
            reason += f" (writable clone preferred over the read-only copy at {copy})"
        return ProjectRoot(path, reason, marker, notes)
    if in_inputs:
        depth, path, marker = _rank(in_inputs)
        return ProjectRoot(path, f"{marker} found in the attached input at {path} (read-only)", marker)

    raise RootNotFoundError(
        "no project root found. Searched:\n  " + "\n  ".join(searched)
        + f"\nLooked for any of: {', '.join(MARKERS)}.\nFix: run from inside the checkout, pass find_root(path), "
        f"set {ROOT_ENV}=/path/to/checkout, or attach the code dataset to the notebook."
    )
