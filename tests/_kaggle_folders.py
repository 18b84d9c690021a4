"""Folders the real `kaggle` CLI pushes: a dataset with its metadata, a notebook kernel with its metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SIM_USER = "alice"


def dataset_folder(folder: Path, slug: str, files: dict[str, bytes | str], *, title: str = "Offline test data"
                   ) -> Path:
    """``folder`` holding ``files`` (name -> text or bytes, sub-folders made) and a dataset-metadata.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
    meta = {"id": f"{SIM_USER}/{slug}", "title": title, "licenses": [{"name": "CC0-1.0"}]}
    (folder / "dataset-metadata.json").write_text(json.dumps(meta))
    return folder


def kernel_folder(folder: Path, slug: str, cells: list[str], **meta: Any) -> Path:
    """``folder`` holding a notebook of ``cells`` and its kernel-metadata.json (``meta`` overrides fields)."""
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, str(folder / "notebook.ipynb"))
    metadata = {"id": f"{SIM_USER}/{slug}", "title": slug.replace("-", " "), "code_file": "notebook.ipynb",
                "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": False,
                "enable_internet": False, "dataset_sources": [], "kernel_sources": [], "competition_sources": []}
    metadata.update(meta)
    (folder / "kernel-metadata.json").write_text(json.dumps(metadata))
    return folder
