"""The project declaration: what a repository trains on Kaggle, in one place.

A project declares itself in ``pyproject.toml`` under ``[tool.kaggle-kit]``, or with the same tables at the top level
of a ``kaggle-kit.toml`` (one or the other; both is an error naming both). :func:`load_project` reads and validates
it (every error names the file and the key) and fills in the defaults; the commands (``render``, ``push``,
``status``, ``output``, ``publish-code``, ``rehearse``) and the root search read it from here only.

Example (every key but ``name``, ``owner`` and a notebook's ``source`` is optional)::

    [tool.kaggle-kit]
    name = "digits"                        # the project; the root search prefers the declaration of this name
    owner = "alice"                        # the Kaggle user owning the kernels and datasets
    code-dataset = "digits-code"           # slug or owner/slug; default <name>-code
    kit-dataset = "kaggle-kit"             # the kit attached as a dataset; default kaggle-kit; "" = none needed
    checkpoint-dataset = "digits-ckpt"     # the checkpoint mirror; default <name>-ckpt
    config = "configs/train.yaml"          # the config file the notebooks load
    config-schema = "digits.config:Config" # the dataclass it loads into

    [tool.kaggle-kit.notebooks.train]
    source = "notebooks/train.py"          # jupytext py:percent with a cell tagged "parameters"
    kernel = "digits-train"                # slug or owner/slug; default <name>-<notebook>
    accelerator = "none"                   # none, gpu, tpu or a machine shape (NvidiaTeslaT4, ...)
    internet = true
    checkpoints = "mirror"                 # mirror (write the mirror), read (attach it), none
    competition = "titanic"                # optional
    datasets = ["alice/digits-data"]
    models = []
    kernels = []                           # notebook outputs to attach
    parameters = { checkpoint_every_minutes = 10.0 }

    [tool.kaggle-kit.publish]              # publish-code: what git tracks, plus include, minus exclude
    include = ["configs/*.yaml"]
    exclude = ["data/**"]

    [tool.kaggle-kit.rehearse]             # kaggle-kit rehearse
    notebook = "train"
    data = "digits.data:write_dataset"     # (dest, seed) -> the held-out labels file or None
    config = "configs/rehearse.yaml"
    score = "digits.data:score"            # (labels, submission) -> float
    baseline = "digits.data:baseline"      # (data folder, labels) -> float
    infer = "infer"
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping

from kaggle_kit.errors import ConfigError, DeclarationError, HandleError
from kaggle_kit.handles import parse_competition, parse_dataset, parse_kernel, parse_model, parse_owner, slugify
from kaggle_kit.kaggle_platform import resolve_shape

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CHECKPOINT_MODES",
    "DECLARATION_FILE",
    "KERNEL_OUTPUT_DIR",
    "PYPROJECT",
    "REHEARSAL_DIR",
    "RUNS_DIR",
    "TABLE",
    "NotebookSpec",
    "Project",
    "PublishRules",
    "RehearseSpec",
    "check_config",
    "declaration_file",
    "declared_name",
    "import_object",
    "load_project",
]

PYPROJECT = "pyproject.toml"
# Folders the kit writes inside a project, which never travel in its code dataset.
KERNEL_OUTPUT_DIR = "kernel-output"  # `kaggle-kit output` downloads here
REHEARSAL_DIR = "kaggle-kit-rehearsal"  # `kaggle-kit rehearse` works here
RUNS_DIR = "kaggle-kit-runs"  # `kaggle-kit run` keeps each run's state and downloaded outputs here
DECLARATION_FILE = "kaggle-kit.toml"
TABLE = "tool.kaggle-kit"
DEFAULT_KIT_DATASET_SLUG = "kaggle-kit"
CHECKPOINT_MODES = ("mirror", "read", "none")
_MAX_BYTES = 1_000_000
_NOTEBOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}")
_OBJECT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

_TOP_KEYS = ("name", "owner", "code-dataset", "kit-dataset", "checkpoint-dataset", "config", "config-schema",
             "notebooks", "publish", "rehearse")
_NOTEBOOK_KEYS = ("source", "kernel", "title", "accelerator", "internet", "checkpoints", "competition", "datasets",
                  "models", "kernels", "private", "config", "config-schema", "parameters")
_PUBLISH_KEYS = ("include", "exclude")
_REHEARSE_KEYS = ("notebook", "infer", "data", "score", "baseline", "baseline-name", "config", "overrides",
                  "kill-after")


@dataclass(frozen=True)
class NotebookSpec:
    """One declared notebook and what its kernel attaches.

    Attributes:
        name: The name commands take (``kaggle-kit render train``).
        source: The jupytext source, relative to the root.
        kernel: The kernel's ``owner/slug``.
        title: The kernel's title.
        accelerator: ``none``, ``gpu``, ``tpu`` or the machine shape as declared.
        machine_shape: The shape for kernel-metadata.json (None: Kaggle's default for the flags).
        internet: Internet on in the session.
        checkpoints: ``mirror`` (the session writes the checkpoint dataset), ``read`` (it is attached for reading),
            ``none``.
        competition: The competition slug, or None.
        datasets, models, kernels: More sources to attach.
        private: The kernel is private.
        config, config_schema: This notebook's config file and schema (default: the project's).
        parameters: Values injected into the parameters cell.
    """

    name: str
    source: str
    kernel: str
    title: str
    accelerator: str = "none"
    machine_shape: str | None = None
    internet: bool = True
    checkpoints: str = "mirror"
    competition: str | None = None
    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    private: bool = True
    config: str | None = None
    config_schema: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def enable_gpu(self) -> bool:
        return self.accelerator not in ("none", "tpu") and not (self.machine_shape or "").startswith("Tpu")

    @property
    def enable_tpu(self) -> bool:
        return self.accelerator == "tpu" or (self.machine_shape or "").startswith("Tpu")


@dataclass(frozen=True)
class PublishRules:
    """What ``publish-code`` uploads besides what git tracks (``include``), and what it leaves out (``exclude``).
    Without git, ``include`` is the whole selection (empty: every file)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class RehearseSpec:
    """What ``kaggle-kit rehearse`` needs.

    Attributes:
        notebook: The training notebook to rehearse.
        infer: A notebook run after training (internet off) whose ``submission.csv`` is scored; None for none.
        data: ``module:function`` ``(dest: Path, seed: int) -> Path | None``: writes the synthetic data the notebook
            reads into ``dest`` (attached as the notebook's competition, else as its first dataset) and returns the
            held-out labels file (kept outside ``dest``) or None.
        score: ``module:function`` ``(labels: Path, submission: Path) -> float``.
        baseline: ``module:function`` ``(data: Path, labels: Path) -> float``: the trivial submission's score.
        baseline_name: What the trivial submission predicts.
        config: The small config the rehearsal trains with (default: the project's).
        overrides: Dotted overrides on top of it.
        kill_after: Seconds after which the first training session is killed (0: no kill), or ``"auto"``: half-way
            through the training of an uninterrupted reference run, which the resumed run must then match.
    """

    notebook: str
    infer: str | None = None
    data: str | None = None
    score: str | None = None
    baseline: str | None = None
    baseline_name: str = "trivial"
    config: str | None = None
    overrides: tuple[str, ...] = ()
    kill_after: float | str = "auto"


@dataclass(frozen=True)
class Project:
    """A validated project declaration with its defaults filled in."""

    root: Path
    file: Path
    name: str
    owner: str
    code_dataset: str
    kit_dataset: str | None
    checkpoint_dataset: str
    notebooks: Mapping[str, NotebookSpec]
    config: str | None = None
    config_schema: str | None = None
    publish: PublishRules = PublishRules()
    rehearse: RehearseSpec | None = None

    def notebook(self, name: str) -> NotebookSpec:
        """The notebook declared as ``name``.

        Raises:
            DeclarationError: no such notebook, listing the declared ones.
        """
        if name in self.notebooks:
            return self.notebooks[name]
        raise DeclarationError(f"{self.file}: no notebook {name!r} is declared (declared: "
                               f"{', '.join(self.notebooks) or 'none'}); add [{self.table}.notebooks.{name}]")

    @property
    def table(self) -> str:
        return TABLE if self.file.name == PYPROJECT else "tool.kaggle-kit (top level)"

    def config_of(self, notebook: NotebookSpec) -> tuple[str | None, str | None]:
        """The config file and schema ``notebook`` loads (its own, else the project's)."""
        return notebook.config or self.config, notebook.config_schema or self.config_schema


def declaration_file(folder: str | Path) -> Path | None:
    """The file that declares the project in ``folder``, or None.

    Raises:
        DeclarationError: both ``pyproject.toml`` (with ``[tool.kaggle-kit]``) and ``kaggle-kit.toml`` declare it.
    """
    folder = Path(folder)
    standalone = folder / DECLARATION_FILE
    pyproject = folder / PYPROJECT
    in_pyproject = pyproject.is_file() and _tool_table(_read_toml(pyproject)) is not None
    if standalone.is_file() and in_pyproject:
        raise DeclarationError(f"the project is declared twice: in {pyproject} [{TABLE}] and in {standalone}; "
                               "keep one of the two")
    if standalone.is_file():
        return standalone
    return pyproject if in_pyproject else None


def declared_name(folder: str | Path) -> str | None:
    """The project name declared in ``folder``, or None when there is no readable declaration (never raises)."""
    try:
        file = declaration_file(folder)
        if file is None:
            return None
        table = _table_of(file)
        name = table.get("name")
        return name if isinstance(name, str) else None
    except (DeclarationError, OSError):
        return None


def load_project(root: str | Path) -> Project:
    """The project declared at ``root``, validated, defaults filled in.

    Raises:
        DeclarationError: no declaration, or a malformed one (naming the file and the key).
    """
    root = Path(root).resolve()
    file = declaration_file(root)
    if file is None:
        raise DeclarationError(
            f"{root} has no project declaration: add [{TABLE}] to {root / PYPROJECT} or write "
            f"{root / DECLARATION_FILE} (`kaggle-kit init {root}` writes one), with at least name, owner and "
            "one [notebooks.NAME] table with its source")
    return _parse(root, file, _table_of(file))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeclarationError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_BYTES:
        raise DeclarationError(f"{path} is {len(data)} bytes; a project declaration is at most {_MAX_BYTES}")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeclarationError(f"{path} is not UTF-8 text: save it as UTF-8") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise DeclarationError(f"{path} is not valid TOML: {exc}") from None


def _tool_table(data: dict[str, Any]) -> Any:
    tool = data.get("tool")
    return tool.get("kaggle-kit") if isinstance(tool, dict) else None


def _table_of(file: Path) -> dict[str, Any]:
    data = _read_toml(file)
    table = _tool_table(data) if file.name == PYPROJECT else data
    if not isinstance(table, dict):
        raise DeclarationError(f"{file}: [{TABLE}] must be a table")
    return table


class _Reader:
    """Reads the keys of one table, each error naming the file and the dotted key."""

    def __init__(self, file: Path, table: Mapping[str, Any], prefix: str, known: Iterable[str]) -> None:
        self.file = file
        self.table = table
        self.prefix = prefix
        known = tuple(known)
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"; did you mean {self.key(close[0])!r}?" if close else ""
                raise DeclarationError(f"{file}: unknown key {self.key(str(key))!r}{hint} (known here: "
                                       f"{', '.join(known)})")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> DeclarationError:
        return DeclarationError(f"{self.file}: {self.key(name)}: {message}")

    def value(self, name: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if name not in self.table:
            if required:
                raise self.error(name, "missing; it is required")
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.error(name, f"expected {names}, got {value!r}")
        return value

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.value(name, str, default, required=required)
        if required and not (value or "").strip():
            raise self.error(name, "must not be empty")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.value(name, list, [])
        if not all(isinstance(v, str) for v in value):
            raise self.error(name, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def handle(self, name: str, value: str, parse: Callable[..., Any], *, versioned: bool = True) -> str:
        try:
            parsed = parse(value, what=self.key(name), versioned=versioned) if parse in (
                parse_dataset, parse_kernel) else parse(value, what=self.key(name))
        except HandleError as exc:
            raise DeclarationError(f"{self.file}: {exc}") from None
        # A model's framework is spelled as Kaggle lists it (pyTorch): checked, kept as written.
        return value.strip() if parse is parse_model else str(parsed)

    def relative_path(self, name: str, value: str | None, root: Path, *, must_exist: bool = False) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if not value.strip() or path.is_absolute() or ".." in path.parts:
            raise self.error(name, f"{value!r} must be a path relative to the project root, inside it")
        if must_exist and not (root / path).is_file():
            raise self.error(name, f"{value!r} does not exist under {root}")
        return path.as_posix()

    def object_path(self, name: str, value: str | None) -> str | None:
        if value is not None and not _OBJECT_PATH.fullmatch(value):
            raise self.error(name, f"{value!r} must be module:attribute, e.g. mypackage.data:write_dataset")
        return value


def _owned(reader: _Reader, name: str, value: str, owner: str, parse: Callable[..., Any]) -> str:
    """A slug or ``owner/slug`` as an unversioned ``owner/slug`` (a bare slug belongs to the project's owner)."""
    full = value if "/" in value else f"{owner}/{value}"
    return reader.handle(name, full, parse, versioned=False)


def _parse(root: Path, file: Path, table: Mapping[str, Any]) -> Project:
    top = _Reader(file, table, TABLE if file.name == PYPROJECT else "", _TOP_KEYS)
    name = top.text("name", required=True) or ""
    if slugify(name) != name or not name:
        raise top.error("name", f"{name!r} must be lower-case letters, digits and single hyphens, e.g. "
                                f"{slugify(name) or 'my-project'!r}")
    try:
        owner = parse_owner(top.text("owner", required=True), what=top.key("owner"))
    except HandleError as exc:
        raise DeclarationError(f"{file}: {exc}") from None
    code_dataset = _owned(top, "code-dataset", top.text("code-dataset", f"{name}-code") or "", owner, parse_dataset)
    kit_value = top.text("kit-dataset", DEFAULT_KIT_DATASET_SLUG)
    kit_dataset = _owned(top, "kit-dataset", kit_value, owner, parse_dataset) if kit_value else None
    checkpoint = _owned(top, "checkpoint-dataset", top.text("checkpoint-dataset", f"{name}-ckpt") or "", owner,
                        parse_dataset)
    config = top.relative_path("config", top.text("config"), root)
    schema = top.object_path("config-schema", top.text("config-schema"))

    notebooks_table = top.value("notebooks", dict, None, required=True)
    if not notebooks_table:
        raise top.error("notebooks", "declare at least one notebook, e.g. [notebooks.train] with source = "
                                     "\"notebooks/train.py\"")
    notebooks: dict[str, NotebookSpec] = {}
    for nb_name, nb_table in notebooks_table.items():
        if not _NOTEBOOK_NAME.fullmatch(nb_name):
            raise top.error(f"notebooks.{nb_name}", "a notebook name is letters, digits, '-' and '_' (at most 50)")
        if not isinstance(nb_table, dict):
            raise top.error(f"notebooks.{nb_name}", f"expected a table, got {nb_table!r}")
        notebooks[nb_name] = _notebook(root, file, top.key(f"notebooks.{nb_name}"), nb_name, nb_table, name, owner)

    publish_table = top.value("publish", dict, {})
    publish_reader = _Reader(file, publish_table, top.key("publish"), _PUBLISH_KEYS)
    publish = PublishRules(include=publish_reader.strings("include"), exclude=publish_reader.strings("exclude"))

    rehearse = None
    rehearse_table = top.value("rehearse", dict, None)
    if rehearse_table is not None:
        rehearse = _rehearse(root, file, top.key("rehearse"), rehearse_table, notebooks)
    return Project(root=root, file=file, name=name, owner=owner, code_dataset=code_dataset, kit_dataset=kit_dataset,
                   checkpoint_dataset=checkpoint, notebooks=notebooks, config=config, config_schema=schema,
                   publish=publish, rehearse=rehearse)


def _notebook(root: Path, file: Path, prefix: str, name: str, table: Mapping[str, Any], project: str,
              owner: str) -> NotebookSpec:
    r = _Reader(file, table, prefix, _NOTEBOOK_KEYS)
    source = r.relative_path("source", r.text("source", required=True), root)
    kernel_value = r.text("kernel", f"{project}-{slugify(name)}") or ""
    kernel = _owned(r, "kernel", kernel_value, owner, parse_kernel)
    title = r.text("title", kernel.split("/")[1].replace("-", " ")) or ""
    if len(title) < 5:
        raise r.error("title", f"{title!r}: Kaggle needs a title of at least 5 characters")
    accelerator = (r.text("accelerator", "none") or "none").strip()
    machine_shape = None
    if accelerator.lower() in ("none", "cpu"):
        accelerator = "none"
    elif accelerator.lower() in ("gpu", "tpu"):
        accelerator = accelerator.lower()
    else:
        try:
            runs, retired = resolve_shape(accelerator)
        except ValueError as exc:
            raise r.error("accelerator", f"{exc}; or write none, gpu or tpu") from None
        if retired:
            raise r.error("accelerator", f"{retired}: write {runs or 'none'}")
        machine_shape = runs
    internet = r.value("internet", bool, True)
    checkpoints = r.text("checkpoints", "mirror" if internet else "none") or ""
    if checkpoints not in CHECKPOINT_MODES:
        raise r.error("checkpoints", f"{checkpoints!r}: write one of {', '.join(CHECKPOINT_MODES)}")
    if checkpoints == "mirror" and not internet:
        raise r.error("checkpoints", "mirror needs internet = true; with internet off write \"none\" (the Batch "
                                     "output carries the checkpoints) or \"read\"")
    competition = r.text("competition")
    if competition is not None:
        competition = r.handle("competition", competition, parse_competition)
    datasets = tuple(r.handle("datasets", d, parse_dataset) for d in r.strings("datasets"))
    models = tuple(r.handle("models", m, parse_model) for m in r.strings("models"))
    kernels = tuple(r.handle("kernels", k, parse_kernel) for k in r.strings("kernels"))
    parameters = r.value("parameters", dict, {})
    for key in parameters:
        if not str(key).isidentifier():
            raise r.error(f"parameters.{key}", "a parameter name must be a Python identifier")
    return NotebookSpec(
        name=name, source=source or "", kernel=kernel, title=title, accelerator=accelerator,
        machine_shape=machine_shape, internet=internet, checkpoints=checkpoints, competition=competition,
        datasets=datasets, models=models, kernels=kernels, private=r.value("private", bool, True),
        config=r.relative_path("config", r.text("config"), root),
        config_schema=r.object_path("config-schema", r.text("config-schema")), parameters=dict(parameters),
    )


def _rehearse(root: Path, file: Path, prefix: str, table: Mapping[str, Any],
              notebooks: Mapping[str, NotebookSpec]) -> RehearseSpec:
    r = _Reader(file, table, prefix, _REHEARSE_KEYS)
    default = "train" if "train" in notebooks else next(iter(notebooks))
    notebook = r.text("notebook", default) or default
    infer = r.text("infer")
    for key, value in (("notebook", notebook), ("infer", infer)):
        if value is not None and value not in notebooks:
            raise r.error(key, f"{value!r} is not a declared notebook ({', '.join(notebooks)})")
    kill_after = r.value("kill-after", (int, float, str), "auto")
    if kill_after != "auto" and (isinstance(kill_after, str) or kill_after < 0):
        raise r.error("kill-after", f"{kill_after!r}: write \"auto\", 0 (no kill) or a number of seconds")
    return RehearseSpec(
        kill_after=kill_after if kill_after == "auto" else float(kill_after),
        notebook=notebook, infer=infer, data=r.object_path("data", r.text("data")),
        score=r.object_path("score", r.text("score")), baseline=r.object_path("baseline", r.text("baseline")),
        baseline_name=r.text("baseline-name", "trivial") or "trivial",
        config=r.relative_path("config", r.text("config"), root), overrides=r.strings("overrides"),
    )


def import_object(spec: str, root: Path, *, where: str) -> Any:
    """The object ``module:attribute`` names, imported with the project ``root`` first on ``sys.path``.

    Raises:
        DeclarationError: the module or the attribute cannot be imported, naming ``where`` it was declared.
    """
    module_name, _, attribute = spec.partition(":")
    entry = str(Path(root).resolve())
    _forget_other_copy(module_name.partition(".")[0], Path(entry))
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise DeclarationError(f"{where} = {spec!r}: cannot import {module_name} from {root}: {exc}") from None
    except AttributeError:
        raise DeclarationError(f"{where} = {spec!r}: {module_name} has no attribute {attribute!r}") from None
    except Exception as exc:  # noqa: BLE001 - importing the user's module ran its code: report where it broke
        raise DeclarationError(f"{where} = {spec!r}: importing {module_name} failed: "
                               f"{type(exc).__name__}: {exc}") from None
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
    return obj


def _forget_other_copy(package: str, root: Path) -> None:
    """Drops an imported ``package`` that came from outside ``root`` (another project of the same package name in
    this process), so the import finds this project's. The kit itself is never dropped."""
    module = sys.modules.get(package)
    if module is None or package == "kaggle_kit":
        return
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", None) or [])]
    if any(loc and Path(loc).resolve().is_relative_to(root) for loc in locations):
        return
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def check_config(project: Project, notebook: NotebookSpec, *, config: str | None = None,
                 overrides: Iterable[str] = ()) -> Any:
    """Loads the config ``notebook`` will load (``config`` or the declared one) with its schema and overrides, and
    runs the schema's ``validate()`` methods, so a bad value stops before a push rather than inside a session.

    Returns:
        The loaded config, or None when the notebook declares no config.

    Raises:
        DeclarationError: a config without a schema, or a schema that cannot be imported.
        ConfigError: the file is missing or a key or value is wrong (naming the file and the key).
    """
    from kaggle_kit.config import load_config

    declared, schema_path = project.config_of(notebook)
    path = config or declared
    overrides = tuple(overrides)
    if path is None:
        if overrides:
            raise DeclarationError(f"{project.file}: overrides {', '.join(overrides)} given but notebook "
                                   f"{notebook.name!r} declares no config; add config and config-schema")
        return None
    if schema_path is None:
        raise DeclarationError(f"{project.file}: notebook {notebook.name!r} loads {path} but no config-schema is "
                               f"declared: add config-schema = \"package.module:ConfigClass\" to [{project.table}]")
    schema = import_object(schema_path, project.root, where=f"{project.file}: config-schema")
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise DeclarationError(f"{project.file}: config-schema {schema_path!r} is not a dataclass")
    file = project.root / path
    loaded = load_config(file, schema, overrides)
    try:
        _validate(loaded)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{file}: {type(exc).__name__}: {exc}") from None
    return loaded


def _validate(config: Any) -> None:
    """Calls ``validate()`` on the config and on every section that has one."""
    check = getattr(config, "validate", None)
    if callable(check):
        check()
    if dataclasses.is_dataclass(config):
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                _validate(value)
