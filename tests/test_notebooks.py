"""Notebooks as source: render, the code dataset's staging, and push/status/output against the stand-in."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from kaggle_kit.errors import CredentialError, KaggleApiError, MetadataError
from kaggle_kit.code_dataset import publish_code, stage_code
from kaggle_kit.kernels import kernel_output, kernel_status
from kaggle_kit.notebooks import BUILD_DIR, RenderOptions, push, render

REPO = Path(__file__).resolve().parents[1]
COMPETITION = "recodai-luc-scientific-image-forgery-detection"
TINY = "kaggle_kit/cmfd/configs/tiny.yaml"


def make_project(root: Path, *, owner: str = "alice", with_kit: bool = False) -> Path:
    """A project root like the repository's (its declaration, notebooks and configs), owned by ``owner``."""
    (root / "notebooks").mkdir(parents=True)
    for name in ("train.py", "infer.py"):
        shutil.copy(REPO / "notebooks" / name, root / "notebooks" / name)
    shutil.copytree(REPO / "kaggle_kit" / "cmfd" / "configs", root / "kaggle_kit" / "cmfd" / "configs")
    if with_kit:
        shutil.rmtree(root / "kaggle_kit")
        shutil.copytree(REPO / "kaggle_kit", root / "kaggle_kit", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text().replace("your-kaggle-username", owner))
    meta = json.loads((REPO / "kernel-metadata.json").read_text().replace("your-kaggle-username", owner))
    (root / "kernel-metadata.json").write_text(json.dumps(meta))
    data = json.loads((REPO / "dataset-metadata.json").read_text().replace("your-kaggle-username", owner))
    (root / "dataset-metadata.json").write_text(json.dumps(data))
    return root


def injected(notebook_path: Path) -> dict:
    nb = nbformat.read(notebook_path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1]
    assert sum("injected-parameters" in t for t in tags) == 1
    namespace: dict = {}
    exec(nb.cells[at + 1].source, namespace)  # noqa: S102 - the cell is our own rendering of repr() values
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_render_injects_parameters_and_writes_each_kernels_metadata(tmp_path):
    from kaggle_kit.lint import lint_kernel_metadata

    root = make_project(tmp_path / "proj")
    options = RenderOptions(config=TINY, overrides=("train.epochs=1",), params={"checkpoint_every_minutes": 0.5})
    train = render(root, "train", options)
    render(root, "train", options)  # rendering again replaces the injection, never stacks a second one
    infer = render(root, "infer", RenderOptions(config=TINY))

    assert train.notebook == root / BUILD_DIR / "train" / "train.ipynb"
    params = injected(train.notebook)
    assert params == {"project": "cmfd", "kit_dataset": None, "config": TINY, "overrides": ["train.epochs=1"],
                      "competition": COMPETITION, "code_dataset": "alice/kaggle-kit-code",
                      "checkpoint_dataset": "alice/cmfd-train-ckpt", "accelerator_plan": "gpu",
                      "kernel": "alice/cmfd-train", "run_name": None, "previous_output": None,
                      "checkpoint_every_minutes": 0.5}
    assert injected(infer.notebook)["checkpoint_dataset"] == "alice/cmfd-train-ckpt"

    t = json.loads((train.folder / "kernel-metadata.json").read_text())
    assert (t["id"], t["code_file"], t["kernel_type"]) == ("alice/cmfd-train", "train.ipynb", "notebook")
    assert t["enable_gpu"] is True and t["enable_internet"] is True
    i = json.loads((infer.folder / "kernel-metadata.json").read_text())
    assert i["id"] == "alice/cmfd-train-infer" and i["enable_internet"] is False
    assert {"alice/kaggle-kit-code", "alice/cmfd-train-ckpt"} <= set(i["dataset_sources"])
    assert i["model_sources"] == ["metaresearch/dinov2/pyTorch/small/1"]
    assert i["competition_sources"] == [COMPETITION]
    for rendered in (train, infer):
        errors = [f for f in lint_kernel_metadata(rendered.folder, mirroring=rendered.checkpoints == "mirror",
                                                  checkpoint_dataset="alice/cmfd-train-ckpt") if f.severity == "error"]
        assert errors == []


def test_root_metadata_names_the_rendered_training_notebook(tmp_path):
    root_meta = json.loads((REPO / "kernel-metadata.json").read_text())
    assert Path(root_meta["code_file"]) == BUILD_DIR / "train" / "train.ipynb"
    assert root_meta["enable_internet"] is True and root_meta["kernel_type"] == "notebook"
    root = make_project(tmp_path / "proj")
    rendered = render(root, "train", RenderOptions(config=TINY))
    assert (root / root_meta["code_file"]).resolve() == rendered.notebook.resolve()
    assert rendered.warnings == ()
    drifted = render(root, "train", RenderOptions(config=TINY, checkpoint_dataset="alice/other-ckpt",
                                                  accelerator="none", kernels=("alice/cmfd-train",)))
    assert drifted.metadata["kernel_sources"] == ["alice/cmfd-train"]
    assert any("kernel_sources lacks alice/cmfd-train" in w for w in drifted.warnings)
    assert any("dataset_sources lacks alice/other-ckpt" in w for w in drifted.warnings)
    assert any("enable_gpu is True but the render uses False" in w for w in drifted.warnings)


def test_render_refuses_bad_input(tmp_path):
    root = make_project(tmp_path / "proj")
    with pytest.raises(MetadataError, match="internet off cannot mirror"):
        render(root, "train", RenderOptions(internet=False))
    offline = render(root, "train", RenderOptions(internet=False, checkpoint_dataset=""))
    assert offline.metadata["enable_internet"] is False and injected(offline.notebook)["checkpoint_dataset"] is None
    with pytest.raises(MetadataError, match="no notebook 'predict' is declared"):
        render(root, "predict")
    (root / "notebooks" / "train.py").write_text("# %%\nx = 1\n")
    with pytest.raises(MetadataError, match="no cell tagged 'parameters'"):
        render(root, "train")
    (root / "pyproject.toml").write_text("[tool.kaggle-kit\nname = 1")
    with pytest.raises(MetadataError, match="pyproject.toml is not valid TOML"):
        render(root, "infer")


def test_stage_code_leaves_out_history_environments_builds_and_secrets(tmp_path, kaggle_isolation, monkeypatch):
    root = make_project(tmp_path / "proj")
    files = {
        "kaggle_kit/__init__.py": "", "src/model.py": "x = 1\n", ".git/config": "[core]\n",
        ".venv/pyvenv.cfg": "home = /usr\n", "myenv/pyvenv.cfg": "home = /usr\n", "myenv/lib/x.py": "",
        "notebooks/build/train/train.ipynb": "{}", "kaggle_kit/__pycache__/a.cpython-311.pyc": "",
        "kaggle.json": '{"username": "alice"}', ".kaggle/access_token": "t", "access_token": "t", ".env": "K=1",
        "configs/.env.local": "K=1", "kaggle_kit.egg-info/PKG-INFO": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    staged = {p.as_posix() for p in stage_code(root, tmp_path / "stage").files}
    assert {"kaggle_kit/__init__.py", "src/model.py", "notebooks/train.py", "dataset-metadata.json",
            "pyproject.toml"} <= staged
    leaked = [s for s in staged if s.startswith((".git/", ".venv/", "myenv/", "notebooks/build/", ".kaggle/"))
              or s.endswith((".pyc", "kaggle.json", "access_token", ".env", ".env.local", "PKG-INFO"))]
    assert leaked == []
    assert sorted(p.relative_to(tmp_path / "stage").as_posix() for p in (tmp_path / "stage").rglob("*")
                  if p.is_file()) == sorted(staged)

    key = "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", key)
    (root / "src" / "settings.py").write_text(f"KEY = '{key}'\n")
    with pytest.raises(CredentialError, match="src/settings.py contains your Kaggle API key"):
        stage_code(root, tmp_path / "stage2")
    assert stage_code(root, tmp_path / "stage3", secrets=["another-key-entirely"]).files, \
        "with the secrets given, the environment's key is not looked for"


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_the_notebooks_find_the_kit_only_in_the_attached_code_dataset(tmp_path, layout):
    """A session sees only what is attached: both notebooks' bootstraps find the kit in the code dataset, under
    either input layout (Kaggle mounts one or the other)."""
    import jupytext

    from kaggle_kit.sim.sandbox import InputMount, Sandbox, SessionSpec, namespace_problem

    if namespace_problem():
        pytest.skip(f"the sandbox cannot isolate here: {namespace_problem()}")
    code = tmp_path / "code"
    stage_code(REPO, code)
    train, infer = (jupytext.read(REPO / "notebooks" / f"{name}.py") for name in ("train", "infer"))
    params = "code_dataset = 'alice/kaggle-kit-code'"
    report = "import json, kaggle_kit\nprint(json.dumps([kaggle_kit.__file__, str(root.path)]))"
    infer_bootstrap = "\n".join([infer.cells[1].source, params, infer.cells[2].source, report])
    cells = [train.cells[1].source, params, train.cells[2].source,
             # The inference notebook's bootstrap in a fresh IPython of the same session.
             "import json, subprocess, kaggle_kit\n"
             "run = subprocess.run([sys.executable, '-m', 'IPython', '--quick', '-c', os.environ['INFER_BOOTSTRAP']],\n"
             "                     capture_output=True, text=True)\n"
             "assert run.returncode == 0, run.stderr[-3000:]\n"
             "infer = run.stdout.splitlines()[-1]\n"
             "json.dump({'train': [kaggle_kit.__file__, str(root.path)], 'infer': json.loads(infer),\n"
             "           'inputs': sorted(os.listdir('/kaggle/input'))}, open('/kaggle/working/facts.json', 'w'))"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    spec = SessionSpec(nb, mounts=(InputMount(code, "dataset", "alice/kaggle-kit-code"),), input_layout=layout,
                       internet=False, env={"INFER_BOOTSTRAP": infer_bootstrap})
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "COMPLETE", result.failure_message
    facts = json.loads((result.output_dir / "facts.json").read_text())
    dataset = ("/kaggle/input/datasets/alice/kaggle-kit-code" if layout == "current"
               else "/kaggle/input/kaggle-kit-code")
    assert facts["train"] == facts["infer"] == [f"{dataset}/kaggle_kit/__init__.py", dataset]
    assert facts["inputs"] == (["datasets"] if layout == "current" else ["kaggle-kit-code"])


def _wait(ref: str, *, timeout_s: float = 400.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = kernel_status(ref)
        if status["status"] in ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED"):
            return status
        time.sleep(1.0)
    raise AssertionError(f"{ref} still {status} after {timeout_s} s")


def test_push_reports_server_side_errors(tmp_path, sim_server):
    root = make_project(tmp_path / "proj", owner="bob")  # the stand-in's user is alice: bob's kernel is refused
    with pytest.raises(KaggleApiError, match="bob/cmfd-train.*nothing was created"):
        push(root, "train", RenderOptions(config=TINY), lint=False)


@pytest.mark.slow
def test_publish_push_and_run_both_notebooks_in_the_sandbox(tmp_path, sim_server, kaggle_cli):
    from kaggle_kit.cmfd.metric import score_files
    from kaggle_kit.cmfd.synthetic import make_synthetic_competition, solution_path

    competition = make_synthetic_competition(sim_server.competitions_dir / COMPETITION, n_cases=6, size=64,
                                             seed=0, n_test=2)
    root = make_project(tmp_path / "proj", with_kit=True)
    first = publish_code(root)
    assert first["created"] and "kaggle_kit/training/loop.py" in first["files"]
    assert first["bytes"] == sum((root / f).stat().st_size for f in first["files"])
    assert publish_code(root, notes="second")["created"] is False

    options = RenderOptions(config=TINY, overrides=("train.epochs=1", "train.batch_size=4"), models=(),
                            accelerator="none", params={"checkpoint_every_minutes": 0.05})
    render(root, "train", options)
    # The plain client pushes the root: its kernel-metadata.json names the rendered notebook.
    pushed = kaggle_cli("kernels", "push", "-p", str(root))
    assert pushed.returncode == 0 and "successfully pushed" in pushed.stdout, pushed.stdout + pushed.stderr
    status = _wait("alice/cmfd-train")
    outputs = kernel_output("alice/cmfd-train", tmp_path / "train-out")
    log = (tmp_path / "train-out" / "cmfd-train.log").read_text()
    assert status["status"] == "COMPLETE", log[-3000:]
    history = json.loads((tmp_path / "train-out" / "history.json").read_text())
    assert [r["epoch"] for r in history["history"]] == [1]
    assert any(p.name.endswith(".manifest.json") for p in outputs)

    from kaggle_kit.cli import main

    assert main(["status", "alice/cmfd-train"]) == 0
    assert main(["output", "train", "--root", str(root), "--dest", str(tmp_path / "cli-out")]) == 0
    assert (tmp_path / "cli-out" / "history.json").is_file()

    result = push(root, "infer", RenderOptions(config=TINY, models=(), accelerator="none"))
    assert result.ref == "alice/cmfd-train-infer" and result.problems == ()
    status = _wait("alice/cmfd-train-infer")
    kernel_output("alice/cmfd-train-infer", tmp_path / "infer-out")
    log = (tmp_path / "infer-out" / "cmfd-train-infer.log").read_text()
    assert status["status"] == "COMPLETE", log[-3000:]
    score = score_files(solution_path(competition), tmp_path / "infer-out" / "submission.csv")
    assert 0.0 <= score <= 1.0


def test_render_command_takes_extra_parameters(tmp_path, capsys):
    from kaggle_kit.cli import main

    root = make_project(tmp_path / "proj")
    assert main(["render", "train", "--root", str(root), "--config", TINY, "--set", "train.epochs=2",
                 "--param", "checkpoint_every_minutes=0.5", "--param", "train_options={'deadline_margin_s': 0}"]) == 0
    params = injected(root / BUILD_DIR / "train" / "train.ipynb")
    assert params["checkpoint_every_minutes"] == 0.5 and params["train_options"] == {"deadline_margin_s": 0}
    assert params["overrides"] == ["train.epochs=2"]
    assert main(["render", "train", "--root", str(root), "--param", "no-equals"]) == 2
    assert "write NAME=VALUE" in capsys.readouterr().err


def test_names_that_moved_out_of_notebooks_still_import_with_a_warning() -> None:
    import kaggle_kit.notebooks as old
    from kaggle_kit import code_dataset, kernels

    for name, home in (("stage_code", code_dataset), ("publish_code", code_dataset), ("kernel_status", kernels),
                       ("kernel_output", kernels)):
        with pytest.warns(DeprecationWarning, match=rf"kaggle_kit\.notebooks\.{name} moved to {home.__name__}\.{name}"):
            assert getattr(old, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'add_commands'"):
        getattr(old, "add_commands")
