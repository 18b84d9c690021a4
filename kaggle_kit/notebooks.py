"""Notebooks as source: render them with parameters into pushable kernel folders, and push them.

``notebooks/<kernel>.py`` (jupytext py:percent) holds a cell tagged ``parameters``. :func:`render` writes
``notebooks/build/<kernel>/<kernel>.ipynb`` with an ``injected-parameters`` cell right after it (papermill's
convention) and a ``kernel-metadata.json`` beside it, so ``kaggle kernels push -p notebooks/build/<kernel>`` works,
and so does ``kaggle kernels push -p .`` from the root when the root ``kernel-metadata.json`` (the user's training
kernel) names ``notebooks/build/train/train.ipynb`` as its ``code_file``. :func:`push` renders, lints and pushes one
kernel.

Kernels: ``train`` (GPU and internet on; the code dataset and the checkpoint dataset attached) and ``infer``
(internet off as the competition requires; the code dataset, the checkpoint dataset and the model attached).

The code dataset moved to :mod:`kaggle_kit.code_dataset` and a kernel's status and output to
:mod:`kaggle_kit.kernels`; their old names here still work for one release, with a DeprecationWarning.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import MetadataError
from kaggle_kit.handles import parse_kernel
from kaggle_kit.kernels import push_folder
from kaggle_kit.lint import lint_kernel_metadata
from kaggle_kit.metadata_files import DATASET_METADATA, KERNEL_METADATA, checked_handle, read_metadata

__all__ = [
    "KERNELS",
    "BUILD_DIR",
    "RenderOptions",
    "RenderedKernel",
    "inject_parameters",
    "kernel_ref",
    "push",
    "render",
]

KERNELS = ("train", "infer")
BUILD_DIR = Path("notebooks") / "build"
# Names that moved out of this module, and their new home.
_MOVED = {"stage_code": "kaggle_kit.code_dataset", "publish_code": "kaggle_kit.code_dataset",
          "kernel_status": "kaggle_kit.kernels", "kernel_output": "kaggle_kit.kernels"}


@dataclass
class RenderOptions:
    """What :func:`render` injects and attaches; None means the default from the root's metadata files.

    Attributes:
        config: The workload config (a path relative to the root, or a name the workload ships, e.g. ``tiny``).
        overrides: Dotted ``key=value`` overrides of the config.
        competition: Competition slug; default the root kernel-metadata.json's first competition source.
        code_dataset: The code dataset ``owner/slug``; default the root dataset-metadata.json's id.
        checkpoint_dataset: The checkpoint mirror ``owner/slug``; default ``<owner>/<train-slug>-ckpt``;
            ``""`` for no mirroring.
        datasets: More datasets to attach.
        models: Kaggle Models to attach (``owner/model/framework/variation/N``); default the root's model_sources.
        kernels: Notebook outputs to attach (``owner/slug``), e.g. an earlier Batch run's checkpoints when
            mirroring is off.
        accelerator: The device plan the notebook checks (``auto``, ``gpu``, ``cpu``).
        internet: Internet for the training kernel (default on; off needs ``checkpoint_dataset=""``: nothing can
            be mirrored, checkpoints survive as the Batch output). The inference kernel is always off.
        machine_shape: ``machine_shape`` for the metadata, e.g. ``NvidiaTeslaT4``; None leaves it out.
        infer_id: The inference kernel ``owner/slug``; default ``<owner>/<train-slug>-infer``.
        extra: More parameters to inject (name -> Python literal value).
    """

    config: str = "default"
    overrides: Sequence[str] = ()
    competition: str | None = None
    code_dataset: str | None = None
    checkpoint_dataset: str | None = None
    datasets: Sequence[str] = ()
    models: Sequence[str] | None = None
    kernels: Sequence[str] = ()
    accelerator: str = "auto"
    internet: bool = True
    machine_shape: str | None = None
    infer_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedKernel:
    """One rendered kernel: its folder (pushable with ``kaggle kernels push -p``), notebook and metadata."""

    kernel: str
    folder: Path
    notebook: Path
    metadata: dict[str, Any]
    parameters: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return str(self.metadata["id"])


def _plan(root: Path, kernel: str, options: RenderOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters to inject and the kernel metadata for one kernel."""
    if kernel not in KERNELS:
        raise MetadataError(f"unknown kernel {kernel!r}: render one of {', '.join(KERNELS)}")
    train_meta_path = root / KERNEL_METADATA
    train_meta = read_metadata(train_meta_path, "the training kernel's kernel-metadata.json")
    train_id = checked_handle(str(train_meta.get("id", "")), "kernel id", str(train_meta_path), parse_kernel)
    owner, train_slug = train_id.split("/")
    code_dataset = options.code_dataset
    if code_dataset is None:
        ds_path = root / DATASET_METADATA
        code_dataset = str(read_metadata(ds_path, "the code dataset's dataset-metadata.json").get("id", ""))
        code_dataset = checked_handle(code_dataset, "code dataset id", str(ds_path))
    checkpoint = options.checkpoint_dataset
    if checkpoint is None:
        checkpoint = f"{owner}/{train_slug}-ckpt"
    if checkpoint:
        checkpoint = checked_handle(checkpoint, "checkpoint dataset", "--checkpoint-dataset")
    if kernel == "train" and checkpoint and not options.internet:
        raise MetadataError(f"internet off cannot mirror checkpoints to {checkpoint}: pass --checkpoint-dataset '' "
                            "(checkpoints then survive only as the Batch output) or turn internet on")
    competitions = list(train_meta.get("competition_sources") or [])
    competition = options.competition or (competitions[0] if competitions else None)
    if not competition:
        raise MetadataError(f"{train_meta_path} lists no competition_sources: add the competition slug there "
                            "or pass --competition")
    if competition not in competitions:
        competitions.insert(0, competition)
    models = list(options.models if options.models is not None else train_meta.get("model_sources") or [])
    inherited = list(train_meta.get("dataset_sources", []))
    if not checkpoint:
        # Mirroring off: the root's default checkpoint dataset may not exist, and attaching it would fail the push.
        inherited = [d for d in inherited if d != f"{owner}/{train_slug}-ckpt"]
    datasets = list(dict.fromkeys([*inherited, code_dataset, *options.datasets, *([checkpoint] if checkpoint else [])]))
    kernels = list(dict.fromkeys([*train_meta.get("kernel_sources", []), *options.kernels]))
    parameters: dict[str, Any] = {
        "config": options.config,
        "overrides": list(options.overrides),
        "competition": competition,
        "code_dataset": code_dataset,
        "checkpoint_dataset": checkpoint or None,
        "accelerator_plan": options.accelerator,
        **options.extra,
    }
    if kernel == "train":
        meta = {
            **train_meta,
            "code_file": "train.ipynb",
            "language": "python",
            "kernel_type": "notebook",
            "enable_gpu": options.accelerator != "cpu",
            "enable_internet": options.internet,
            "dataset_sources": datasets,
            "competition_sources": competitions,
            "kernel_sources": kernels,
            "model_sources": models,
        }
    else:
        infer_id = options.infer_id or f"{owner}/{train_slug}-infer"
        infer_id = checked_handle(infer_id, "inference kernel id", "--infer-id", parse_kernel)
        if not checkpoint and not options.kernels:
            raise MetadataError("the inference kernel loads its weights from the checkpoint dataset: pass "
                                "--checkpoint-dataset owner/slug, or --kernel-source owner/slug for a training "
                                "run's output when mirroring is off")
        meta = {
            "id": infer_id,
            "title": infer_id.split("/")[1].replace("-", " "),
            "code_file": "infer.ipynb",
            "language": "python",
            "kernel_type": "notebook",
            "is_private": train_meta.get("is_private", True),
            "enable_gpu": options.accelerator != "cpu",
            "enable_tpu": False,
            "enable_internet": False,
            "dataset_sources": datasets,
            "competition_sources": competitions,
            "kernel_sources": list(options.kernels),
            "model_sources": models,
        }
    if options.machine_shape:
        meta["machine_shape"] = options.machine_shape
    else:
        meta.pop("machine_shape", None)
    return parameters, meta


def _parameters_cell_source(parameters: dict[str, Any]) -> str:
    lines = ["# Parameters"]
    for name, value in parameters.items():
        if not name.isidentifier():
            raise MetadataError(f"parameter name {name!r} is not a Python identifier")
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"


def inject_parameters(notebook: Any, parameters: dict[str, Any], *, source: str) -> Any:
    """Adds an ``injected-parameters`` cell after the cell tagged ``parameters`` (replacing an earlier injection).

    Raises:
        MetadataError: no cell is tagged ``parameters``.
    """
    import nbformat

    cells = [c for c in notebook.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    index = next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise MetadataError(f"{source} has no cell tagged 'parameters': add '# %% tags=[\"parameters\"]' above "
                            "the cell of default parameters")
    injected = nbformat.v4.new_code_cell(_parameters_cell_source(parameters))
    injected.metadata["tags"] = ["injected-parameters"]
    cells.insert(index + 1, injected)
    notebook.cells = cells
    return notebook


def render(
    root: str | os.PathLike[str], kernel: str, options: RenderOptions | None = None, *, out_dir: Path | None = None
) -> RenderedKernel:
    """Renders ``notebooks/<kernel>.py`` into a pushable folder with its kernel-metadata.json.

    Args:
        root: The project root (holds kernel-metadata.json, dataset-metadata.json and notebooks/).
        kernel: ``train`` or ``infer``.
        options: What to inject and attach.
        out_dir: Where the kernel folder goes; default ``<root>/notebooks/build/<kernel>``.

    Raises:
        MetadataError: a metadata file is missing or malformed, or the notebook has no parameters cell.
    """
    import jupytext
    import nbformat

    root = Path(root)
    options = options or RenderOptions()
    parameters, meta = _plan(root, kernel, options)
    source = root / "notebooks" / f"{kernel}.py"
    if not source.is_file():
        raise MetadataError(f"{source} not found: the notebook sources live in notebooks/ under the project root")
    notebook = inject_parameters(jupytext.read(source, fmt="py:percent"), parameters, source=str(source))
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.validate(notebook)
    folder = Path(out_dir) if out_dir is not None else root / BUILD_DIR / kernel
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / meta["code_file"]
    nbformat.write(notebook, target)
    (folder / KERNEL_METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    # Drift from the root metadata matters only for the default build folder, which the root's code_file names.
    warnings = _root_drift(root, meta, target) if kernel == "train" and out_dir is None else ()
    return RenderedKernel(kernel=kernel, folder=folder, notebook=target, metadata=meta, parameters=parameters,
                          warnings=warnings)


def _root_drift(root: Path, rendered: dict[str, Any], notebook: Path) -> tuple[str, ...]:
    """How the root kernel-metadata.json, which a plain ``kaggle kernels push -p .`` uses, differs from the render."""
    meta = read_metadata(root / KERNEL_METADATA, "the training kernel's kernel-metadata.json")
    where = root / KERNEL_METADATA
    found: list[str] = []
    code_file = meta.get("code_file")
    if not code_file or (root / str(code_file)).resolve() != notebook.resolve():
        found.append(f"{where}: code_file is {code_file!r}, so 'kaggle kernels push -p .' would not push the rendered "
                     f"notebook; set it to {notebook.relative_to(root).as_posix()!r}")
    for name in ("dataset_sources", "competition_sources", "kernel_sources", "model_sources"):
        missing = [s for s in rendered.get(name, []) if s not in (meta.get(name) or [])]
        if missing:
            found.append(f"{where}: {name} lacks {', '.join(missing)}; add them so 'kaggle kernels push -p .' "
                         "attaches what the notebook reads")
    for name in ("enable_internet", "enable_gpu", "machine_shape"):
        if name in rendered and meta.get(name) != rendered[name]:
            found.append(f"{where}: {name} is {meta.get(name)!r} but the render uses {rendered[name]!r}")
    return tuple(found)


def push(
    root: str | os.PathLike[str],
    kernel: str,
    options: RenderOptions | None = None,
    *,
    lint: bool = True,
    api: Any = None,
    out_dir: Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Renders, lints and pushes one kernel through the Python API, checking the reply's error fields.

    ``out_dir`` is where the kernel folder is rendered (default ``<root>/notebooks/build/<kernel>``);
    ``timeout_s`` caps the run's time (Kaggle's ``sessionTimeoutSeconds``).

    Returns:
        ``{"ref", "version", "url", "folder"}``.

    Raises:
        MetadataError: the metadata failed the lint.
        KaggleApiError: the server refused the push.
    """
    options = options or RenderOptions()
    rendered = render(root, kernel, options, out_dir=out_dir)
    if lint:
        findings = list(lint_kernel_metadata(
            rendered.folder, mirroring=kernel == "train" and bool(rendered.parameters["checkpoint_dataset"]),
            checkpoint_dataset=rendered.parameters["checkpoint_dataset"],
        ))
        blocking = [f for f in findings if f.severity == "error"]
        for finding in findings:
            if finding not in blocking:
                print(f"lint: {finding}")
        if blocking:
            raise MetadataError(f"{rendered.folder / KERNEL_METADATA} failed the lint:\n  "
                                + "\n  ".join(map(str, blocking)))
    checkpoint = rendered.parameters["checkpoint_dataset"]
    tolerated = [checkpoint] if kernel == "train" and checkpoint else []
    pushed = push_folder(rendered.folder, rendered.ref, api=api, timeout_s=timeout_s, tolerated=tolerated)
    if checkpoint in pushed["tolerated_invalid"]:
        print(f"note: the checkpoint dataset {checkpoint} does not exist yet; the first run's mirror creates it")
    return {"ref": pushed["ref"], "version": pushed["version"], "url": pushed["url"], "folder": str(rendered.folder)}


def kernel_ref(root: str | os.PathLike[str], kernel: str) -> str:
    """The ``owner/slug`` that ``kernel`` stands for: itself when it is one, else the id of ``train`` or ``infer`` as
    rendered under ``root`` (``train`` falls back to the root's kernel-metadata.json before its first render).

    Raises:
        MetadataError: ``kernel`` is neither, or ``infer`` has not been rendered.
    """
    if "/" in kernel:
        return kernel
    if kernel not in KERNELS:
        raise MetadataError(f"{kernel!r} is neither owner/slug nor one of {', '.join(KERNELS)}")
    root = Path(root)
    rendered = root / BUILD_DIR / kernel / KERNEL_METADATA
    if rendered.exists():
        return str(read_metadata(rendered, "a kernel-metadata.json")["id"])
    if kernel == "infer":
        raise MetadataError("the infer kernel has not been rendered: run kaggle-kit render infer, or pass owner/slug")
    return str(read_metadata(root / KERNEL_METADATA, "a kernel-metadata.json")["id"])


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`kaggle_kit.code_dataset` and :mod:`kaggle_kit.kernels`, with a warning."""
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to {home}.{name}: import it from there; the old path goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    from kaggle_kit import code_dataset, kernels

    return getattr(code_dataset if home == code_dataset.__name__ else kernels, name)
