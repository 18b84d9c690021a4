"""Lint kernel-metadata.json before ``kaggle kernels push``: every mistake the server would accept silently (a retired
GPU, internet defaulting on or off, the checkpoint dataset not attached) or reject after the upload, caught locally
with the field and the fix.

``kaggle-kit lint [-p DIR]`` prints the findings; ``kaggle-kit push`` refuses on any error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.errors import HandleError, MalformedFileError, MetadataError
from kaggle_kit.fileio import read_json
from kaggle_kit.handles import parse_competition, parse_dataset, parse_kernel, parse_model, slugify
from kaggle_kit.kaggle_platform import MACHINE_SHAPES, resolve_shape
from kaggle_kit.metadata_files import KERNEL_METADATA, read_metadata

METADATA_FILE = KERNEL_METADATA
LANGUAGES = ("python", "r", "rmarkdown")
KERNEL_TYPES = ("script", "notebook")
PINNING_TYPES = ("original", "latest")

__all__ = ["METADATA_FILE", "LintFinding", "lint_kernel_metadata", "require_valid_kernel_metadata"]


@dataclass(frozen=True)
class LintFinding:
    """One finding: ``error`` refuses the push, ``warning`` and ``info`` are shown."""

    severity: str
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}" + (f" -> {self.fix}" if self.fix else "")


def _strip_version(ref: str) -> str:
    try:
        return parse_dataset(ref).ref
    except HandleError:
        return ref.strip("/").lower()


def _load(folder: Path) -> dict[str, Any]:
    path = folder / METADATA_FILE
    if not folder.is_dir():
        raise MetadataError(f"{folder} is not a folder: pass the folder holding {METADATA_FILE} with -p DIR")
    if not path.is_file():
        raise MetadataError(f"{path} does not exist: run `kaggle kernels init -p {folder}` or write it (fields id, "
                            "title, code_file, language, kernel_type)")
    return read_metadata(path, "the kernel's metadata")


def _check_identity(meta: dict[str, Any], out: list[LintFinding]) -> None:
    kernel_id, id_no, title = meta.get("id"), meta.get("id_no"), meta.get("title")
    if not kernel_id and not id_no:
        out.append(LintFinding("error", "id", "missing", 'set "id": "<your-username>/<kernel-slug>"'))
    elif kernel_id:
        try:
            parse_kernel(kernel_id, what="kernel id", versioned=False)
        except HandleError as exc:
            out.append(LintFinding("error", "id", str(exc), 'use "id": "<your-username>/<kernel-slug>"'))
    if not isinstance(title, str) or len(title.strip()) < 5:
        out.append(LintFinding("error", "title", f"{title!r} is missing or shorter than 5 characters",
                               'set "title" to at least 5 characters, e.g. one that slugifies to the id'))
    elif isinstance(kernel_id, str) and "/" in kernel_id and slugify(title) != kernel_id.split("/")[1].lower():
        out.append(LintFinding("warning", "title", f"{title!r} slugifies to {slugify(title)!r}, not the id's slug "
                               f"{kernel_id.split('/')[1]!r}; Kaggle may create a new kernel instead of a version",
                               "make the title match the id's slug"))


def _check_code(folder: Path, meta: dict[str, Any], out: list[LintFinding]) -> None:
    code_file = meta.get("code_file")
    language, kernel_type = meta.get("language"), meta.get("kernel_type")
    if not code_file or not isinstance(code_file, str):
        out.append(LintFinding("error", "code_file", "missing", 'set "code_file" to the notebook or script to run'))
    elif not _inside(folder, folder / code_file):
        out.append(LintFinding("error", "code_file", f"{code_file!r} is outside the kernel folder {folder}",
                               "put the notebook or script in the folder and give its path relative to it"))
    elif not (folder / code_file).is_file():
        out.append(LintFinding("error", "code_file", f"{folder / code_file} does not exist",
                               "render or copy the notebook there first, or correct the path (relative to -p DIR)"))
    elif kernel_type == "notebook":
        problem = _notebook_problem(folder / code_file)
        if problem:
            out.append(LintFinding("error", "code_file", f"{code_file} is not a notebook ({problem})",
                                   'use an .ipynb file, or set "kernel_type": "script"'))
    if language not in LANGUAGES:
        out.append(LintFinding("error", "language", f"{language!r} is not valid", f"use one of {', '.join(LANGUAGES)}"))
    if kernel_type not in KERNEL_TYPES:
        out.append(LintFinding("error", "kernel_type", f"{kernel_type!r} is not valid",
                               f"use one of {', '.join(KERNEL_TYPES)}"))
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in PINNING_TYPES:
        out.append(LintFinding("error", "docker_image_pinning_type", f"{pinning!r} is not valid",
                               f"use one of {', '.join(PINNING_TYPES)}, or leave it out"))


def _inside(folder: Path, path: Path) -> bool:
    """Whether ``path`` (links resolved) lies in ``folder``: the client pushes what the link points to."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _notebook_problem(path: Path) -> str | None:
    """Why ``path`` is not a notebook the server accepts, or None."""
    try:
        notebook = read_json(path)
    except MalformedFileError as exc:
        return str(exc)
    if not isinstance(notebook, dict) or "cells" not in notebook:
        return "no cells"
    return None


def _check_machine(meta: dict[str, Any], out: list[LintFinding]) -> None:
    shape = meta.get("machine_shape")
    if shape is None:
        if meta.get("enable_gpu"):
            out.append(LintFinding("info", "machine_shape", "not set: Kaggle picks its default GPU",
                                   'set "machine_shape": "NvidiaTeslaT4" to say which'))
        return
    if not isinstance(shape, str):
        out.append(LintFinding("error", "machine_shape", f"{shape!r} is not a string",
                               f"use one of {', '.join(MACHINE_SHAPES)}"))
        return
    try:
        runs, retired = resolve_shape(shape)
    except ValueError as exc:
        out.append(LintFinding("error", "machine_shape", str(exc), f"use one of {', '.join(MACHINE_SHAPES)}"))
        return
    if retired:
        out.append(LintFinding("error", "machine_shape", f"{retired} (the server substitutes it silently)",
                               f'use "machine_shape": "{runs}"' if runs else 'leave "machine_shape" out (CPU)'))
    elif runs != shape:
        out.append(LintFinding("error", "machine_shape", f"{shape!r} is not spelled as Kaggle spells it",
                               f'did you mean "{runs}"?'))
    elif MACHINE_SHAPES[runs].gpus and meta.get("enable_gpu") is False:
        out.append(LintFinding("warning", "enable_gpu", f"false although machine_shape is {shape}",
                               'set "enable_gpu": true'))


def _check_sources(meta: dict[str, Any], out: list[LintFinding]) -> None:
    parsers = {"dataset_sources": (parse_dataset, "owner/slug[/N]"), "kernel_sources": (parse_kernel, "owner/slug[/N]"),
               "competition_sources": (parse_competition, "competition-slug"),
               "model_sources": (parse_model, "owner/model/framework/variation/N")}
    for name, (parse, form) in parsers.items():
        value = meta.get(name, [])
        if not isinstance(value, list):
            out.append(LintFinding("error", name, f"{value!r} is not a list", f'use "{name}": ["{form}", ...]'))
            continue
        for ref in value:
            try:
                parse(ref)
            except HandleError as exc:
                out.append(LintFinding("error", name, str(exc), f"write it as {form}"))


def _check_mirroring(meta: dict[str, Any], mirroring: bool, checkpoint_dataset: str | None,
                     out: list[LintFinding]) -> None:
    internet = meta.get("enable_internet")
    if mirroring and internet is not True:
        what = "missing (the client then defaults it to true, the docs to false)" if internet is None else \
            f"{internet!r}"
        out.append(LintFinding("error", "enable_internet", f"{what}, but checkpoints are mirrored to a Kaggle dataset",
                               'set "enable_internet": true'))
    elif internet is None:
        out.append(LintFinding("warning", "enable_internet", "missing: the client defaults it to true, the docs to "
                               "false", 'set "enable_internet" explicitly (false for a competition submission)'))
    if checkpoint_dataset:
        sources = meta.get("dataset_sources", [])
        attached = {_strip_version(s) for s in sources if isinstance(s, str)} if isinstance(sources, list) else set()
        if _strip_version(checkpoint_dataset) not in attached:
            out.append(LintFinding("error", "dataset_sources", f"the checkpoint dataset {checkpoint_dataset} is not "
                                   "attached, so the next session would have to download it to resume",
                                   f'add "{_strip_version(checkpoint_dataset)}" to "dataset_sources"'))
    elif mirroring:
        out.append(LintFinding("info", "dataset_sources", "no checkpoint dataset named, so its attachment was not "
                               "checked", "pass --checkpoint-dataset owner/slug"))


def lint_kernel_metadata(folder: str | os.PathLike[str], *, mirroring: bool = True,
                         checkpoint_dataset: str | None = None) -> list[LintFinding]:
    """Check ``folder/kernel-metadata.json`` before a push.

    Args:
        folder: The folder ``kaggle kernels push -p`` would get.
        mirroring: Checkpoints are mirrored to a Kaggle dataset, so internet must be on explicitly.
        checkpoint_dataset: ``owner/slug`` of the mirror, which must be in ``dataset_sources``.

    Returns:
        Findings, errors first. The last is always the reminder that secrets are attached in the web UI.

    Raises:
        MetadataError: the folder or file is missing, or the file is not a JSON object.
    """
    root = Path(folder)
    meta = _load(root)
    findings: list[LintFinding] = []
    _check_identity(meta, findings)
    _check_code(root, meta, findings)
    _check_machine(meta, findings)
    _check_sources(meta, findings)
    _check_mirroring(meta, mirroring, checkpoint_dataset, findings)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    findings.append(LintFinding("info", "secrets", "secrets cannot be attached through the API",
                                "attach KAGGLE_USERNAME and KAGGLE_KEY once in the web editor (Add-ons > Secrets); "
                                "they stay attached to later versions"))
    return findings


def require_valid_kernel_metadata(folder: str | os.PathLike[str], *, mirroring: bool = True,
                                  checkpoint_dataset: str | None = None) -> list[LintFinding]:
    """Like :func:`lint_kernel_metadata`, but raise when any finding is an error.

    Raises:
        MetadataError: listing each error's field and fix.
    """
    findings = lint_kernel_metadata(folder, mirroring=mirroring, checkpoint_dataset=checkpoint_dataset)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        path = Path(folder) / METADATA_FILE
        raise MetadataError(f"{path} would not push correctly:\n" + "\n".join(f"  {e}" for e in errors))
    return findings
