"""Dependencies by need: a plain install of the kit has no workload dependencies; the `cmfd` extra brings them."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
         "('kaggle_kit', 'torch', 'timm', 'scipy', 'huggingface_hub')}))")
PREINSTALLED = ("torch", "torchvision")  # Kaggle's images carry them; the kit never installs them there


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _preinstalled(folder: Path) -> set[str]:
    """Links in ``folder`` to this environment's torch and torchvision and everything they need (by their metadata),
    so a new environment gets them as Kaggle's image has them, without copying gigabytes. Returns their names."""
    folder.mkdir()
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in PREINSTALLED]
    while todo:
        name, extras = todo.pop()
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform
        key = f"{canonicalize_name(name)}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in ("", *extras)):
                todo.append((req.name, tuple(req.extras)))
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or ()}:
            if top in ("..", "__pycache__", "bin") or top.endswith(".pth"):
                continue
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)
    return {key.split("[")[0] for key in seen}


@pytest.mark.slow
def test_a_plain_install_has_no_workload_dependencies_and_the_extra_adds_them(tmp_path):
    # A copy of the checkout, so that building leaves nothing in it.
    source = tmp_path / "kaggle-kit"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "kaggle-kit-rehearsal", "kernel-output"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    shared = _preinstalled(tmp_path / "preinstalled")
    assert {"torch", "torchvision"} <= shared and not {"timm", "scipy", "huggingface-hub"} & shared, shared
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    (site / "preinstalled.pth").write_text(f"{tmp_path / 'preinstalled'}\n")
    # This environment's pip installs into the new one (no pip of its own to set up); no byte code: faster.
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-compile",
           "-c", REPO / "constraints-dev.txt")
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
