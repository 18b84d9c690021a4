"""kill -9 at random points (training, mid-write), wipe the working folder, resume in a fresh process: same weights."""

from __future__ import annotations

import os
import random
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
STEPS = 60


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KAGGLE_KIT_KAGGLE_ROOT"] = str(root)
    env.pop("KAGGLE_KERNEL_RUN_TYPE", None)
    return env


# The run's name, and the earlier session's output the next session names as its resume input.
RUN = ("--run-name", "kill-test", "--resume-input", "alice/run-v1")


def _run(root: Path, ckpt: Path, out: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--ckpt-dir", str(ckpt), "--out", str(out), "--steps", str(STEPS), *RUN,
         *extra],
        env=_env(root), capture_output=True, text=True, timeout=timeout,
    )


def _kill_at_random(root: Path, ckpt: Path, out: Path, rng: random.Random) -> None:
    """Start a run, let it write its first checkpoint, SIGKILL it a random moment later (before its final save: it
    holds there until killed, so a slow test process cannot miss the run)."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--ckpt-dir", str(ckpt), "--out", str(out), "--steps", str(STEPS), *RUN,
         "--step-sleep", "0.01", "--hold-at-end"],
        env=_env(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300  # a safety net for a loaded machine; the first checkpoint comes at once
    start_steps = {p.name for p in ckpt.glob("*.manifest.json")} if ckpt.exists() else set()
    while proc.poll() is None:
        if ckpt.exists() and {p.name for p in ckpt.glob("*.manifest.json")} - start_steps:
            break
        assert time.monotonic() < deadline, "the run under test wrote no checkpoint in 300 s"
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.4))
    assert proc.poll() is None, proc.communicate()[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def _same_weights(a: Path, b: Path) -> None:
    left, right = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), f"{key} differs after resume"


def _reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The uninterrupted run, in this process (one interpreter start fewer)."""
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path / "ref"))
    out = tmp_path / "ref.pt"
    argv = ["--ckpt-dir", str(tmp_path / "ref" / "working" / "ck"), "--out", str(out), "--steps", str(STEPS)]
    assert _ckpt_train_script.main(argv) == 0
    return out


@pytest.mark.slow
def test_kill9_anywhere_then_wiped_working_resumes_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("KAGGLE_KIT_TEST_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    reference = _reference(tmp_path, monkeypatch)

    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    work = root / "working" / "checkpoints"
    out = tmp_path / "resumed.pt"
    for session in range(1):
        _kill_at_random(root, work, out, rng)
        assert not out.exists(), f"seed {seed}: the run finished before it was killed"
        # The working folder is gone; what survives is the killed session's output, attached as input.
        attached = root / "input" / "notebooks" / "alice" / f"run-v{session + 1}" / "checkpoints"
        attached.parent.mkdir(parents=True)
        shutil.move(str(work), str(attached))
    # Die halfway through writing a checkpoint's tensors: that checkpoint must never be loaded. The first write of
    # the resumed run, since a kill late in the run leaves it only one checkpoint to write.
    died = _run(root, work, out, "--kill-in-write", "1")
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert "RESUMED" in died.stdout and "source=input" in died.stdout, died.stdout
    assert any(work.glob(".step-*.tmp")), "the hook should have left a half-written temporary file"
    finished = _run(root, work, out)
    assert finished.returncode == 0, finished.stderr
    assert "RESUMED" in finished.stdout, finished.stdout
    _same_weights(reference, out)
