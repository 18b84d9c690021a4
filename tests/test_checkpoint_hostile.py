"""Hostile or broken checkpoint files: skipped with a warning, the next good one used, never half-applied; a full
disk is a kit error naming the folder and the bytes needed, and the earlier checkpoints stay."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import kaggle_kit
from kaggle_kit.checkpoint import Checkpointer, load, verify_checkpoint
from kaggle_kit.errors import CheckpointError

NEWEST = "step-0000000002"
DEEP = b"[" * 100_000 + b"]" * 100_000


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for v in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _two_checkpoints(folder: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Steps 1 and 2 with different weights; returns the weights of each."""
    ck = Checkpointer(folder, monitor="val")
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    ck.save(step=1, model=model, optimizer=opt, metrics={"val": 0.5})
    first = _weights(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ck.save(step=2, model=model, optimizer=opt, metrics={"val": 0.4})
    return first, _weights(model)


def _rewrite_state(folder: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    """Change the newest state JSON and re-forge its manifest's size and SHA-256 to match."""
    state_path = folder / f"{NEWEST}.json"
    state = json.loads(state_path.read_text())
    replaced = change(state)
    data = replaced if isinstance(replaced, bytes) else json.dumps(state).encode()
    state_path.write_bytes(data)
    manifest_path = folder / f"{NEWEST}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][state_path.name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))


def _rewrite_manifest(folder: Path, key: str, value: Any) -> None:
    path = folder / f"{NEWEST}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest[key] = value
    path.write_text(json.dumps(manifest))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.__setitem__(key, value)


def _bad_rng(state: dict[str, Any]) -> None:
    state["rng"]["numpy"]["keys"] = "not base64 at all!"


def _missing_tensor(state: dict[str, Any]) -> None:
    state["rng"]["torch"] = {"__tensor__": "rng/nowhere"}


HOSTILE: dict[str, Callable[[Path], None]] = {
    "manifest best [1]": lambda f: _rewrite_manifest(f, "best", [1]),
    "manifest best 'x'": lambda f: _rewrite_manifest(f, "best", "x"),
    "manifest 100,000 deep": lambda f: (f / f"{NEWEST}.manifest.json").write_bytes(DEEP),
    "state 100,000 deep": lambda f: _rewrite_state(f, lambda s: DEEP),
    "state epoch 'x'": lambda f: _rewrite_state(f, _set("epoch", "x")),
    "state optimizer 'boom'": lambda f: _rewrite_state(f, _set("optimizer", "boom")),
    "state model_shapes 5": lambda f: _rewrite_state(f, _set("model_shapes", 5)),
    "state malformed RNG": lambda f: _rewrite_state(f, _bad_rng),
    "state refers to a missing tensor": lambda f: _rewrite_state(f, _missing_tensor),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("where", ["local", "input"])
def test_a_hostile_newest_is_skipped_with_a_warning_and_the_older_one_used_whole(
    case: str, where: str, tmp_path: Path, kaggle_root: Path
) -> None:
    folder = tmp_path / "ck" if where == "local" else kaggle_root / "input" / "datasets" / "alice" / "run-ckpts"
    first, _ = _two_checkpoints(folder)
    HOSTILE[case](folder)
    work = folder if where == "local" else kaggle_root / "working" / "ck"
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = Checkpointer(folder).run_id
        ck = Checkpointer(work, run_id=run, resume_inputs=["alice/run-ckpts"], monitor="val")
        restored = ck.restore(model=model, optimizer=opt)
    assert restored is not None and restored.step == 1, [str(w.message) for w in caught]
    assert any(NEWEST in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert _same(first, _weights(model))
    assert opt.state_dict()["state"], "the optimizer state of step 1 was loaded"
    # Inference falls back the same way.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load(folder, model=_model(), which="newest")
    assert loaded.step == 1


class _Unloadable:
    """A scheduler whose state cannot be loaded: fails after the model and the optimizer were."""

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise RuntimeError("this scheduler refuses every state")


def test_a_failure_midway_puts_everything_back(tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    with torch.no_grad():
        model[0].weight.add_(5.0)
    ck.save(step=3, model=model, optimizer=opt, scheduler=_Unloadable())

    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    before, opt_before = _weights(fresh), fresh_opt.state_dict()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    rng_before = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with pytest.raises(CheckpointError, match=r"step-0000000003.*scheduler.*nothing was loaded"):
        Checkpointer(folder).restore(model=fresh, optimizer=fresh_opt, scheduler=_Unloadable())
    assert _same(before, _weights(fresh)), "the model was left half-restored"
    assert fresh_opt.state_dict() == opt_before, "the optimizer was left half-restored"
    assert (random.random(), np.random.rand(), torch.rand(1)) == rng_before, "the RNGs were changed"


def test_a_deleted_newest_manifest_is_reported_and_its_files_kept(tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    first, _ = _two_checkpoints(folder)
    (folder / f"{NEWEST}.manifest.json").unlink()
    model = _model()
    with pytest.warns(RuntimeWarning, match=rf"{NEWEST}\.json, {NEWEST}\.pt have no manifest"):
        restored = Checkpointer(folder).restore(model=model)
    assert restored is not None and restored.step == 1 and _same(first, _weights(model))
    with pytest.warns(RuntimeWarning, match="no manifest"):
        Checkpointer(folder)
    assert (folder / f"{NEWEST}.pt").exists() and (folder / f"{NEWEST}.json").exists()


def _enospc_in_torch_save(monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torch.save

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and "big" in str(obj.keys()):
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)


def test_a_full_disk_is_a_kit_error_and_the_earlier_checkpoints_stay(
    tmp_path: Path, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder, monitor="val", mode="max")
    first = ck.save(step=1, model=_model(), metrics={"val": 0.5})
    _enospc_in_torch_save(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"no space left in {folder} to save step-0000000002: it needs about "
                                              r"\d+ bytes"):
        ck.save(step=2, model=_model(), metrics={"val": 0.9}, extra={"big": torch.zeros(100_000)})
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in first.paths)
    verify_checkpoint(first.manifest_path)
    assert ck.best is not None and ck.best.step == 1, "a failed save must not become the best"


def test_torchs_own_write_failure_on_a_full_disk_is_named_too(
    tmp_path: Path, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder)
    ck.save(step=1, model=_model())

    def failing(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10_000, used=9_000, free=1_000))
    with pytest.raises(CheckpointError, match=r"no space left in .* needs about \d+ bytes and 1000 bytes are free"):
        ck.save(step=2, model=_model())
    assert [i.step for i in ck.checkpoints()] == [1]


_FULL_DISK_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from kaggle_kit.checkpoint import Checkpointer, verify_checkpoint
    from kaggle_kit.errors import CheckpointError

    folder = sys.argv[1]
    ck = Checkpointer(folder)
    first = ck.save(step=1, extra={"small": torch.zeros(1000)})
    try:
        ck.save(step=2, extra={"big": torch.zeros(1_000_000)})
        error = None
    except CheckpointError as exc:
        error = str(exc)
    verify_checkpoint(first.manifest_path)
    import os
    print(json.dumps({"error": error, "files": sorted(os.listdir(folder))}))
""")


def test_a_real_full_disk_is_a_kit_error_and_the_earlier_checkpoints_stay(tmp_path: Path, kaggle_root: Path) -> None:
    """A 1 MiB tmpfs in a private mount namespace: the real ENOSPC from torch.save and the file system."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a small file system")
    folder = tmp_path / "small"
    folder.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK_SCRIPT)
    command = (f"mount -t tmpfs -o size=1m tmpfs {folder} || exit 77; "
               f"exec {sys.executable} {script} {folder}")
    # The script imports the kit this test runs against, wherever the interpreter's installed copy points.
    env = {**os.environ, "PYTHONPATH": str(Path(kaggle_kit.__file__).parents[1])}
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                            capture_output=True, text=True, timeout=120, env=env)
    if result.returncode == 77 or "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["error"] is not None and f"no space left in {folder}" in outcome["error"], outcome
    assert "needs about" in outcome["error"] and "bytes are free" in outcome["error"]
    assert outcome["files"] == [f"step-0000000001{ext}" for ext in (".json", ".manifest.json", ".pt")]
