"""`kaggle-kit init`: a new project outside the kit's checkout that renders, pushes and rehearses with the kit
installed as a package; in an existing repository it adds what is missing and overwrites nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kaggle_kit
from kaggle_kit.project import load_project
from kaggle_kit.scaffold import bootstrap_cell, init_project

REPO = Path(__file__).resolve().parents[1]
KIT = Path(kaggle_kit.__file__).resolve().parent
# The README's `sim serve` example: a shell that still holds these must not change what `rehearse` does.
README_EXPORTS = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": "http://127.0.0.1:9",
                  "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": "0123456789abcdef0123456789abcdef",
                  "KAGGLE_KIT_API_ENDPOINT": "http://127.0.0.1:9"}


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def kit_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
            ) -> subprocess.CompletedProcess[str]:
    """``kaggle-kit ARGS`` as a user runs it: the installed kit, from inside the project."""
    return subprocess.run([sys.executable, "-m", "kaggle_kit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def cell(source: str, header: str) -> str:
    start = source.index(header)
    end = source.find("\n# %%", start + len(header))
    return source[start:end if end >= 0 else None].rstrip() + "\n"


def test_init_writes_a_project_that_renders(tmp_path):
    result = init_project(tmp_path / "my-digits", owner="alice")
    root = result.root
    written = {p.relative_to(root).as_posix() for p in result.written}
    assert {"pyproject.toml", ".gitignore", "configs/train.yaml", "configs/rehearse.yaml", "notebooks/train.py",
            "notebooks/infer.py", "my_digits/__init__.py", "my_digits/config.py", "my_digits/model.py",
            "my_digits/data.py", "kernel-metadata.json", "dataset-metadata.json"} == written
    project = load_project(root)
    assert (project.name, project.owner, list(project.notebooks)) == ("my-digits", "alice", ["train", "infer"])
    assert project.rehearse is not None and project.rehearse.data == "my_digits.data:write_dataset"
    meta = json.loads((root / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/my-digits-train" and meta["code_file"] == "notebooks/build/train/train.ipynb"
    assert meta["enable_gpu"] is False and meta["enable_internet"] is True
    assert json.loads((root / "dataset-metadata.json").read_text())["id"] == "alice/my-digits-code"
    ignored = (root / ".gitignore").read_text().split()
    assert {"kaggle.json", "access_token", ".env", "kernel-output/", "kaggle-kit-rehearsal/", "notebooks/build/",
            ".venv/"} <= set(ignored)


def test_init_again_overwrites_nothing(tmp_path):
    root = init_project(tmp_path / "digits", owner="alice").root
    (root / "digits" / "model.py").write_text("# my own model\n")
    before = tree_digest(root)
    again = init_project(root, owner="bob")
    assert again.written == [] and again.gitignore_added == []
    assert tree_digest(root) == before
    assert load_project(root).owner == "alice", "the existing declaration is kept as it is"


def test_init_in_an_existing_repository_adds_what_is_missing(tmp_path):
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    pyproject = "[project]\nname = 'repo'\nversion = '1'\n"
    (root / "pyproject.toml").write_text(pyproject)
    (root / ".gitignore").write_text("*.log\n.env\n")
    (root / "README.md").write_text("mine\n")
    result = init_project(root, owner="alice")
    assert (root / "pyproject.toml").read_text() == pyproject
    assert (root / "README.md").read_text() == "mine\n"
    assert load_project(root).file == root / "kaggle-kit.toml"
    gitignore = (root / ".gitignore").read_text()
    assert gitignore.startswith("*.log\n.env\n") and "kaggle.json" in gitignore
    assert ".env" not in result.gitignore_added and "kaggle.json" in result.gitignore_added


def test_every_notebook_carries_the_same_bootstrap(tmp_path):
    root = init_project(tmp_path / "digits", owner="alice").root
    canonical = cell(bootstrap_cell(), "# %% bootstrap")
    sources = [REPO / "notebooks" / "train.py", REPO / "notebooks" / "infer.py",
               root / "notebooks" / "train.py", root / "notebooks" / "infer.py"]
    for source in sources:
        assert cell(source.read_text(), "# %% bootstrap") == canonical, f"{source}: the bootstrap differs"


def test_init_refuses_names_it_cannot_use(tmp_path):
    from kaggle_kit.errors import KaggleKitError

    with pytest.raises(KaggleKitError, match="project name"):
        init_project(tmp_path / "x", name="Not A Slug")
    with pytest.raises(KaggleKitError, match="package name"):
        init_project(tmp_path / "y", name="kaggle-kit")


@pytest.fixture
def quiet_server(tmp_path, kaggle_isolation):
    """An offline Kaggle that stores pushes without running them (their status stays QUEUED)."""
    from kaggle_kit.sim.server import SimServer

    with SimServer(tmp_path / "state", username="alice", key=secrets.token_hex(16)) as server:
        yield server


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "HTTP", "http", "NO_PROXY", "no_"))}
    return env


@pytest.mark.slow
def test_a_new_project_renders_pushes_and_rehearses_a_killed_run_bit_identical(tmp_path, quiet_server):
    kit_before = tree_digest(KIT)
    root = tmp_path / "elsewhere" / "digits"
    assert not root.resolve().is_relative_to(REPO) and not KIT.is_relative_to(root.resolve())
    made = kit_cli("init", str(root), "--owner", "alice", cwd=tmp_path, env=_clean_env())
    assert made.returncode == 0, made.stdout + made.stderr

    # Rendered and pushed against the stand-in: with the official client, and with kaggle-kit push.
    client = quiet_server.client_env(_clean_env())
    for args in (("publish-kit",), ("publish-code",)):
        done = kit_cli(*args, cwd=root, env=client)
        assert done.returncode == 0 and "uploaded" in done.stdout, done.stdout + done.stderr
    data = subprocess.run([sys.executable, "-m", "digits.data", str(tmp_path / "data")], cwd=root, env=client,
                          capture_output=True, text=True, timeout=120)
    assert data.returncode == 0, data.stderr
    created = subprocess.run([sys.executable, "-m", "kaggle", "datasets", "create", "-p", str(tmp_path / "data")],
                             env=client, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0 and "error" not in created.stdout.lower(), created.stdout + created.stderr
    rendered = kit_cli("render", "train", cwd=root, env=client)
    assert rendered.returncode == 0, rendered.stderr
    pushed = subprocess.run([sys.executable, "-m", "kaggle", "kernels", "push", "-p", "notebooks/build/train"],
                            cwd=root, env=client, capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0 and "successfully pushed" in pushed.stdout.lower(), pushed.stdout + pushed.stderr
    pushed = kit_cli("push", "train", cwd=root, env=client)
    assert pushed.returncode == 0 and "pushed alice/digits-train version 2" in pushed.stdout, pushed.stdout
    assert "WARNING" not in pushed.stdout, "every source exists: the checkpoint mirror alone is created later"

    # Rehearsed in a shell that still holds the README's exports: the reference run, a run killed half-way,
    # resumed from the mirror in a new session, and compared with the reference bit for bit.
    workdir = tmp_path / "rehearsal"
    rehearsed = kit_cli("rehearse", "--keep", "--workdir", str(workdir), "--checkpoint-every", "2", cwd=root,
                        env={**_clean_env(), **README_EXPORTS})
    summary = rehearsed.stdout
    assert rehearsed.returncode == 0, summary[-4000:] + rehearsed.stderr[-4000:]
    assert re.search(r"train #\d \(Batch\)\s+KILLED", summary), summary
    assert "resumed run bit-identical to the uninterrupted reference run: yes" in summary, summary
    assert re.search(r"the sessions imported the kit from \S*/input/datasets/alice/kaggle-kit", summary), summary
    assert "submission: valid" in summary
    resumed = json.loads(sorted(workdir.glob("outputs/train-*/progress.json"))[-1].read_text())
    assert resumed["resumed_from_step"] and 0 < resumed["resumed_from_step"] < resumed["step"]
    log = sorted(workdir.glob("outputs/train-*/*.log"))[-1].read_text()
    assert f"resuming at step {resumed['resumed_from_step']} from input" in log, log[-3000:]
    # Its only inputs were the kit, the code, the data and the mirror: it resumed from the mirror.
    rendered_meta = sorted(workdir.glob("runs/*/build/train/kernel-metadata.json"), key=lambda p: p.stat().st_mtime)
    meta = json.loads(rendered_meta[-1].read_text())
    sources = [re.sub(r"/\d+$", "", source) for source in meta["dataset_sources"]]
    assert meta["kernel_sources"] == [] and sources == [
        "alice/digits-data", "alice/digits-code", "alice/kaggle-kit", "alice/digits-ckpt"], meta
    assert re.fullmatch(r"alice/digits-code/\d+", meta["dataset_sources"][1]), "the run pins the code's version"
    assert tree_digest(KIT) == kit_before


@pytest.mark.slow
def test_a_changed_model_and_data_rehearse_without_touching_the_kit(tmp_path, kaggle_isolation):
    kit_before = tree_digest(KIT)
    root = init_project(tmp_path / "elsewhere" / "digits", owner="alice").root
    model = root / "digits" / "model.py"
    model.write_text(model.read_text().replace(
        "        nn.ReLU(),\n        nn.Linear(cfg.hidden, classes),",
        "        nn.ReLU(),\n        nn.Linear(cfg.hidden, cfg.hidden),\n        nn.ReLU(),\n"
        "        nn.Linear(cfg.hidden, classes),"))
    data = root / "digits" / "data.py"
    data.write_text(data.read_text().replace("FEATURES = 16", "FEATURES = 24").replace("CLASSES = 4", "CLASSES = 3"))
    workdir = tmp_path / "rehearsal"
    rehearsed = kit_cli("rehearse", "--kill-after", "0", "--no-infer", "--keep", "--workdir", str(workdir), cwd=root,
                        env=_clean_env())
    assert rehearsed.returncode == 0, rehearsed.stdout[-4000:] + rehearsed.stderr[-4000:]
    newest = sorted(workdir.glob("outputs/train-1/**/step-*.pt"))[-1]
    shapes = {k: list(v.shape) for k, v in torch.load(newest, map_location="cpu", weights_only=True).items()
              if k.startswith("model")}
    hidden = 32  # configs/rehearse.yaml
    assert [shapes[k] for k in sorted(shapes) if k.endswith("weight")] == [[hidden, 24], [hidden, hidden], [3, hidden]]
    assert tree_digest(KIT) == kit_before
