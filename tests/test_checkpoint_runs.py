"""Resume resumes the right run: run ids in every manifest, named sources only, other runs listed and never loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer, run_id_for, verify_checkpoint
from kaggle_kit.errors import CheckpointError


class _OfflineMirror:
    """A CheckpointMirror whose dataset cannot be reached (a session without internet): it only names the run."""

    def __init__(self, handle: str) -> None:
        self.handle = handle
        self.enabled = False

    def report_off(self, *, checkpoint_dir: Any = None) -> None: ...

    def secrets(self) -> tuple[str, ...]:
        return ()

    def submit(self, latest: Any, best: Any = None, recent: Sequence[Any] = ()) -> None: ...

    def flush(self, timeout: float | None = 600.0) -> bool:
        return True

    def confirmed(self) -> None:
        return None

    def remote_pointer(self) -> None:
        return None

    def download_checkpoint(self, name: str, dest: Any, *, version: int | None = None) -> Path:
        raise AssertionError("an offline mirror downloads nothing")

    def seed_ledger(self, path: Any) -> None: ...


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _old_run(folder: Path, step: int = 320) -> nn.Module:
    """An earlier run, mirrored to alice/old-ckpts, that reached ``step``."""
    model = _model(seed=7)
    Checkpointer(folder, mirror=_OfflineMirror("alice/old-ckpts")).save(step=step, model=model)
    return model


def _strip_run_id(folder: Path) -> None:
    """Make the checkpoints in ``folder`` look written before run ids existed (state re-hashed to match)."""
    for manifest_path in folder.glob("step-*.manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        state_path = folder / manifest_path.name.replace(".manifest.json", ".json")
        state = json.loads(state_path.read_text())
        state.pop("run_id")
        data = json.dumps(state).encode()
        state_path.write_bytes(data)
        manifest.pop("run_id")
        manifest["files"][state_path.name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        manifest_path.write_text(json.dumps(manifest))


def test_run_id_for_names_a_run_one_way() -> None:
    assert run_id_for(mirror_handle="alice/cmfd-ckpts") == "dataset:alice/cmfd-ckpts"
    assert run_id_for(mirror_handle="Alice/cmfd-ckpts/3", run_name="exp2") == "dataset:alice/cmfd-ckpts run:exp2"
    # With a mirror, the notebook's name is not part of the run: renaming the notebook keeps the run.
    assert run_id_for(mirror_handle="alice/cmfd-ckpts", kernel="alice/train-a") == run_id_for(
        mirror_handle="alice/cmfd-ckpts", kernel="alice/train-b")
    assert run_id_for(project="CMFD Kit", kernel="alice/cmfd-train/4") == "project:cmfd-kit kernel:alice/cmfd-train"
    assert run_id_for(run_name="lr3e-4.seed2") == "run:lr3e-4.seed2"
    with pytest.raises(CheckpointError, match="nothing identifies the run"):
        run_id_for()
    with pytest.raises(CheckpointError, match="run_name='no spaces please'"):
        run_id_for(run_name="no spaces please")
    with pytest.raises(CheckpointError, match="cannot name the run"):
        run_id_for(mirror_handle="not-a-handle")


def test_every_manifest_and_state_carries_the_run_id(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", mirror=_OfflineMirror("alice/new-ckpts"), run_name="exp")
    info = ck.save(step=1, model=_model())
    assert info.run_id == "dataset:alice/new-ckpts run:exp" == ck.run_id
    assert json.loads(info.state_path.read_text())["run_id"] == ck.run_id
    assert verify_checkpoint(info.manifest_path).run_id == ck.run_id


def test_a_new_run_never_resumes_an_old_run_from_the_code_dataset_or_a_leftover_input(
    tmp_path: Path, kaggle_root: Path
) -> None:
    # The story of issue 12: `kaggle-kit output train` downloaded an old run into kernel-output/, publish-code
    # uploaded it with the code, and the old checkpoint dataset stayed in dataset_sources.
    old = _old_run(tmp_path / "old")
    code = kaggle_root / "input" / "datasets" / "alice" / "my-code" / "kernel-output" / "checkpoints"
    shutil.copytree(tmp_path / "old", code)
    shutil.copytree(tmp_path / "old", kaggle_root / "input" / "datasets" / "alice" / "old-ckpts")
    model = _model()
    before = _weights(model)
    ck = Checkpointer(kaggle_root / "working" / "checkpoints", mirror=_OfflineMirror("alice/new-ckpts"))
    restored = ck.restore(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert restored is None, f"resumed {restored.path} of another run"
    assert _same(before, _weights(model)) and not _same(_weights(old), _weights(model))
    assert ck.checkpoints() == []


def test_another_runs_checkpoint_in_a_named_input_is_listed_and_not_loaded(
    tmp_path: Path, kaggle_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _old_run(kaggle_root / "input" / "datasets" / "alice" / "old-ckpts")
    model = _model()
    before = _weights(model)
    ck = Checkpointer(kaggle_root / "working" / "checkpoints", mirror=_OfflineMirror("alice/new-ckpts"),
                      resume_inputs=["alice/old-ckpts"])
    with pytest.warns(RuntimeWarning) as caught:
        assert ck.restore(model=model) is None
    message = "\n".join(str(w.message) for w in caught)
    assert "run 'dataset:alice/old-ckpts', step 320, in " in message and "old-ckpts/step-0000000320" in message
    assert "resume_from=" in message and "dataset:alice/new-ckpts" in message
    assert "resume_from=" in capfd.readouterr().err  # loud, not only a warning
    assert _same(before, _weights(model))


def test_resume_from_adopts_another_run_on_purpose_and_continues_as_this_run(
    tmp_path: Path, kaggle_root: Path
) -> None:
    old = _old_run(kaggle_root / "input" / "datasets" / "alice" / "old-ckpts")
    work = kaggle_root / "working" / "checkpoints"
    mirror = _OfflineMirror("alice/new-ckpts")
    model = _model()
    with pytest.warns(RuntimeWarning, match=r"adopts .*step-0000000320.* as resume_from asked"):
        restored = Checkpointer(work, mirror=mirror, resume_from="alice/old-ckpts").restore(model=model)
    assert restored is not None and restored.step == 320 and restored.source == "adopted"
    assert restored.adopted_from == "dataset:alice/old-ckpts" and _same(_weights(old), _weights(model))
    # The local copy is this run's now (its manifest says where it came from); the next session resumes it
    # as its own, with no warning, even when resume_from is still passed.
    (local,) = Checkpointer(work, mirror=mirror).checkpoints()
    assert local.run_id == "dataset:alice/new-ckpts"
    assert local.manifest["adopted_from"]["run_id"] == "dataset:alice/old-ckpts"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Checkpointer(work, mirror=mirror, resume_from="alice/old-ckpts").restore(model=_model())
    assert again is not None and again.source == "local" and again.adopted_from is None


def test_checkpoints_from_before_run_ids_are_adopted_only_when_alone(tmp_path: Path, kaggle_root: Path) -> None:
    legacy = kaggle_root / "input" / "datasets" / "alice" / "pre-ids"
    Checkpointer(legacy).save(step=40, model=_model(seed=3))
    _strip_run_id(legacy)
    work = kaggle_root / "working" / "checkpoints"
    with pytest.warns(RuntimeWarning, match=r"adopts .*step-0000000040.*written before run ids existed.*only "):
        restored = Checkpointer(work, run_name="exp", resume_inputs=["alice/pre-ids"]).restore(model=_model())
    assert restored is not None and restored.step == 40 and restored.adopted_from == "written before run ids existed"
    # Next to another run's checkpoint they are not the only candidates: neither is loaded, both are listed.
    shutil.rmtree(work)
    _old_run(kaggle_root / "input" / "datasets" / "alice" / "old-ckpts", step=10)
    ck = Checkpointer(work, run_name="exp", resume_inputs=["alice/pre-ids", "alice/old-ckpts"])
    with pytest.warns(RuntimeWarning) as caught:
        assert ck.restore(model=_model()) is None
    message = "\n".join(str(w.message) for w in caught)
    assert "written before run ids existed, step 40" in message and "run 'dataset:alice/old-ckpts', step 10" in message


def test_a_folder_shared_with_another_run_is_never_resumed_overwritten_or_pruned(
    tmp_path: Path, kaggle_root: Path
) -> None:
    folder = tmp_path / "ck"
    first = Checkpointer(folder, run_name="first", keep=1)
    for step in (1, 2):
        first.save(step=step, model=_model())
    second = Checkpointer(folder, run_name="second", keep=1)
    with pytest.warns(RuntimeWarning, match=r"run 'run:first', step 2"):
        assert second.restore(model=_model()) is None
    with pytest.raises(CheckpointError, match=r"belongs to run 'run:first'.*resume_from"):
        second.save(step=2, model=_model())
    for step in (3, 4):
        second.save(step=step, model=_model())
    names = sorted(p.name for p in folder.glob("*.manifest.json"))
    assert names == [f"step-000000000{s}.manifest.json" for s in (2, 4)], "the first run's step 2 must stay"
    assert [i.step for i in Checkpointer(folder, run_name="first").checkpoints()] == [2]


def test_an_unnamed_run_is_the_one_in_its_folder(tmp_path: Path, kaggle_root: Path) -> None:
    folder = tmp_path / "ck"
    ck = Checkpointer(folder)
    ck.save(step=5, model=_model())
    again = Checkpointer(folder)
    assert again.run_id == ck.run_id and again.run_id.startswith("unnamed:")
    assert again.restore(model=_model()).step == 5
    assert Checkpointer(tmp_path / "other").run_id != ck.run_id


def test_bad_run_arguments_are_named(tmp_path: Path, kaggle_root: Path) -> None:
    with pytest.raises(CheckpointError, match="run_name="):
        Checkpointer(tmp_path / "ck", run_name="a b")
    with pytest.raises(CheckpointError, match="resume_inputs="):
        Checkpointer(tmp_path / "ck", resume_inputs="alice/one-input")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="run_id"):
        Checkpointer(tmp_path / "ck", run_id="\x00bad")
    ck = Checkpointer(tmp_path / "ck", run_name="x", resume_from=os.fspath(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="resume_from"):
        ck.restore(model=_model())
