"""Notebooks as source: render a declared notebook with parameters into a pushable kernel folder, and push it.

Each notebook is declared in the project (see :mod:`kaggle_kit.project`) with its jupytext py:percent source, which
holds a cell tagged ``parameters``. :func:`render` writes ``notebooks/build/<name>/<name>.ipynb`` with an
``injected-parameters`` cell right after it (papermill's convention) and a ``kernel-metadata.json`` beside it, so
``kaggle kernels push -p notebooks/build/<name>`` works. :func:`push` renders, lints and pushes one notebook.

What is injected, and only into names the parameters cell assigns (a name it does not assign is left out; a value the
caller asked for explicitly, such as ``--param`` or ``--set``, is an error instead of being lost):

- ``project``, ``kit_dataset``, ``code_dataset``, ``checkpoint_dataset`` (None when the notebook has no checkpoint
  dataset), ``competition`` (None without one), ``datasets``, ``models``: from the declaration;
- ``config`` (the config file, relative to the root), ``overrides``: checked against the notebook's schema first;
- ``accelerator_plan``: ``cpu`` for no accelerator, ``gpu`` for a GPU, ``auto`` for a TPU;
- ``kernel``: the notebook's own ``owner/slug`` (with ``project`` and ``run_name``, the run's identity without a
  mirror);
- ``run_name`` and ``previous_output``: the run's identity and the earlier session's output, when given;
- the notebook's declared ``parameters`` and the caller's extra ones.

The kernel's accelerator and internet are the declared ones (or the caller's explicit choice): never switched on by
default. No competition is required.

The code dataset moved to :mod:`kaggle_kit.code_dataset` and a kernel's status and output to
:mod:`kaggle_kit.kernels`; their old names here still work for one release, with a DeprecationWarning.
"""

from __future__ import annotations

import ast
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kaggle_kit.errors import DeclarationError, HandleError, MetadataError
from kaggle_kit.handles import parse_competition, parse_dataset, parse_kernel, parse_model
from kaggle_kit.kaggle_platform import resolve_shape
from kaggle_kit.kernels import PushResult, push_folder
from kaggle_kit.lint import lint_kernel_metadata
from kaggle_kit.metadata_files import KERNEL_METADATA, read_metadata
from kaggle_kit.project import NotebookSpec, Project, check_config, load_project

__all__ = [
    "BUILD_DIR",
    "RenderOptions",
    "RenderedKernel",
    "declared_parameters",
    "inject_parameters",
    "kernel_ref",
    "push",
    "render",
]

BUILD_DIR = Path("notebooks") / "build"
# Names that moved out of this module, and their new home.
_MOVED = {"stage_code": "kaggle_kit.code_dataset", "publish_code": "kaggle_kit.code_dataset",
          "kernel_status": "kaggle_kit.kernels", "kernel_output": "kaggle_kit.kernels"}
# Injected only where the parameters cell assigns them; the rest is the caller's explicit choice.
_FROM_DECLARATION = ("project", "kit_dataset", "code_dataset", "checkpoint_dataset", "competition", "datasets",
                     "models", "config", "overrides", "accelerator_plan", "kernel", "run_name", "previous_output")


@dataclass
class RenderOptions:
    """What :func:`render` changes from the declaration; None (or empty) keeps the declared value.

    Attributes:
        config: The config file, relative to the root.
        overrides: Dotted ``key=value`` overrides of the config.
        accelerator: ``none``, ``gpu``, ``tpu`` or a machine shape such as ``NvidiaTeslaT4``.
        internet: Internet for the session.
        checkpoint_dataset: The checkpoint dataset (``owner/slug`` or a slug of the owner); ``""`` for none (then
            checkpoints survive only as a Batch run's output).
        competition: The competition slug.
        datasets: More datasets to attach.
        models: Kaggle Models to attach, replacing the declared ones.
        kernels: Notebook outputs to attach (``owner/slug``).
        params: More parameters to inject (name -> Python literal value); the parameters cell must assign each.
        run_name: The run's name, injected as ``run_name`` (the checkpoints' run identity).
        previous_output: The earlier session's output (``owner/slug`` of a kernel), attached and injected as
            ``previous_output``: how a run without a mirror (internet off) resumes.
    """

    config: str | None = None
    overrides: Sequence[str] = ()
    accelerator: str | None = None
    internet: bool | None = None
    checkpoint_dataset: str | None = None
    competition: str | None = None
    datasets: Sequence[str] = ()
    models: Sequence[str] | None = None
    kernels: Sequence[str] = ()
    params: dict[str, Any] = field(default_factory=dict)
    run_name: str | None = None
    previous_output: str | None = None


@dataclass(frozen=True)
class RenderedKernel:
    """One rendered notebook: its folder (pushable with ``kaggle kernels push -p``), notebook and metadata.

    ``checkpoints`` is how the session uses ``checkpoint_dataset``: ``mirror``, ``read`` or ``none``.
    """

    name: str
    folder: Path
    notebook: Path
    metadata: dict[str, Any]
    parameters: dict[str, Any]
    checkpoints: str = "none"
    checkpoint_dataset: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return str(self.metadata["id"])


def _project(root: str | os.PathLike[str] | Project) -> Project:
    return root if isinstance(root, Project) else load_project(Path(root))


def _accelerator(value: str, where: str) -> tuple[bool, bool, str | None, str]:
    """(enable_gpu, enable_tpu, machine_shape, the notebook's accelerator_plan) for an accelerator setting."""
    lowered = value.strip().lower()
    if lowered in ("none", "cpu"):
        return False, False, None, "cpu"
    if lowered == "gpu":
        return True, False, None, "gpu"
    if lowered == "tpu":
        return False, True, None, "auto"
    try:
        runs, retired = resolve_shape(value)
    except ValueError as exc:
        raise MetadataError(f"{where}: {exc}; or none, gpu, tpu") from None
    if retired:
        raise MetadataError(f"{where}: {retired}: ask for {runs or 'none'}")
    if runs is None:
        return False, False, None, "cpu"
    tpu = runs.startswith("Tpu")
    return not tpu, tpu, runs, "auto" if tpu else "gpu"


def _handle(value: str, owner: str, parse: Any, what: str) -> str:
    try:
        if parse is parse_model:
            parse(value, what=what)  # checked; kept as written (a framework is spelled as Kaggle lists it)
            return value.strip()
        if parse is parse_competition:
            return str(parse(value, what=what))
        full = value if "/" in value else f"{owner}/{value}"
        return str(parse(full, what=what))
    except HandleError as exc:
        raise MetadataError(str(exc)) from None


def declared_parameters(notebook: Any, *, source: str) -> tuple[int, set[str]]:
    """The index of the cell tagged ``parameters`` and the names it assigns.

    Raises:
        MetadataError: no such cell, or it is not valid Python.
    """
    index = next((i for i, c in enumerate(notebook.cells) if "parameters" in c.get("metadata", {}).get("tags", [])),
                 None)
    if index is None:
        raise MetadataError(f"{source} has no cell tagged 'parameters': add '# %% tags=[\"parameters\"]' above "
                            "the cell of default parameters")
    try:
        tree = ast.parse(notebook.cells[index].source)
    except SyntaxError as exc:
        raise MetadataError(f"{source}: the parameters cell is not valid Python (line {exc.lineno}: {exc.msg})"
                            ) from None
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            for item in ast.walk(target):
                if isinstance(item, ast.Name):
                    names.add(item.id)
    return index, names


def _plan(project: Project, spec: NotebookSpec, options: RenderOptions, declared: set[str], source: str
          ) -> tuple[dict[str, Any], dict[str, Any], str, str | None]:
    """The parameters to inject, the kernel metadata, the checkpoint mode and the checkpoint dataset."""
    owner = project.owner
    where = f"notebook {spec.name!r} of {project.file}"
    accelerator = options.accelerator if options.accelerator is not None else (spec.machine_shape or spec.accelerator)
    enable_gpu, enable_tpu, shape, plan = _accelerator(accelerator, "--accelerator" if options.accelerator else where)
    internet = spec.internet if options.internet is None else options.internet
    mode = spec.checkpoints
    checkpoint: str | None = project.checkpoint_dataset
    if options.checkpoint_dataset == "":
        mode, checkpoint = "none", None
    elif options.checkpoint_dataset is not None:
        checkpoint = _handle(options.checkpoint_dataset, owner, parse_dataset, "--checkpoint-dataset")
        mode = "mirror" if mode == "none" and internet else ("read" if mode == "none" else mode)
    if mode == "none":
        checkpoint = None
    if mode == "mirror" and not internet:
        raise MetadataError(f"internet off cannot mirror checkpoints to {checkpoint}: pass --checkpoint-dataset '' "
                            "(checkpoints then survive only as the Batch output) or turn internet on")
    competition = spec.competition
    if options.competition:
        competition = _handle(options.competition, owner, parse_competition, "--competition")
    data = list(dict.fromkeys([*spec.datasets, *(_handle(d, owner, parse_dataset, "--dataset")
                                                 for d in options.datasets)]))
    code = [project.code_dataset, *([project.kit_dataset] if project.kit_dataset else [])]
    datasets = list(dict.fromkeys([*data, *code, *([checkpoint] if checkpoint else [])]))
    previous = _handle(options.previous_output, owner, parse_kernel, "--previous-output") if (
        options.previous_output) else None
    kernels = list(dict.fromkeys([*spec.kernels, *(_handle(k, owner, parse_kernel, "--kernel-source")
                                                   for k in options.kernels), *([previous] if previous else [])]))
    models = list(spec.models) if options.models is None else [
        _handle(m, owner, parse_model, "--model") for m in options.models]
    config, _ = project.config_of(spec)
    config = options.config or config
    check_config(project, spec, config=options.config, overrides=options.overrides)

    available = {
        "project": project.name, "kit_dataset": project.kit_dataset, "code_dataset": project.code_dataset,
        "checkpoint_dataset": checkpoint, "competition": competition, "datasets": data, "models": models,
        "config": config, "overrides": list(options.overrides), "accelerator_plan": plan, "kernel": spec.kernel,
        "run_name": options.run_name, "previous_output": previous,
    }
    parameters = {name: value for name, value in available.items() if name in declared}
    asked = {**spec.parameters, **options.params}
    explicit = [name for name, given in (("config", options.config), ("overrides", options.overrides),
                                         ("run_name", options.run_name), ("previous_output", previous)) if given]
    missing = [name for name in [*explicit, *asked] if name not in declared]
    if missing:
        raise MetadataError(f"{source}: the parameters cell does not assign {', '.join(missing)}, so the value "
                            f"given for it would be lost: add e.g. `{missing[0]} = None` to that cell, or drop it")
    parameters.update(asked)
    meta: dict[str, Any] = {
        "id": spec.kernel,
        "title": spec.title,
        "code_file": f"{spec.name}.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": spec.private,
        "enable_gpu": enable_gpu,
        "enable_tpu": enable_tpu,
        "enable_internet": internet,
        "dataset_sources": datasets,
        "competition_sources": [competition] if competition else [],
        "kernel_sources": kernels,
        "model_sources": models,
    }
    if shape:
        meta["machine_shape"] = shape
    return parameters, meta, mode, checkpoint


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

    notebook.cells = [c for c in notebook.cells
                      if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    index, _ = declared_parameters(notebook, source=source)
    injected = nbformat.v4.new_code_cell(_parameters_cell_source(parameters))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    return notebook


def render(
    root: str | os.PathLike[str] | Project, notebook: str, options: RenderOptions | None = None, *,
    out_dir: Path | None = None,
) -> RenderedKernel:
    """Renders a declared notebook into a pushable folder with its kernel-metadata.json.

    Args:
        root: The project root (or the loaded :class:`~kaggle_kit.project.Project`).
        notebook: The declared notebook's name.
        options: What to change from the declaration.
        out_dir: Where the kernel folder goes; default ``<root>/notebooks/build/<notebook>``.

    Raises:
        DeclarationError: no such notebook, or a malformed declaration.
        ConfigError: the config does not load with the notebook's schema (naming the file and the key).
        MetadataError: the source is missing or has no parameters cell, a parameter the cell does not assign.
    """
    import jupytext
    import nbformat

    project = _project(root)
    spec = project.notebook(notebook)
    options = options or RenderOptions()
    source = project.root / spec.source
    if not source.is_file():
        raise DeclarationError(f"{project.file}: notebook {notebook!r}: source {spec.source} not found under "
                               f"{project.root}")
    try:
        nb = jupytext.read(source, fmt="py:percent")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MetadataError(f"{source} cannot be read as a py:percent notebook: {exc}") from None
    _, declared = declared_parameters(nb, source=str(source))
    parameters, meta, mode, checkpoint = _plan(project, spec, options, declared, str(source))
    nb = inject_parameters(nb, parameters, source=str(source))
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    folder = Path(out_dir) if out_dir is not None else project.root / BUILD_DIR / notebook
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / meta["code_file"]
    nbformat.write(nb, target)
    (folder / KERNEL_METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    # A root kernel-metadata.json (for 'kaggle kernels push -p .') matters only for the default build folder.
    drift = _root_drift(project.root, meta, target) if out_dir is None else ()
    return RenderedKernel(name=notebook, folder=folder, notebook=target, metadata=meta, parameters=parameters,
                          checkpoints=mode, checkpoint_dataset=checkpoint, warnings=drift)


def _root_drift(root: Path, rendered: dict[str, Any], notebook: Path) -> tuple[str, ...]:
    """How the root kernel-metadata.json, which a plain ``kaggle kernels push -p .`` uses, differs from the render
    (only when it names this kernel)."""
    where = root / KERNEL_METADATA
    if not where.is_file():
        return ()
    meta = read_metadata(where, "the root's kernel-metadata.json")
    if str(meta.get("id", "")).lower() != rendered["id"]:
        return ()
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
    for name in ("enable_internet", "enable_gpu", "enable_tpu", "machine_shape"):
        if meta.get(name, rendered.get(name)) != rendered.get(name):
            found.append(f"{where}: {name} is {meta.get(name)!r} but the render uses {rendered.get(name)!r}")
    return tuple(found)


def push(
    root: str | os.PathLike[str] | Project,
    notebook: str,
    options: RenderOptions | None = None,
    *,
    lint: bool = True,
    api: Any = None,
    out_dir: Path | None = None,
    timeout_s: float | None = None,
) -> PushResult:
    """Renders, lints and pushes one declared notebook through the Python API, reading the reply's error fields.

    ``out_dir`` is where the kernel folder is rendered (default ``<root>/notebooks/build/<notebook>``);
    ``timeout_s`` caps the run's time (Kaggle's ``sessionTimeoutSeconds``).

    Returns:
        The :class:`~kaggle_kit.kernels.PushResult`: a version may have been created (and be running) although the
        server reported problems; ``problems`` lists them.

    Raises:
        MetadataError: the declaration, the config or the metadata failed its checks.
        KaggleApiError: the server created no version.
    """
    rendered = render(root, notebook, options, out_dir=out_dir)
    if lint:
        findings = list(lint_kernel_metadata(rendered.folder, mirroring=rendered.checkpoints == "mirror",
                                             checkpoint_dataset=rendered.checkpoint_dataset))
        blocking = [f for f in findings if f.severity == "error"]
        for finding in findings:
            if finding not in blocking:
                print(f"lint: {finding}")
        if blocking:
            raise MetadataError(f"{rendered.folder / KERNEL_METADATA} failed the lint:\n  "
                                + "\n  ".join(map(str, blocking)))
    # The mirror creates the checkpoint dataset on its first upload: before that the server calls it invalid.
    tolerated = [rendered.checkpoint_dataset] if rendered.checkpoints == "mirror" and rendered.checkpoint_dataset else []
    result = push_folder(rendered.folder, rendered.ref, api=api, timeout_s=timeout_s, tolerated=tolerated)
    if rendered.checkpoint_dataset in result.tolerated_invalid:
        print(f"note: the checkpoint dataset {rendered.checkpoint_dataset} does not exist yet; the first run's mirror "
              "creates it")
    return result


def kernel_ref(root: str | os.PathLike[str] | Project, kernel: str) -> str:
    """The ``owner/slug`` that ``kernel`` stands for: itself when it is one, else the kernel of the declared notebook
    of that name.

    Raises:
        DeclarationError: no declaration, or no notebook of that name.
    """
    if "/" in kernel:
        return kernel
    return _project(root).notebook(kernel).kernel


def __getattr__(name: str) -> Any:
    """The names that moved to :mod:`kaggle_kit.code_dataset` and :mod:`kaggle_kit.kernels`, with a warning."""
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to {home}.{name}: import it from there; the old path goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    from kaggle_kit import code_dataset, kernels

    return getattr(code_dataset if home == code_dataset.__name__ else kernels, name)
