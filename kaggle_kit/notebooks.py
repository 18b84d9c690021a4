"""Notebooks as source: render them with parameters, publish the code, push kernels, follow their runs.

``notebooks/<kernel>.py`` (jupytext py:percent) holds a cell tagged ``parameters``. :func:`render` writes
``notebooks/build/<kernel>/<kernel>.ipynb`` with an ``injected-parameters`` cell right after it (papermill's
convention) and a ``kernel-metadata.json`` beside it, so ``kaggle kernels push -p notebooks/build/<kernel>`` works,
and so does ``kaggle kernels push -p .`` from the root when the root ``kernel-metadata.json`` (the user's training
kernel) names ``notebooks/build/train/train.ipynb`` as its ``code_file``.

Kernels: ``train`` (GPU and internet on; the code dataset and the checkpoint dataset attached) and ``infer``
(internet off as the competition requires; the code dataset, the checkpoint dataset and the model attached).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from kaggle_kit.errors import HandleError, KaggleApiError, MetadataError
from kaggle_kit.handles import parse_dataset, parse_kernel

__all__ = [
    "KERNELS",
    "BUILD_DIR",
    "RenderOptions",
    "RenderedKernel",
    "render",
    "stage_code",
    "publish_code",
    "push",
    "kernel_status",
    "kernel_output",
    "add_commands",
]

KERNELS = ("train", "infer")
BUILD_DIR = Path("notebooks") / "build"
_KERNEL_METADATA = "kernel-metadata.json"
_DATASET_METADATA = "dataset-metadata.json"
# Staging the code dataset leaves these out: history, environments, build outputs, caches and secrets.
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "env", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", ".ipynb_checkpoints", "build", "dist", ".kaggle-kit", "kaggle-kit-rehearsal",
              ".kaggle", ".idea", ".vscode", "node_modules"}
_SECRET_NAMES = {"kaggle.json", "access_token", ".env", ".netrc", "credentials", "id_rsa", "id_ed25519"}
_SECRET_SUFFIXES = (".pem", ".key")


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


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetadataError(f"{path} not found: the root needs {what}") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}): fix the file") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{path} must hold a JSON object")
    return data


def _check_handle(value: str, what: str, source: str, parse: Callable[..., Any] = parse_dataset) -> str:
    try:
        return str(parse(value, what=what, versioned=False))
    except HandleError as exc:
        raise MetadataError(f"{exc} (from {source}): fix it there") from None


def _plan(root: Path, kernel: str, options: RenderOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters to inject and the kernel metadata for one kernel."""
    if kernel not in KERNELS:
        raise MetadataError(f"unknown kernel {kernel!r}: render one of {', '.join(KERNELS)}")
    train_meta_path = root / _KERNEL_METADATA
    train_meta = _read_json(train_meta_path, "the training kernel's kernel-metadata.json")
    train_id = _check_handle(str(train_meta.get("id", "")), "kernel id", str(train_meta_path), parse_kernel)
    owner, train_slug = train_id.split("/")
    code_dataset = options.code_dataset
    if code_dataset is None:
        ds_path = root / _DATASET_METADATA
        code_dataset = str(_read_json(ds_path, "the code dataset's dataset-metadata.json").get("id", ""))
        code_dataset = _check_handle(code_dataset, "code dataset id", str(ds_path))
    checkpoint = options.checkpoint_dataset
    if checkpoint is None:
        checkpoint = f"{owner}/{train_slug}-ckpt"
    if checkpoint:
        checkpoint = _check_handle(checkpoint, "checkpoint dataset", "--checkpoint-dataset")
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
        infer_id = _check_handle(infer_id, "inference kernel id", "--infer-id", parse_kernel)
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
    (folder / _KERNEL_METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    # Drift from the root metadata matters only for the default build folder, which the root's code_file names.
    warnings = _root_drift(root, meta, target) if kernel == "train" and out_dir is None else ()
    return RenderedKernel(kernel=kernel, folder=folder, notebook=target, metadata=meta, parameters=parameters,
                          warnings=warnings)


def _root_drift(root: Path, rendered: dict[str, Any], notebook: Path) -> tuple[str, ...]:
    """How the root kernel-metadata.json, which a plain ``kaggle kernels push -p .`` uses, differs from the render."""
    meta = _read_json(root / _KERNEL_METADATA, "the training kernel's kernel-metadata.json")
    where = root / _KERNEL_METADATA
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


def _is_secret(path: Path) -> bool:
    name = path.name
    return name in _SECRET_NAMES or name.startswith(".env") or name.endswith(_SECRET_SUFFIXES)


def stage_code(root: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Copies the project into ``dest`` for the code dataset, leaving out history, environments, build outputs,
    caches and secrets (kaggle.json, access_token, .env files, keys); refuses a file holding the API key or token.

    Returns:
        The staged files, relative to ``dest``.

    Raises:
        CredentialError: a file to be published contains the current Kaggle key or token.
    """
    from kaggle_kit.errors import CredentialError
    from kaggle_kit.kaggle_api import find_credentials

    root, dest = Path(root).resolve(), Path(dest)
    creds = find_credentials()
    secrets = [s.encode() for s in (creds.key, creds.token) if s and len(s) >= 8] if creds else []
    staged: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in _SKIP_DIRS and not d.endswith(".egg-info") and not (here / d / "pyvenv.cfg").exists()
            and (here / d).resolve() != dest.resolve()
        )
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root)
            if _is_secret(path) or path.is_symlink() or name.endswith(".pyc"):
                continue
            data = path.read_bytes()
            if any(secret in data for secret in secrets):
                raise CredentialError(f"{rel} contains your Kaggle API key or token: remove it before publishing "
                                      "the code (the code dataset may be public or shared)")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            staged.append(rel)
    return staged


def _response_error(response: Any, what: str, *, tolerated: Sequence[str] = ()) -> None:
    """Raises KaggleApiError when a reply reports a server-side error (the CLI would still exit 0).

    ``tolerated`` sources may be reported invalid without failing (a mirror dataset the first run creates).
    """
    if response is None:
        raise KaggleApiError(f"{what}: the server sent no reply")
    error = getattr(response, "error", None)
    status = getattr(response, "status", None)
    problems = [f"error: {error}"] if error else []
    if status and str(status).lower() not in ("ok", "", "none"):
        problems.append(f"status: {status}")
    for name in ("invalid_tags", "invalid_dataset_sources", "invalid_competition_sources", "invalid_kernel_sources",
                 "invalid_model_sources"):
        bad = [b for b in getattr(response, name, None) or [] if b not in tolerated]
        if bad:
            problems.append(f"{name.replace('_', ' ')}: {', '.join(map(str, bad))}")
    if problems:
        raise KaggleApiError(f"{what} failed on the server: " + "; ".join(problems))


def publish_code(
    root: str | os.PathLike[str], *, notes: str = "kaggle-kit publish-code", api: Any = None
) -> dict[str, Any]:
    """Versions the code dataset named by the root's dataset-metadata.json (creating it the first time).

    Sub-folders travel zipped (``dir_mode="zip"``) and Kaggle unpacks them, so the package keeps its layout.

    Returns:
        ``{"ref", "created", "files", "url"}``.

    Raises:
        MetadataError: dataset-metadata.json is missing or malformed.
        KaggleApiError: the server refused the upload.
    """
    from kaggle_kit.kaggle_api import make_api

    root = Path(root)
    meta = _read_json(root / _DATASET_METADATA, "the code dataset's dataset-metadata.json")
    ref = _check_handle(str(meta.get("id", "")), "dataset id", str(root / _DATASET_METADATA))
    api = api or make_api()
    with tempfile.TemporaryDirectory(prefix="kaggle-kit-code-") as tmp:
        staged = stage_code(root, Path(tmp) / "code")
        folder = Path(tmp) / "code"
        (folder / _DATASET_METADATA).write_text(json.dumps(meta, indent=2))
        created = not _dataset_exists(api, ref)
        try:
            if created:
                response = api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip")
            else:
                response = api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip")
        except (ValueError, OSError) as exc:
            raise KaggleApiError(f"publishing {ref} failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
            raise KaggleApiError(f"publishing {ref} failed: {_http_message(exc)}") from exc
    _response_error(response, f"publishing the code dataset {ref}")
    return {"ref": ref, "created": created, "files": [str(p) for p in staged], "url": getattr(response, "url", None)}


def _http_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return f"HTTP {response.status_code}: {response.json().get('message', response.text)}"
        except ValueError:
            return f"HTTP {response.status_code}: {response.text[:200]}"
    return str(exc)


def _dataset_exists(api: Any, ref: str) -> bool:
    try:
        api.dataset_status(ref)
    except Exception as exc:  # noqa: BLE001 - a 404 means "not created yet"; anything else is reported
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (403, 404):
            return False
        raise KaggleApiError(f"checking whether {ref} exists failed: {_http_message(exc)}") from exc
    return True


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
    from kaggle_kit.kaggle_api import make_api

    options = options or RenderOptions()
    rendered = render(root, kernel, options, out_dir=out_dir)
    if lint:
        from kaggle_kit.lint import lint_kernel_metadata

        findings = list(lint_kernel_metadata(
            rendered.folder, mirroring=kernel == "train" and bool(rendered.parameters["checkpoint_dataset"]),
            checkpoint_dataset=rendered.parameters["checkpoint_dataset"],
        ))
        blocking = [f for f in findings if f.severity == "error"]
        for finding in findings:
            if finding not in blocking:
                print(f"lint: {finding}")
        if blocking:
            raise MetadataError(f"{rendered.folder / _KERNEL_METADATA} failed the lint:\n  "
                                + "\n  ".join(map(str, blocking)))
    api = api or make_api()
    try:
        response = api.kernels_push(str(rendered.folder), timeout=str(int(timeout_s)) if timeout_s else None)
    except ValueError as exc:
        raise MetadataError(f"{rendered.folder / _KERNEL_METADATA}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError carries the server's message
        raise KaggleApiError(f"pushing {rendered.ref} failed: {_http_message(exc)}") from exc
    checkpoint = rendered.parameters["checkpoint_dataset"]
    tolerated = [checkpoint] if kernel == "train" and checkpoint else []
    if checkpoint and checkpoint in (getattr(response, "invalid_dataset_sources", None) or []) and tolerated:
        print(f"note: the checkpoint dataset {checkpoint} does not exist yet; the first run's mirror creates it")
    _response_error(response, f"pushing {rendered.ref}", tolerated=tolerated)
    return {"ref": getattr(response, "ref", None) or rendered.ref, "version": getattr(response, "version_number", None),
            "url": getattr(response, "url", None), "folder": str(rendered.folder)}


def kernel_status(ref: str, *, api: Any = None) -> dict[str, Any]:
    """The latest run's status of a kernel: ``{"ref", "status", "failure_message"}``.

    Raises:
        KaggleApiError: the server refused the call (a wrong slug, a private kernel of someone else).
    """
    from kaggle_kit.kaggle_api import make_api

    api = api or make_api()
    try:
        response = api.kernels_status(ref)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise KaggleApiError(f"status of {ref} failed: {_http_message(exc)}") from exc
    status = getattr(response, "status", None)
    name = getattr(status, "name", status)
    return {"ref": ref, "status": str(name).removeprefix("KERNEL_WORKER_STATUS_") if name is not None else None,
            "failure_message": getattr(response, "failure_message", None) or None}


def kernel_output(ref: str, dest: str | os.PathLike[str], *, api: Any = None) -> list[Path]:
    """Downloads a kernel's latest output files and log into ``dest``.

    Raises:
        KaggleApiError: the server refused the call.
    """
    from kaggle_kit.kaggle_api import make_api

    api = api or make_api()
    Path(dest).mkdir(parents=True, exist_ok=True)
    try:
        files, _ = api.kernels_output(ref, str(dest), force=True, quiet=True)
    except Exception as exc:  # noqa: BLE001 - requests' HTTPError and the client's ValueError
        raise KaggleApiError(f"output of {ref} failed: {_http_message(exc)}") from exc
    return [Path(f) for f in files]


def _find_project_root(arg: str | None) -> Path:
    from kaggle_kit.root import find_root

    return Path(arg) if arg else find_root().path


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    import ast

    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise MetadataError(f"--param {item!r}: write NAME=VALUE, e.g. --param checkpoint_every_minutes=5")
        try:
            params[name.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[name.strip()] = raw  # a bare word is a string
    return params


def _options(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(
        config=args.config, overrides=tuple(args.set or ()), competition=args.competition,
        code_dataset=args.code_dataset, checkpoint_dataset=args.checkpoint_dataset, datasets=tuple(args.dataset or ()),
        models=tuple(args.model) if args.model else None, kernels=tuple(args.kernel_source or ()),
        accelerator=args.accelerator, internet=args.internet == "on",
        machine_shape=args.machine_shape, infer_id=args.infer_id, extra=_parse_params(args.param or ()),
    )


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="project root (default: found from the current folder)")
    parser.add_argument("--config", default="default", help="workload config: a path under the root or a shipped "
                        "name such as tiny (default: default)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--competition", help="competition slug (default: from kernel-metadata.json)")
    parser.add_argument("--code-dataset", help="code dataset owner/slug (default: from dataset-metadata.json)")
    parser.add_argument("--checkpoint-dataset", help="checkpoint mirror owner/slug (default: <owner>/<kernel>-ckpt; "
                        "'' for no mirroring)")
    parser.add_argument("--dataset", action="append", help="another dataset to attach (repeatable)")
    parser.add_argument("--model", action="append", help="Kaggle Model to attach (repeatable; default: "
                        "kernel-metadata.json's model_sources)")
    parser.add_argument("--kernel-source", action="append", help="a notebook's output to attach, owner/slug "
                        "(repeatable), e.g. the previous run's checkpoints when mirroring is off")
    parser.add_argument("--accelerator", default="auto", choices=("auto", "gpu", "cpu"), help="device plan")
    parser.add_argument("--internet", default="on", choices=("on", "off"), help="internet for the training kernel "
                        "(off needs --checkpoint-dataset '')")
    parser.add_argument("--machine-shape", help="kernel machine_shape, e.g. NvidiaTeslaT4")
    parser.add_argument("--infer-id", help="inference kernel owner/slug (default: <owner>/<kernel>-infer)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="another notebook parameter as a "
                        "Python literal, e.g. checkpoint_every_minutes=5 or train_options={'num_workers':2}")


def _render_command(args: argparse.Namespace) -> int:
    root = _find_project_root(args.root)
    kernels = KERNELS if args.kernel == "all" else (args.kernel,)
    for kernel in kernels:
        rendered = render(root, kernel, _options(args))
        print(f"{kernel}: {rendered.notebook} ({rendered.ref}); push with: kaggle kernels push -p {rendered.folder}")
        for warning in rendered.warnings:
            print(f"warning: {warning}")
    return 0


def _publish_command(args: argparse.Namespace) -> int:
    result = publish_code(_find_project_root(args.root), notes=args.notes)
    verb = "created" if result["created"] else "versioned"
    print(f"{verb} {result['ref']} with {len(result['files'])} files")
    return 0


def _push_command(args: argparse.Namespace) -> int:
    result = push(_find_project_root(args.root), args.kernel, _options(args), lint=not args.no_lint)
    print(f"pushed {result['ref']} version {result['version']}: {result['url']}")
    return 0


def _resolve_ref(value: str, root_arg: str | None) -> str:
    if "/" in value:
        return value
    root = _find_project_root(root_arg)
    folder = root / BUILD_DIR / value
    meta_path = folder / _KERNEL_METADATA if (folder / _KERNEL_METADATA).exists() else root / _KERNEL_METADATA
    if value not in KERNELS:
        raise MetadataError(f"{value!r} is neither owner/slug nor one of {', '.join(KERNELS)}")
    if value == "infer" and meta_path.parent == root:
        raise MetadataError("the infer kernel has not been rendered: run kaggle-kit render infer, or pass owner/slug")
    return str(_read_json(meta_path, "a kernel-metadata.json")["id"])


def _status_command(args: argparse.Namespace) -> int:
    result = kernel_status(_resolve_ref(args.kernel, args.root))
    line = f"{result['ref']}: {result['status']}"
    print(line + (f" ({result['failure_message']})" if result["failure_message"] else ""))
    return 0 if result["status"] != "ERROR" else 1


def _output_command(args: argparse.Namespace) -> int:
    ref = _resolve_ref(args.kernel, args.root)
    dest = Path(args.dest or Path("kernel-output") / ref.split("/")[1])
    files = kernel_output(ref, dest)
    print(f"{len(files)} files of {ref} in {dest}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``render``, ``publish-code``, ``push``, ``status`` and ``output``."""
    render_p = subparsers.add_parser("render", help="render notebooks/*.py into pushable kernel folders")
    render_p.add_argument("kernel", nargs="?", default="all", choices=(*KERNELS, "all"))
    _add_render_arguments(render_p)
    render_p.set_defaults(func=_render_command)

    publish_p = subparsers.add_parser("publish-code", help="version the code dataset from dataset-metadata.json")
    publish_p.add_argument("--root", help="project root (default: found from the current folder)")
    publish_p.add_argument("--notes", default="kaggle-kit publish-code", help="version notes")
    publish_p.set_defaults(func=_publish_command)

    push_p = subparsers.add_parser("push", help="render, lint and push a kernel through the API")
    push_p.add_argument("kernel", choices=KERNELS)
    push_p.add_argument("--no-lint", action="store_true", help="skip the metadata lint")
    _add_render_arguments(push_p)
    push_p.set_defaults(func=_push_command)

    for name, func, help_text in (("status", _status_command, "the latest run's status of a kernel"),
                                  ("output", _output_command, "download a kernel's latest output and log")):
        sub = subparsers.add_parser(name, help=help_text)
        sub.add_argument("kernel", nargs="?", default="train", help="train, infer or owner/slug (default: train)")
        sub.add_argument("--root", help="project root (default: found from the current folder)")
        if name == "output":
            sub.add_argument("--dest", help="download folder (default: kernel-output/<slug>)")
        sub.set_defaults(func=func)
