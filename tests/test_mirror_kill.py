"""kill -9 during an upload, wipe the working folder, resume from the mirror dataset in a fresh process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _ckpt_train_script  # noqa: E402

SCRIPT = Path(__file__).with_name("_ckpt_train_script.py")
STEPS = 80


def _uploaders_of(root: Path) -> list[int]:
    """Uploader processes still running for the session rooted at ``root`` (found through /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"kaggle_kit.mirror" in cmdline and f"KAGGLE_KIT_KAGGLE_ROOT={root}".encode() in environ:
            found.append(int(proc.name))
    return found


def _reference_run_and_fresh_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The uninterrupted run's final weights, and an empty Kaggle tree for the run under test."""
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path / "ref"))
    reference = tmp_path / "ref.pt"
    argv = ["--ckpt-dir", str(tmp_path / "ref" / "ck"), "--out", str(reference), "--steps", str(STEPS)]
    assert _ckpt_train_script.main(argv) == 0
    root = tmp_path / "kaggle"
    (root / "temp").mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(root))
    return reference, root


@pytest.mark.slow
def test_kill9_mid_upload_then_wiped_working_resumes_from_the_mirror_bit_identical(
    sim_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, root = _reference_run_and_fresh_kaggle(tmp_path, monkeypatch)
    work = root / "working" / "checkpoints"
    out = tmp_path / "resumed.pt"
    command = [sys.executable, str(SCRIPT), "--ckpt-dir", str(work), "--out", str(out), "--steps", str(STEPS),
               "--mirror", "alice/kill-nine-run", "--step-sleep", "0.01"]
    died = subprocess.run([*command, "--kill-in-upload", "2"], capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stdout + died.stderr
    assert not out.exists()
    deadline = time.monotonic() + 10
    while _uploaders_of(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _uploaders_of(root), "the uploader process outlived its killed session"
    shutil.rmtree(root / "working")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "RESUMED" in finished.stdout and "source=mirror" in finished.stdout, finished.stdout
    left, right = torch.load(reference, weights_only=True), torch.load(out, weights_only=True)
    for key in left:
        assert torch.equal(left[key], right[key]), f"{key} differs after resume from the mirror"


@pytest.mark.slow
def test_sigterm_to_the_session_saves_flushes_and_resumes_bit_identical(
    sim_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, root = _reference_run_and_fresh_kaggle(tmp_path, monkeypatch)
    work = root / "working" / "checkpoints"
    out = tmp_path / "resumed.pt"
    command = [sys.executable, str(SCRIPT), "--ckpt-dir", str(work), "--out", str(out), "--steps", str(STEPS),
               "--mirror", "alice/sigterm-run", "--every-seconds", "3600"]
    stopped = subprocess.run([*command, "--sigterm-at", "50"], capture_output=True, text=True, timeout=300,
                             start_new_session=True)
    assert stopped.returncode == 143, stopped.stdout + stopped.stderr
    # The cadence never came due: the only checkpoint is the one SIGTERM asked for, at the next step boundary,
    # and it reached the dataset before the process ended (its uploader got the SIGTERM too).
    from kaggle_kit.mirror import DatasetMirror

    pointer = DatasetMirror("alice/sigterm-run", poll_interval_s=0.05).remote_pointer()
    assert pointer is not None and pointer["step"] == 51
    shutil.rmtree(root / "working")
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "RESUMED step=51 source=mirror" in finished.stdout, finished.stdout
    left, right = torch.load(reference, weights_only=True), torch.load(out, weights_only=True)
    for key in left:
        assert torch.equal(left[key], right[key]), f"{key} differs after the SIGTERM resume"
