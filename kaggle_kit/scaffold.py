"""``kaggle-kit init``: write a small, working project that uses the kit, or add what an existing one lacks.

The project: the declaration (``[tool.kaggle-kit]`` in ``pyproject.toml``, or ``kaggle-kit.toml`` beside a
``pyproject.toml`` that has none), a package with a tiny model, a synthetic data factory and a typed config,
``configs/``, ``notebooks/train.py`` (and ``notebooks/infer.py``), a ``.gitignore`` that keeps outputs and
credentials out, and ``kernel-metadata.json``/``dataset-metadata.json`` for the plain ``kaggle`` CLI. The templates are
package data under ``kaggle_kit/templates/``. No existing file is ever overwritten; a ``.gitignore`` only gains the
lines it lacks.
"""

from __future__ import annotations

import json
import keyword
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path, PurePosixPath

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.handles import parse_owner, slugify
from kaggle_kit.metadata_files import DATASET_METADATA, KERNEL_METADATA
from kaggle_kit.project import DECLARATION_FILE, PYPROJECT, TABLE, declaration_file, load_project

__all__ = ["PLACEHOLDER_OWNER", "InitResult", "bootstrap_cell", "init_project"]

PLACEHOLDER_OWNER = "your-kaggle-username"
_TEMPLATES = "templates"
_GITIGNORE = ".gitignore"


@dataclass
class InitResult:
    """What ``init`` did: files written, files kept as they were, lines added to ``.gitignore``, and notes."""

    root: Path
    name: str
    package: str
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    gitignore_added: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _template(*parts: str) -> Traversable:
    return resources.files("kaggle_kit").joinpath(_TEMPLATES, *parts)


def bootstrap_cell() -> str:
    """The notebooks' bootstrap cell, as every generated notebook (and the kit's own) carries it."""
    return _template("bootstrap.py.tmpl").read_text(encoding="utf-8")


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _templates(folder: Traversable, prefix: PurePosixPath = PurePosixPath()) -> list[tuple[PurePosixPath, str]]:
    found: list[tuple[PurePosixPath, str]] = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        rel = prefix / item.name
        if item.is_dir():
            found += _templates(item, rel)
        elif item.name.endswith(".tmpl"):
            found.append((rel, item.read_text(encoding="utf-8")))
    return found


def _target(rel: PurePosixPath, package: str) -> PurePosixPath | None:
    """Where a project template goes (None: handled apart)."""
    if rel.name in ("declaration.toml.tmpl", "pyproject.toml.tmpl"):
        return None
    if rel.name == "gitignore.tmpl":
        return PurePosixPath(_GITIGNORE)
    parts = [package if p == "package" and i == 0 else p for i, p in enumerate(rel.parts)]
    return PurePosixPath(*parts).with_name(rel.name[: -len(".tmpl")])


def init_project(
    directory: str | Path, *, name: str | None = None, owner: str | None = None, package: str | None = None,
    infer: bool = True,
) -> InitResult:
    """Writes the project's files into ``directory`` (created if needed), keeping every file already there.

    Args:
        name: The project's name (default: the folder's name, slugified).
        owner: The Kaggle user (default: the placeholder ``your-kaggle-username``).
        package: The Python package (default: the name with ``_`` for ``-``).
        infer: Also write the inference notebook.

    Raises:
        KaggleKitError: a name, owner or package that cannot be used.
        DeclarationError: the folder already declares a project that does not parse.
    """
    root = Path(directory).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise KaggleKitError(f"{root} is a file: pass a folder for the project")
    root.mkdir(parents=True, exist_ok=True)
    existing = declaration_file(root)
    notes: list[str] = []
    if existing is not None:
        declared = load_project(root)
        notes.append(f"{existing.name} already declares project {declared.name!r}: kept as it is")
        name, owner = declared.name, declared.owner
    name = name or slugify(root.name)
    if not name or slugify(name) != name:
        raise KaggleKitError(f"project name {name!r}: use lower-case letters, digits and single hyphens, e.g. "
                             f"--name {slugify(name or root.name) or 'my-project'}")
    package = package or name.replace("-", "_")
    if not package.isidentifier() or keyword.iskeyword(package) or package == "kaggle_kit":
        raise KaggleKitError(f"package name {package!r} is not a usable Python package name: pass --package")
    owner = parse_owner(owner or PLACEHOLDER_OWNER, what="--owner")
    result = InitResult(root=root, name=name, package=package, notes=notes)
    if existing is not None:
        result.kept.append(existing)
    values = {"name": name, "package": package, "owner": owner, "bootstrap": bootstrap_cell()}
    if existing is None:
        _write_declaration(root, values, result)
    for rel, text in _templates(_template("project")):
        target = _target(rel, package)
        if target is None or (not infer and target == PurePosixPath("notebooks/infer.py")):
            continue
        if target.name == _GITIGNORE:
            _merge_gitignore(root / target, _fill(text, values), result)
        else:
            _write_new(root / target, _fill(text, values), result)
    _write_metadata(root, result)
    return result


def _write_new(path: Path, text: str, result: InitResult) -> None:
    if path.exists():
        result.kept.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result.written.append(path)


def _write_declaration(root: Path, values: dict[str, str], result: InitResult) -> None:
    declaration = _template("project", "declaration.toml.tmpl").read_text(encoding="utf-8")
    pyproject = root / PYPROJECT
    if pyproject.exists():
        # pyproject.toml is the user's: the declaration goes beside it.
        text = _fill(declaration, {**values, "table": "", "prefix": ""}).replace("\n\n\n", "\n\n").lstrip("\n")
        _write_new(root / DECLARATION_FILE, text, result)
        result.notes.append(f"{PYPROJECT} exists: the declaration is in {DECLARATION_FILE}")
        return
    head = _fill(_template("project", "pyproject.toml.tmpl").read_text(encoding="utf-8"), values)
    body = _fill(declaration, {**values, "table": f"[{TABLE}]", "prefix": f"{TABLE}."})
    _write_new(pyproject, head + body, result)


def _merge_gitignore(path: Path, text: str, result: InitResult) -> None:
    if not path.exists():
        _write_new(path, text, result)
        return
    have = {line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()}
    missing = [line for line in text.splitlines() if line.strip() and not line.startswith("#")
               and line.strip() not in have]
    if not missing:
        result.kept.append(path)
        return
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n# Added by kaggle-kit init: outputs and credentials stay out of git and the code dataset.\n")
        fh.write("\n".join(missing) + "\n")
    result.gitignore_added = missing


def _write_metadata(root: Path, result: InitResult) -> None:
    """kernel-metadata.json (the training notebook, for ``kaggle kernels push -p .`` after ``kaggle-kit render``) and
    dataset-metadata.json (the code dataset), made from the declaration."""
    from kaggle_kit.notebooks import BUILD_DIR, render

    project = load_project(root)
    if (root / KERNEL_METADATA).exists() and (root / DATASET_METADATA).exists():
        result.kept += [root / KERNEL_METADATA, root / DATASET_METADATA]
        return
    name = "train" if "train" in project.notebooks else next(iter(project.notebooks))
    try:
        rendered = render(project, name)
    except KaggleKitError as exc:
        result.notes.append(f"the project does not render yet, so {KERNEL_METADATA} was not written: {exc}")
        return
    meta = {**rendered.metadata, "code_file": (BUILD_DIR / name / rendered.metadata["code_file"]).as_posix()}
    _write_new(root / KERNEL_METADATA, json.dumps(meta, indent=2) + "\n", result)
    dataset = {"id": project.code_dataset, "title": f"{project.name} code", "licenses": [{"name": "other"}]}
    _write_new(root / DATASET_METADATA, json.dumps(dataset, indent=2) + "\n", result)
    if project.owner == PLACEHOLDER_OWNER:
        result.notes.append(f"owner is the placeholder {PLACEHOLDER_OWNER!r}: put your Kaggle user name in "
                            f"{project.file.name}, {KERNEL_METADATA} and {DATASET_METADATA} (or run init with "
                            "--owner) before pushing to Kaggle")

