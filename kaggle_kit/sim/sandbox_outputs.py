"""The files Kaggle adds to a Batch session's output, beside what the notebook wrote to ``/kaggle/working``.

Kaggle's output of a version (what ``kaggle kernels output`` lists, and what a notebook source mounts) also holds the
executed code (``__notebook__.ipynb`` for a notebook; ``__script__.py`` and ``__script__.ipynb`` for a script), the
rendered results ``__results__.html`` with its ``custom.css``, and ``__output__.json``. The names are Kaggle's; what
Kaggle writes inside ``__output__.json`` and the HTML is not documented, so the stand-in's are its own: the HTML shows
each cell's source and text and image outputs, and ``__output__.json`` summarises the session (status, failure, run
type, the notebook's own output files).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import nbformat

from kaggle_kit.fileio import atomic_write_json, atomic_write_text
from kaggle_kit.kaggle_platform import KAGGLE_OUTPUT_FILES

__all__ = ["write_kaggle_files"]

_CSS = """body { font-family: sans-serif; margin: 2em; }
.cell { margin-bottom: 1.5em; }
pre.input { background: #f5f5f5; padding: 0.5em; }
pre.output { padding: 0.5em; border-left: 3px solid #ddd; }
pre.error { color: #a00; }
"""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _render_output(output: Mapping[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f'<pre class="output">{html.escape(_text(output.get("text")))}</pre>'
    if kind == "error":
        trace = "\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"])
        return f'<pre class="output error">{html.escape(trace)}</pre>'
    data = output.get("data") or {}
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            return f'<img src="data:{mime};base64,{_text(data[mime]).strip()}">'
    if "text/plain" in data:
        return f'<pre class="output">{html.escape(_text(data["text/plain"]))}</pre>'
    return ""


def results_html(nb: nbformat.NotebookNode, *, title: str) -> str:
    """The executed notebook as a static page: every cell's source, then its outputs."""
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             '<link rel="stylesheet" href="custom.css"></head><body>']
    for cell in nb.cells:
        parts.append('<div class="cell">')
        if cell.cell_type == "code":
            parts.append(f'<pre class="input">{html.escape(_text(cell.source))}</pre>')
            parts.extend(_render_output(output) for output in cell.get("outputs", []))
        else:
            parts.append(f'<pre class="markdown">{html.escape(_text(cell.source))}</pre>')
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _script(nb: nbformat.NotebookNode) -> str:
    return "\n\n".join(_text(cell.source) for cell in nb.cells if cell.cell_type == "code") + "\n"


def write_kaggle_files(output_dir: Path, executed: nbformat.NotebookNode, *, kernel_type: str,
                       summary: Mapping[str, Any]) -> None:
    """Add Kaggle's files to a finished session's output folder (they replace notebook files of the same names)."""
    own = sorted(p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*")
                 if p.is_file() and p.relative_to(output_dir).as_posix() not in KAGGLE_OUTPUT_FILES)
    stem = "__script__" if kernel_type == "script" else "__notebook__"
    for name in KAGGLE_OUTPUT_FILES:
        path = output_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
    if kernel_type == "script":
        atomic_write_text(output_dir / "__script__.py", _script(executed))
    atomic_write_text(output_dir / f"{stem}.ipynb", nbformat.writes(executed))
    atomic_write_text(output_dir / "__results__.html", results_html(executed, title=stem))
    atomic_write_text(output_dir / "custom.css", _CSS)
    atomic_write_json(output_dir / "__output__.json", {**summary, "files": own})

