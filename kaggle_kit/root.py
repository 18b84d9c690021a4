"""Find the project root wherever git or Kaggle put it.

``KAGGLE_KIT_ROOT`` overrides everything. Given a project name (``find_root(project=...)``, or ``KAGGLE_KIT_PROJECT``,
which a rendered notebook's bootstrap sets), the root is the folder whose declaration (``[tool.kaggle-kit]`` or
``kaggle-kit.toml``, see :mod:`kaggle_kit.project`) names that project: upward from the start, else a clone under the
working directory, else the attached inputs; not finding it is an error, never another project.

Without a name: upward from the start (an explicit path, else the working directory, then the caller's file), an
explicit ``.kaggle-kit-root`` anywhere above wins; otherwise the nearest folder holding a declaration,
``kernel-metadata.json``, ``setup.cfg``, ``pyproject.toml`` or ``.git``. If nothing is above, search downward a few
levels: the working directory (a clone, or a clone inside a clone), then the attached inputs under either layout (the
code published as a dataset, perhaps extracted into a sub-folder). Downward, a declared project beats a bare marker,
and the kit's own tree (a folder holding the ``kaggle_kit`` package: its clone, or the kit attached as a dataset)
ranks below any other project; a writable clone under the working directory beats a read-only copy under input. The
reason says which rule chose. The working directory is never changed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kaggle_kit import env, envvars
from kaggle_kit.errors import RootNotFoundError
from kaggle_kit.project import DECLARATION_FILE, declared_name

ROOT_ENV = envvars.KIT_ROOT
PROJECT_ENV = envvars.KIT_PROJECT
EXPLICIT_MARKER = ".kaggle-kit-root"
MARKERS = (EXPLICIT_MARKER, DECLARATION_FILE, "kernel-metadata.json", "setup.cfg", "pyproject.toml", ".git")
KIT_PACKAGE = "kaggle_kit"
KIT_ORIGIN_PREFIX = "kaggle_kit imported from "
DOWNWARD_DEPTH = 3
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", "site-packages", ".ipynb_checkpoints",
                        "build", "dist"})

__all__ = ["KIT_ORIGIN_PREFIX", "ProjectRoot", "find_root", "is_kit_tree", "kit_clone", "kit_origin", "ROOT_ENV", "PROJECT_ENV", "EXPLICIT_MARKER", "MARKERS"]


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


def _upward_project(start: Path, project: str) -> ProjectRoot | None:
    for folder in (start, *start.parents):
        if declared_name(folder) == project:
            return ProjectRoot(folder, f"the declaration of project {project!r} found upward from {start}",
                               _marker_in(folder))
    return None


def is_kit_tree(folder: Path) -> bool:
    """Whether ``folder`` holds the kit's own package: its clone, or the kit attached as a dataset."""
    return (folder / KIT_PACKAGE / "__init__.py").is_file()


def kit_clone() -> Path | None:
    """The folder holding the running kit when it is a writable clone (not an installed copy, not an attached
    dataset), else None: hot reload watches it too."""
    import site
    import sysconfig

    folder = Path(__file__).resolve().parents[1]
    installed = {Path(p).resolve() for p in (*site.getsitepackages(), site.getusersitepackages(),
                                              sysconfig.get_paths()["purelib"]) if p}
    inputs = env.input_dir().resolve()
    if folder in installed or folder.is_relative_to(inputs) or not os.access(folder / KIT_PACKAGE, os.W_OK):
        return None
    return folder


def kit_origin() -> str:
    """One line saying which folder this process imported the kit from (a notebook's bootstrap prints it)."""
    return f"{KIT_ORIGIN_PREFIX}{Path(__file__).resolve().parents[1]}"


@dataclass(frozen=True)
class _Candidate:
    path: Path
    marker: str
    depth: int
    top: Path
    writable: bool  # under the working directory, not an attached input
    name: str | None  # the declared project name, if any

    @property
    def kit(self) -> bool:
        return is_kit_tree(self.path)

    def key(self) -> tuple[int, int, int, int, int, str]:
        # Another project beats the kit's own tree; a declaration beats a bare marker; writable beats read-only.
        return (int(self.kit), int(self.name is None), int(not self.writable), self.depth,
                MARKERS.index(self.marker), str(self.path))


def _downward(top: Path, depth: int, *, writable: bool, enough: Callable[[_Candidate], bool]) -> list[_Candidate]:
    """Folders holding a marker under ``top`` (not ``top`` itself), level by level, until a level holds one that is
    ``enough`` (or ``depth`` levels were searched)."""
    found: list[_Candidate] = []
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
                found.append(_Candidate(child, marker, d, top, writable, declared_name(child)))
        if any(enough(c) for c in found):
            return found
        level = children
    return found


def _caller_file() -> Path | None:
    """The file of the first caller outside the kit; None for a notebook cell or an interactive prompt."""
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("kaggle_kit"):
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    return path.resolve() if path.is_file() else None


def find_root(start: str | os.PathLike[str] | None = None, *, add_to_path: bool = False,
              project: str | None = None) -> ProjectRoot:
    """Find the project root.

    Args:
        start: Where to start looking; default the working directory, then the caller's file.
        add_to_path: Put the root first on ``sys.path`` so its packages import from the checkout.
        project: The declared name of the project to find; default ``KAGGLE_KIT_PROJECT``, else any project.

    Raises:
        RootNotFoundError: nothing found (or not the project named); the message lists every place searched.
    """
    root = _find(start, project or os.environ.get(PROJECT_ENV) or None)
    if add_to_path and str(root.path) not in sys.path:
        sys.path.insert(0, str(root.path))
    return root


def _find(start: str | os.PathLike[str] | None, project: str | None) -> ProjectRoot:
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
        found = _upward_project(folder, project) if project else _upward(folder)
        if found:
            return found
        searched.append(f"{folder} and every folder above it")

    def enough(candidate: _Candidate) -> bool:
        return candidate.name == project if project else not candidate.kit

    top = starts[0] if starts[0].is_dir() else starts[0].parent
    candidates = _downward(top, DOWNWARD_DEPTH, writable=True, enough=enough)
    searched.append(f"{DOWNWARD_DEPTH} levels below {top}")
    kaggle_working = env.working_dir()
    if not any(map(enough, candidates)) and kaggle_working.is_dir() and kaggle_working.resolve() != top:
        candidates += _downward(kaggle_working, DOWNWARD_DEPTH, writable=True, enough=enough)
        searched.append(f"{DOWNWARD_DEPTH} levels below {kaggle_working}")
    inputs = env.input_dir()
    # The current layout puts a dataset 3 levels down (datasets/<owner>/<slug>), plus an extraction sub-folder.
    if inputs.is_dir():
        candidates += _downward(inputs, 5, writable=False, enough=enough)
    searched.append(f"5 levels below {inputs}")

    if project:
        candidates = [c for c in candidates if c.name == project]
    if candidates:
        return _chosen(candidates, project)
    wanted = f"the declaration of project {project!r} ([tool.kaggle-kit] name = {project!r})" if project else (
        f"any of: {', '.join(MARKERS)}")
    raise RootNotFoundError(
        "no project root found. Searched:\n  " + "\n  ".join(searched)
        + f"\nLooked for {wanted}.\nFix: run from inside the checkout, pass find_root(path), "
        f"set {ROOT_ENV}=/path/to/checkout, or attach the project's code dataset to the notebook."
    )


def _chosen(candidates: list[_Candidate], project: str | None) -> ProjectRoot:
    """The best candidate, with the rule that chose it and what it was chosen over."""
    best = min(candidates, key=_Candidate.key)
    where = (f"{best.depth} level(s) below {best.top}" if best.writable
             else "the attached input (read-only)")
    what = f"the declaration of project {project!r}" if project else (
        f"the declaration of project {best.name!r}" if best.name else best.marker)
    reason = f"{what} found in {best.path}, {where}"
    rules: list[str] = []
    notes: list[str] = []
    for other in sorted(candidates, key=_Candidate.key):
        if other.path == best.path:
            continue
        if other.kit and not best.kit:
            rules.append(f"the kit's own tree at {other.path} ranks below the project")
        elif best.name and other.name is None and not project:
            rules.append(f"a declared project beats the bare {other.marker} at {other.path}")
        elif best.writable and not other.writable:
            rules.append(f"writable clone preferred over the read-only copy at {other.path}")
            notes.append(f"a read-only copy is attached at {other.path}; using the writable clone at {best.path}")
        else:
            notes.append(f"also found a copy at {other.path}")
    if rules:
        reason += f" ({'; '.join(dict.fromkeys(rules))})"
    return ProjectRoot(best.path, reason, best.marker, tuple(notes))
