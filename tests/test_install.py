"""Dependencies by need: a plain install of the kit has no workload dependencies; the `cmfd` extra brings them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
         "('kaggle_kit', 'torch', 'timm', 'scipy', 'huggingface_hub')}))")


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_plain_install_has_no_workload_dependencies_and_the_extra_adds_them(tmp_path):
    # A copy of the checkout, so that building leaves nothing in it.
    source = tmp_path / "kaggle-kit"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "kaggle-kit-rehearsal", "kernel-output"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet", "-c", REPO / "constraints-dev.txt")
    _run(*pip, source)
    found = json.loads(_run(python, "-c", PROBE, cwd=tmp_path).stdout)
    assert found == {"kaggle_kit": True, "torch": True, "timm": False, "scipy": False, "huggingface_hub": False}

    # The installed kit (not the checkout) works on its own: its templates are package data.
    kit = venv / "bin" / "kaggle-kit"
    listed = " ".join(_run(kit, "--help", cwd=tmp_path).stdout.split())
    assert "cmfd unavailable" in listed and "pip install 'kaggle-kit[cmfd]'" in listed
    _run(kit, "init", tmp_path / "project", "--owner", "alice", cwd=tmp_path)
    rendered = _run(kit, "render", "train", cwd=tmp_path / "project").stdout
    assert "alice/project-train" in rendered

    _run(*pip, f"{source}[cmfd]")
    found = json.loads(_run(python, "-c", PROBE, cwd=tmp_path).stdout)
    assert found["timm"] and found["scipy"] and found["kaggle_kit"]
