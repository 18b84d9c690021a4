"""The code datasets: the project's code (``kaggle-kit publish-code``) and the kit itself (``kaggle-kit publish-kit``),
versioned on Kaggle so a notebook imports them from its inputs, internet on or off.

What the project's code dataset holds: the files git tracks, plus the declaration's ``[publish] include`` patterns,
minus its ``exclude`` patterns (without git: the ``include`` patterns, every file when there are none, minus
``exclude``). Never: history, environments (``.venv``, any folder with ``pyvenv.cfg``), build outputs, caches,
downloaded kernel output (``kernel-output/``), the rehearsal's folder, checkpoints, secrets (kaggle.json,
access_token, .env files, keys) or a file holding the API key or token. Sub-folders travel zipped and Kaggle unpacks
them, so the package keeps its layout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from kaggle_kit.checkpoint.format import MANIFEST_SUFFIX, STATE_SUFFIX, TENSOR_SUFFIX, step_of
from kaggle_kit.errors import CredentialError, DeclarationError, KaggleApiError
from kaggle_kit.handles import parse_dataset
from kaggle_kit.kaggle_api import Credentials, check_reply, describe_http_error, find_credentials, make_api
from kaggle_kit.metadata_files import DATASET_METADATA, checked_handle, read_metadata
from kaggle_kit.mirror.ledger import LEDGER_FILE, POINTER_FILE
from kaggle_kit.project import (KERNEL_OUTPUT_DIR, REHEARSAL_DIR, RUNS_DIR, Project, PublishRules,
                                load_project)

__all__ = ["KIT_DATASET_TITLE", "StagedCode", "matches", "publish_code", "publish_kit", "select_files", "stage_code",
           "stage_kit"]

KIT_DATASET_TITLE = "kaggle-kit"
# Never in a code dataset: history, environments, build outputs, caches, secrets, outputs of runs.
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "env", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", ".ipynb_checkpoints", "build", "dist", ".kaggle-kit", REHEARSAL_DIR, RUNS_DIR,
              KERNEL_OUTPUT_DIR, ".kaggle", ".idea", ".vscode", "node_modules"}
_SECRET_NAMES = {"kaggle.json", "access_token", ".env", ".netrc", "credentials", "id_rsa", "id_ed25519"}
_SECRET_SUFFIXES = (".pem", ".key")
# Sources git does not track that deserve a warning (they are not uploaded).
_SOURCE_SUFFIXES = (".py", ".pyi", ".yaml", ".yml", ".toml", ".cfg", ".json", ".txt", ".md", ".ipynb")


@dataclass(frozen=True)
class StagedCode:
    """What was staged: the files (relative paths), their total size, and what the user should know."""

    files: tuple[Path, ...]
    bytes: int
    warnings: tuple[str, ...] = ()


def _is_secret(path: PurePosixPath) -> bool:
    name = path.name
    return name in _SECRET_NAMES or name.startswith(".env") or name.endswith(_SECRET_SUFFIXES)


def _checkpoint_stem(name: str) -> str | None:
    for suffix in (MANIFEST_SUFFIX, TENSOR_SUFFIX, STATE_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _is_checkpoint(path: PurePosixPath, siblings: set[str]) -> bool:
    """A checkpoint file, or the mirror's pointer and ledger beside checkpoints."""
    stem = _checkpoint_stem(path.name)
    if stem is not None and step_of(stem) is not None:
        return True
    if path.name in (LEDGER_FILE, POINTER_FILE):
        return any(step_of(_checkpoint_stem(s) or "") is not None for s in siblings)
    return False


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A glob (``*`` within a path part, ``**`` across parts, ``?``) as a regex over a relative posix path."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def matches(rel: str | PurePosixPath, patterns: Iterable[str]) -> bool:
    """Whether the relative path ``rel`` (or a folder above it) matches one of the glob ``patterns``.

    A pattern without ``/`` matches a name at any depth (``*.ckpt``, ``data``); one with ``/`` matches from the root
    (``configs/*.yaml``, ``data/**``); a folder's pattern covers everything under it.
    """
    path = PurePosixPath(rel)
    candidates = [path.as_posix(), *(p.as_posix() for p in path.parents if p.as_posix() != ".")]
    for pattern in patterns:
        pattern = pattern.strip().rstrip("/")
        if not pattern:
            continue
        anchored = "/" in pattern
        regex = _pattern_regex(pattern.lstrip("/") if anchored else f"**/{pattern}")
        if any(regex.fullmatch(c) for c in candidates):
            return True
    return False


def _walk(root: Path, dest: Path | None) -> list[PurePosixPath]:
    """Every regular file under ``root`` outside the folders that never travel."""
    found: list[PurePosixPath] = []
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in _SKIP_DIRS and not d.endswith(".egg-info") and not (here / d / "pyvenv.cfg").exists()
            and (dest is None or (here / d).resolve() != dest.resolve())
        )
        for name in sorted(filenames):
            path = here / name
            if path.is_file() and not path.is_symlink():
                found.append(PurePosixPath(path.relative_to(root).as_posix()))
    return found


def _git_files(root: Path, *args: str) -> list[PurePosixPath] | None:
    """``git ls-files`` under ``root`` (None when ``root`` is not in a git work tree, or git is missing)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [PurePosixPath(p) for p in out.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _never(rel: PurePosixPath, root: Path, siblings: dict[PurePosixPath, set[str]]) -> bool:
    parts = rel.parts
    if any(p in _SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return True
    if any((root / PurePosixPath(*parts[:i]) / "pyvenv.cfg").exists() for i in range(1, len(parts))):
        return True
    if _is_secret(rel) or rel.name.endswith(".pyc"):
        return True
    return _is_checkpoint(rel, siblings.get(rel.parent, set()))


def select_files(root: str | os.PathLike[str], rules: PublishRules = PublishRules(), *,
                 dest: str | os.PathLike[str] | None = None) -> tuple[list[PurePosixPath], list[str]]:
    """The files the code dataset gets (relative to ``root``) and the warnings to show.

    With git: what git tracks plus ``rules.include``, minus ``rules.exclude``; an untracked source file that is not
    included is named in a warning. Without git: ``rules.include`` (every file when empty), minus ``rules.exclude``.
    Either way never the folders and files the module docstring lists.
    """
    root = Path(root).resolve()
    dest_path = Path(dest).resolve() if dest is not None else None
    warnings: list[str] = []
    tracked = _git_files(root, "--cached")
    every = _walk(root, dest_path)
    if tracked is None:
        chosen = [p for p in every if not rules.include or matches(p, rules.include)]
        warnings.append(f"{root} is not a git work tree: uploading by the declaration's [publish] rules "
                        f"({'include ' + ', '.join(rules.include) if rules.include else 'every file'}"
                        f"{', exclude ' + ', '.join(rules.exclude) if rules.exclude else ''})")
    else:
        present = set(every)
        chosen = [p for p in tracked if p in present]
        taken = set(chosen)
        chosen += [p for p in every if rules.include and p not in taken and matches(p, rules.include)]
        taken = set(chosen)
        untracked = _git_files(root, "--others", "--exclude-standard") or []
        missed = [p for p in untracked if p.suffix in _SOURCE_SUFFIXES and p not in taken and p in present
                  and not matches(p, rules.exclude) and not _never(p, root, {})]
        if missed:
            shown = ", ".join(p.as_posix() for p in missed[:10]) + (" ..." if len(missed) > 10 else "")
            warnings.append(f"{len(missed)} source file(s) git does not track are NOT uploaded: {shown} (git add "
                            "them, or list them in [tool.kaggle-kit.publish] include)")
    siblings: dict[PurePosixPath, set[str]] = {}
    for p in chosen:
        siblings.setdefault(p.parent, set()).add(p.name)
    selected = sorted({p for p in chosen if not matches(p, rules.exclude) and not _never(p, root, siblings)})
    return selected, warnings


def stage_code(root: str | os.PathLike[str], dest: str | os.PathLike[str], *, rules: PublishRules = PublishRules(),
               secrets: Sequence[str] | None = None) -> StagedCode:
    """Copies the code dataset's files (see :func:`select_files`) into ``dest``.

    Args:
        secrets: Values no staged file may contain (an API key, a token); None: the current Kaggle credentials'.

    Raises:
        CredentialError: a file to be published contains one of ``secrets``.
    """
    root, dest = Path(root).resolve(), Path(dest)
    if secrets is None:
        creds = find_credentials()
        secrets = [s for s in (creds.key, creds.token) if s] if creds else []
    needles = [s.encode() for s in secrets if s and len(s) >= 8]
    files, warnings = select_files(root, rules, dest=dest)
    total = 0
    for rel in files:
        data = (root / rel).read_bytes()
        if any(secret in data for secret in needles):
            raise CredentialError(f"{rel} contains your Kaggle API key or token: remove it before publishing "
                                  "the code (the code dataset may be public or shared)")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        total += len(data)
    return StagedCode(files=tuple(Path(p) for p in files), bytes=total, warnings=tuple(warnings))


def _secrets_of(credentials: Credentials | None) -> list[str]:
    creds = credentials or find_credentials()
    return [s for s in (creds.key, creds.token) if s] if creds else []


def _code_metadata(project: Project) -> dict[str, Any]:
    """The code dataset's dataset-metadata.json: the root's file when there is one (its id must be the declared
    code dataset), else one made from the declaration."""
    path = project.root / DATASET_METADATA
    if path.is_file():
        meta = read_metadata(path, "the code dataset's dataset-metadata.json")
        ref = checked_handle(str(meta.get("id", "")), "dataset id", str(path))
        if ref != project.code_dataset:
            raise DeclarationError(f"{path} names {ref} but {project.file} declares the code dataset "
                                   f"{project.code_dataset}: make them agree (or delete {path.name})")
        return meta
    return {"id": project.code_dataset, "title": f"{project.name} code", "licenses": [{"name": "other"}]}


def publish_code(
    root: str | os.PathLike[str] | Project, *, notes: str = "kaggle-kit publish-code", api: Any = None,
    credentials: Credentials | None = None,
) -> dict[str, Any]:
    """Versions the project's code dataset (creating it the first time).

    Args:
        root: The project root, or the loaded project.
        api: The Kaggle client; default one made from ``credentials``.
        credentials: Whose key no published file may hold; default the credentials the client finds.

    Returns:
        ``{"ref", "created", "files", "bytes", "warnings", "url"}``.

    Raises:
        DeclarationError: no declaration, or a dataset-metadata.json that disagrees with it.
        CredentialError: a file holds the key or token.
        KaggleApiError: the server refused the upload.
    """
    project = root if isinstance(root, Project) else load_project(Path(root))
    meta = _code_metadata(project)
    secrets = _secrets_of(credentials)
    api = api or make_api(credentials)
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-code-") as tmp:
        folder = Path(tmp) / "code"
        staged = stage_code(project.root, folder, rules=project.publish, secrets=secrets)
        if not staged.files:
            raise DeclarationError(f"nothing to publish from {project.root}: git tracks no file there and "
                                   f"[{project.table}.publish] include matches none")
        created, url = _upload(api, folder, project.code_dataset, meta, notes)
    return {"ref": project.code_dataset, "created": created, "files": [str(p) for p in staged.files],
            "bytes": staged.bytes, "warnings": list(staged.warnings), "url": url}


def stage_kit(dest: str | os.PathLike[str]) -> StagedCode:
    """Copies the running kit's package (its source, no byte code) into ``dest/kaggle_kit``: the folder a notebook
    puts on ``sys.path``."""
    import kaggle_kit

    package = Path(kaggle_kit.__file__).resolve().parent
    target = Path(dest) / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    files = sorted(p.relative_to(Path(dest)) for p in target.rglob("*") if p.is_file())
    return StagedCode(files=tuple(files), bytes=sum((Path(dest) / p).stat().st_size for p in files))


def publish_kit(
    dataset: str, *, notes: str = "kaggle-kit publish-kit", api: Any = None, credentials: Credentials | None = None,
) -> dict[str, Any]:
    """Versions the dataset ``dataset`` (``owner/slug``) with the running kit's source, so a notebook imports the
    kit from its inputs with internet off (its bootstrap puts the dataset on ``sys.path``).

    Returns:
        ``{"ref", "created", "files", "bytes", "url"}``.

    Raises:
        HandleError: ``dataset`` is not ``owner/slug``.
        KaggleApiError: the server refused the upload.
    """
    ref = parse_dataset(dataset, what="kit dataset", versioned=False).ref
    api = api or make_api(credentials)
    meta = {"id": ref, "title": KIT_DATASET_TITLE, "licenses": [{"name": "other"}],
            "subtitle": "The kaggle-kit package, importable offline"}
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-kit-") as tmp:
        folder = Path(tmp) / "kit"
        staged = stage_kit(folder)
        created, url = _upload(api, folder, ref, meta, notes)
    return {"ref": ref, "created": created, "files": [str(p) for p in staged.files], "bytes": staged.bytes,
            "url": url}


def _upload(api: Any, folder: Path, ref: str, meta: dict[str, Any], notes: str) -> tuple[bool, str | None]:
    """Creates ``ref`` from ``folder`` or versions it; returns (created, url)."""
    (folder / DATASET_METADATA).write_text(json.dumps(meta, indent=2))
    created = not _dataset_exists(api, ref)
    try:
        if created:
            response = api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
        else:
            response = api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip")
    except (ValueError, OSError) as exc:
        raise KaggleApiError(f"publishing {ref} failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
        raise KaggleApiError(f"publishing {ref} failed: {describe_http_error(exc)}") from exc
    check_reply(response, f"publishing {ref}")
    return created, getattr(response, "url", None)


def _dataset_exists(api: Any, ref: str) -> bool:
    try:
        api.dataset_status(ref)
    except Exception as exc:  # noqa: BLE001 - a 404 means "not created yet"; anything else is reported
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (403, 404):
            return False
        raise KaggleApiError(f"checking whether {ref} exists failed: {describe_http_error(exc)}") from exc
    return True
