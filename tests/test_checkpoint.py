"""The local Checkpointer: full state round trip, atomicity, retention, hostile files, resume order, signals."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer, checkpoint_name, verify_checkpoint
from kaggle_kit.errors import CheckpointError, CredentialError


def _model(hidden: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.Dropout(0.2), nn.Linear(hidden, 2))


def _trained(steps: int = 3, hidden: int = 8) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = _model(hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=50)
    for _ in range(steps):
        loss = model(torch.randn(6, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _save(ck: Checkpointer, step: int, metric: float | None = None, **kw: object) -> None:
    model, opt, sched = _trained(1)
    ck.save(step=step, epoch=0, model=model, optimizer=opt, scheduler=sched,
            metrics={} if metric is None else {"val": metric}, **kw)


def test_full_state_round_trip(tmp_path: Path, kaggle_root: Path) -> None:
    model, opt, sched = _trained()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    ck = Checkpointer(tmp_path / "ck", config={"lr": 0.01, "model": {"hidden": 8}})
    extra = {"history": [{"epoch": 1, "loss": 0.5}], "ema": torch.arange(3.0), "pair": (1, "a"), "ids": {3: "x"}}
    info = ck.save(step=7, epoch=2, model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                   metrics={"val": 0.25}, extra=extra, data_state={"epoch_seed": 5, "position": 3})
    expected = (random.random(), np.random.rand(), torch.rand(1))

    fresh_model, fresh_opt, fresh_sched = _model(), None, None
    fresh_opt = torch.optim.AdamW(fresh_model.parameters(), lr=0.01)
    fresh_sched = torch.optim.lr_scheduler.OneCycleLR(fresh_opt, max_lr=0.1, total_steps=50)
    fresh_scaler = torch.amp.GradScaler("cpu")
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restored = Checkpointer(tmp_path / "ck", config={"lr": 0.01, "model": {"hidden": 8}}).restore(
        model=fresh_model, optimizer=fresh_opt, scheduler=fresh_sched, scaler=fresh_scaler
    )
    assert restored is not None and restored.step == 7 and restored.epoch == 2 and restored.source == "local"
    assert restored.data_state == {"epoch_seed": 5, "position": 3}
    assert restored.metrics == {"val": 0.25}
    assert restored.extra["history"] == [{"epoch": 1, "loss": 0.5}] and restored.extra["pair"] == (1, "a")
    assert restored.extra["ids"] == {3: "x"} and torch.equal(restored.extra["ema"], torch.arange(3.0))
    assert restored.config_hash == ck.config_hash and restored.versions["torch"] == torch.__version__
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh_model.state_dict()[key]), key
    saved_opt, loaded_opt = opt.state_dict(), fresh_opt.state_dict()
    assert saved_opt["param_groups"] == loaded_opt["param_groups"]
    for pid, pstate in saved_opt["state"].items():
        for key, value in pstate.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded_opt["state"][pid][key]))
    assert fresh_sched.state_dict() == sched.state_dict()
    assert fresh_scaler.get_scale() == 1024.0
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    assert info.manifest_path.exists() and verify_checkpoint(info.manifest_path).step == 7


def test_tensor_file_is_plain_tensors_and_state_is_json(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck")
    _save(ck, 3)
    name = checkpoint_name(3)
    tensors = torch.load(tmp_path / "ck" / f"{name}.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    state = json.loads((tmp_path / "ck" / f"{name}.json").read_text())
    assert isinstance(state["rng"]["python"], list) and isinstance(state["rng"]["numpy"]["keys"], str)
    assert state["optimizer"]["param_groups"][0]["lr"] > 0


def test_unstorable_extra_is_refused_by_name(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"extra/callback"):
        ck.save(step=1, extra={"callback": print})
    assert ck.checkpoints() == []


def test_half_written_checkpoint_is_reported_kept_and_removed_once_older(tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder)
    _save(ck, 1)
    # A crash after the data files but before the manifest: step 2 was never committed (or its manifest was deleted).
    (folder / "step-0000000002.pt").write_bytes(b"partial")
    (folder / "step-0000000002.json").write_text("{")
    (folder / ".step-0000000003.pt.99.tmp").write_bytes(b"partial")
    (folder / "step-0000000000.pt").write_bytes(b"left by an interrupted delete")
    with pytest.warns(RuntimeWarning, match=r"step-0000000002\.json, step-0000000002\.pt have no manifest"):
        ck2 = Checkpointer(folder)
    assert [i.step for i in ck2.checkpoints()] == [1]
    # Newer than every completed checkpoint: kept (it may be all that is left of a run); older: removed.
    assert (folder / "step-0000000002.pt").exists() and (folder / ".step-0000000003.pt.99.tmp").exists()
    assert not (folder / "step-0000000000.pt").exists()
    restored = ck2.restore(model=_model())
    assert restored is not None and restored.step == 1
    _save(ck2, 4)
    assert not (folder / "step-0000000002.pt").exists() and not (folder / ".step-0000000003.pt.99.tmp").exists()


def test_keep_last_k_and_the_best(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=2, monitor="val", mode="max")
    for step, metric in [(1, 0.1), (2, 0.9), (3, 0.2), (4, 0.3), (5, 0.4)]:
        _save(ck, step, metric)
    assert sorted(i.step for i in ck.checkpoints()) == [2, 4, 5]
    assert ck.best is not None and ck.best.step == 2
    _save(ck, 6, 0.95)
    assert sorted(i.step for i in ck.checkpoints()) == [5, 6]
    # A new Checkpointer on the same folder knows the best from the manifests.
    assert Checkpointer(tmp_path / "ck", keep=2, monitor="val", mode="max").best.step == 6


def test_saving_twice_at_one_step_replaces_it(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", monitor="val")
    _save(ck, 4)
    _save(ck, 4, 0.5)
    (info,) = ck.checkpoints()
    assert info.metric == 0.5 and ck.best.step == 4


def _corrupt_newest(folder: Path, how: str, tmp_path: Path) -> str:
    name = checkpoint_name(2)
    pt, manifest_path = folder / f"{name}.pt", folder / f"{name}.manifest.json"
    if how == "flipped byte":
        data = bytearray(pt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pt.write_bytes(bytes(data))
    elif how == "truncated":
        pt.write_bytes(pt.read_bytes()[:100])
    elif how == "lying manifest":
        # A pickle that would run code when unpickled, with a manifest rewritten to match it exactly.
        marker = tmp_path / "pwned"
        payload = pickle.dumps(_Exploit(str(marker)))
        pt.write_bytes(payload)
        manifest = json.loads(manifest_path.read_text())
        import hashlib

        manifest["files"][pt.name] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        manifest_path.write_text(json.dumps(manifest))
    elif how == "manifest lies about size":
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][pt.name]["bytes"] += 1
        manifest_path.write_text(json.dumps(manifest))
    elif how == "garbage manifest":
        manifest_path.write_text("not json")
    return name


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "how", ["flipped byte", "truncated", "lying manifest", "manifest lies about size", "garbage manifest"]
)
def test_hostile_or_broken_newest_is_skipped(how: str, tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder)
    _save(ck, 1)
    _save(ck, 2)
    name = _corrupt_newest(folder, how, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = Checkpointer(folder).restore(model=_model())
    assert restored is not None and restored.step == 1
    assert any(name in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert not (tmp_path / "pwned").exists()


def test_incompatible_model_is_refused_naming_the_difference(tmp_path: Path, kaggle_root: Path) -> None:
    model, _, _ = _trained()
    Checkpointer(tmp_path / "ck").save(step=1, model=model, optimizer=torch.optim.AdamW(model.parameters()))
    wider = _model(hidden=16)
    opt = torch.optim.AdamW(wider.parameters())
    with pytest.raises(CheckpointError, match=r"0\.weight: checkpoint \[8, 4\] vs model \[16, 4\]"):
        Checkpointer(tmp_path / "ck").restore(model=wider, optimizer=opt)
    untouched = wider[0].weight.detach().clone()
    with pytest.warns(UserWarning, match="force=True"):
        restored = Checkpointer(tmp_path / "ck").restore(model=wider, optimizer=opt, force=True)
    assert restored is not None and restored.step == 1
    assert torch.equal(wider[3].bias, model[3].bias)  # same shape: loaded
    assert torch.equal(wider[0].weight, untouched)  # other shape: left alone


def test_config_change_warns_with_the_changed_key(tmp_path: Path, kaggle_root: Path) -> None:
    Checkpointer(tmp_path / "ck", config={"lr": 0.1, "epochs": 3}).save(step=1, model=_model())
    with pytest.warns(UserWarning, match="changed: lr"):
        Checkpointer(tmp_path / "ck", config={"lr": 0.2, "epochs": 3}).restore(model=_model())


def test_resume_from_named_inputs_under_both_layouts(tmp_path: Path, kaggle_root: Path) -> None:
    older, newer = tmp_path / "older", tmp_path / "newer"
    _save(Checkpointer(older, run_name="exp"), 5)
    _save(Checkpointer(newer, run_name="exp"), 9)
    # An earlier notebook's output (current layout, checkpoints in a sub-folder) and a dataset (legacy layout).
    nested = kaggle_root / "input" / "notebooks" / "alice" / "train-run" / "checkpoints"
    nested.parent.mkdir(parents=True)
    newer.rename(nested)
    older.rename(kaggle_root / "input" / "my-ckpts")
    work = kaggle_root / "working" / "checkpoints"
    ck = Checkpointer(work, run_name="exp", resume_inputs=["alice/train-run", "alice/my-ckpts"])
    restored = ck.restore(model=_model())
    assert restored is not None and restored.step == 9 and restored.source == "input"
    # The restored checkpoint is adopted locally, so this session's output carries it even before the next save.
    assert [i.step for i in ck.checkpoints()] == [9]
    assert Checkpointer(work, run_name="exp").restore(model=_model()).source == "local"


def test_local_wins_a_tie_and_newer_input_wins(tmp_path: Path, kaggle_root: Path) -> None:
    work = kaggle_root / "working" / "checkpoints"
    _save(Checkpointer(work, run_name="exp"), 3)
    dataset = kaggle_root / "input" / "datasets" / "alice" / "run-ckpts"
    _save(Checkpointer(dataset, run_name="exp"), 3)
    inputs = ["alice/run-ckpts"]
    assert Checkpointer(work, run_name="exp", resume_inputs=inputs).restore(model=_model()).source == "local"
    _save(Checkpointer(dataset, run_name="exp"), 4)
    assert Checkpointer(work, run_name="exp", resume_inputs=inputs).restore(model=_model()).step == 4


def test_nothing_to_restore_returns_none(tmp_path: Path, kaggle_root: Path) -> None:
    assert Checkpointer(tmp_path / "ck").restore(model=_model()) is None


def test_cadence_and_requested_save(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", every_minutes=60)
    model = _model()
    assert ck.maybe_save(step=1, model=model) is None
    ck.request_save()
    assert ck.maybe_save(step=2, model=model).step == 2
    assert ck.maybe_save(step=3, model=model) is None
    with pytest.raises(CheckpointError, match="positive"):
        Checkpointer(tmp_path / "bad", every_minutes=-1)


def test_sigterm_saves_at_the_next_step_then_exits(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", every_minutes=60)
    model = _model()
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        with ck.save_on_signal():
            ck.maybe_save(step=1, model=model)
            os.kill(os.getpid(), signal.SIGTERM)
            assert ck.checkpoints() == []  # the handler only sets a flag
            ck.maybe_save(step=2, model=model)
    assert exited.value.code == 143
    assert [i.step for i in ck.checkpoints()] == [2]
    assert signal.getsignal(signal.SIGTERM) is previous


def test_ctrl_c_saves_then_raises_keyboard_interrupt(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", every_minutes=60)
    with pytest.raises(KeyboardInterrupt):
        with ck.save_on_signal():
            os.kill(os.getpid(), signal.SIGINT)
            ck.maybe_save(step=5, model=_model())
    assert [i.step for i in ck.checkpoints()] == [5]


def test_credentials_in_the_checkpoint_folder_are_refused(tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "kaggle.json").write_text('{"username": "a", "key": "b"}')
    with pytest.raises(CredentialError, match="kaggle.json"):
        Checkpointer(folder)


def test_bad_arguments_are_named(tmp_path: Path, kaggle_root: Path) -> None:
    with pytest.raises(CheckpointError, match="mode='best'"):
        Checkpointer(tmp_path / "ck", mode="best")
    with pytest.raises(CheckpointError, match="keep=0"):
        Checkpointer(tmp_path / "ck", keep=0)
    with pytest.raises(CheckpointError, match="step=-1"):
        Checkpointer(tmp_path / "ck").save(step=-1)


def test_without_a_mirror_inside_kaggle_the_warning_is_loud_unless_only_restoring(
    kaggle_root: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    Checkpointer(kaggle_root / "working" / "ckpt")
    assert "NOT mirrored" in capfd.readouterr().err
    Checkpointer(kaggle_root / "working" / "scratch", restore_only=True)
    assert "NOT mirrored" not in capfd.readouterr().err
