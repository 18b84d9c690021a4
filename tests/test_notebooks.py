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


def make_project(root: Path, *, owner: str = "alice", with_kit: bool = False) -> Path:
    """A project root like the repository's, owned by ``owner``."""
    (root / "notebooks").mkdir(parents=True)
    for name in ("train.py", "infer.py"):
        shutil.copy(REPO / "notebooks" / name, root / "notebooks" / name)
    # Not empty: the stand-in refuses a zero-length upload (the client leaves contentLength 0 out of the request).
    (root / ".kaggle-kit-root").write_text("kaggle-kit project root\n")
    if with_kit:
        shutil.copytree(REPO / "kaggle_kit", root / "kaggle_kit", ignore=shutil.ignore_patterns("__pycache__"))
    meta = json.loads((REPO / "kernel-metadata.json").read_text().replace("your-kaggle-username", owner))
    meta["dataset_sources"] = [f"{owner}/kaggle-kit-code", f"{owner}/cmfd-train-ckpt"]
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
    options = RenderOptions(config="tiny", overrides=("train.epochs=1",), accelerator="gpu",
                            extra={"checkpoint_every_minutes": 0.5})
    train = render(root, "train", options)
    render(root, "train", options)  # rendering again replaces the injection, never stacks a second one
    infer = render(root, "infer", options)

    assert train.notebook == root / BUILD_DIR / "train" / "train.ipynb"
    params = injected(train.notebook)
    assert params == {"config": "tiny", "overrides": ["train.epochs=1"], "competition": COMPETITION,
                      "code_dataset": "alice/kaggle-kit-code", "checkpoint_dataset": "alice/cmfd-train-ckpt",
                      "accelerator_plan": "gpu", "checkpoint_every_minutes": 0.5}
    assert injected(infer.notebook)["checkpoint_dataset"] == "alice/cmfd-train-ckpt"

    t = json.loads((train.folder / "kernel-metadata.json").read_text())
    assert (t["id"], t["code_file"], t["kernel_type"]) == ("alice/cmfd-train", "train.ipynb", "notebook")
    assert t["enable_gpu"] is True and t["enable_internet"] is True
    i = json.loads((infer.folder / "kernel-metadata.json").read_text())
    assert i["id"] == "alice/cmfd-train-infer" and i["enable_internet"] is False
    assert {"alice/kaggle-kit-code", "alice/cmfd-train-ckpt"} <= set(i["dataset_sources"])
    assert i["model_sources"] == ["metaresearch/dinov2/pyTorch/small/1"]
    assert i["competition_sources"] == [COMPETITION]
    for folder, mirroring in ((train.folder, True), (infer.folder, False)):
        errors = [f for f in lint_kernel_metadata(folder, mirroring=mirroring,
                                                  checkpoint_dataset="alice/cmfd-train-ckpt") if f.severity == "error"]
        assert errors == []


def test_root_metadata_names_the_rendered_training_notebook(tmp_path):
    root_meta = json.loads((REPO / "kernel-metadata.json").read_text())
    assert Path(root_meta["code_file"]) == BUILD_DIR / "train" / "train.ipynb"
    assert root_meta["enable_internet"] is True and root_meta["kernel_type"] == "notebook"
    root = make_project(tmp_path / "proj")
    rendered = render(root, "train", RenderOptions(config="tiny"))
    assert (root / root_meta["code_file"]).resolve() == rendered.notebook.resolve()
    assert rendered.warnings == ()
    drifted = render(root, "train", RenderOptions(config="tiny", checkpoint_dataset="alice/other-ckpt",
                                                  accelerator="cpu", kernels=("alice/cmfd-train",)))
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
    with pytest.raises(MetadataError, match="checkpoint dataset"):
        render(root, "infer", RenderOptions(checkpoint_dataset=""))
    (root / "notebooks" / "train.py").write_text("# %%\nx = 1\n")
    with pytest.raises(MetadataError, match="no cell tagged 'parameters'"):
        render(root, "train")
    (root / "kernel-metadata.json").write_text("{not json")
    with pytest.raises(MetadataError, match="kernel-metadata.json is not valid JSON"):
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
    staged = {p.as_posix() for p in stage_code(root, tmp_path / "stage")}
    assert {"kaggle_kit/__init__.py", "src/model.py", "notebooks/train.py", "dataset-metadata.json"} <= staged
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
    with pytest.raises(KaggleApiError, match="bob/cmfd-train"):
        push(root, "train", RenderOptions(config="tiny"), lint=False)
    root = make_project(tmp_path / "proj2")
    with pytest.raises(KaggleApiError, match="invalid dataset sources: alice/kaggle-kit-code"):
        push(root, "infer", RenderOptions(config="tiny", models=()), lint=True)


@pytest.mark.slow
def test_publish_push_and_run_both_notebooks_in_the_sandbox(tmp_path, sim_server, kaggle_cli):
    from kaggle_kit.cmfd.metric import score_files
    from kaggle_kit.cmfd.synthetic import make_synthetic_competition, solution_path

    competition = make_synthetic_competition(sim_server.competitions_dir / COMPETITION, n_cases=6, size=64,
                                             seed=0, n_test=2)
    root = make_project(tmp_path / "proj", with_kit=True)
    first = publish_code(root)
    assert first["created"] and "kaggle_kit/training/loop.py" in first["files"]
    assert publish_code(root, notes="second")["created"] is False

    options = RenderOptions(config="tiny", overrides=("train.epochs=1", "train.batch_size=4"), models=(),
                            accelerator="cpu", extra={"checkpoint_every_minutes": 0.05})
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

    result = push(root, "infer", options)
    assert result["ref"] == "alice/cmfd-train-infer"
    status = _wait("alice/cmfd-train-infer")
    kernel_output("alice/cmfd-train-infer", tmp_path / "infer-out")
    log = (tmp_path / "infer-out" / "cmfd-train-infer.log").read_text()
    assert status["status"] == "COMPLETE", log[-3000:]
    score = score_files(solution_path(competition), tmp_path / "infer-out" / "submission.csv")
    assert 0.0 <= score <= 1.0


def test_render_command_takes_extra_parameters(tmp_path, capsys):
    from kaggle_kit.cli import main

    root = make_project(tmp_path / "proj")
    assert main(["render", "train", "--root", str(root), "--config", "tiny", "--set", "train.epochs=2",
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
