"""load(): the one-call inference loader, from a folder or an attached input, best or newest, with kit errors."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import kaggle_kit
from kaggle_kit.checkpoint import Checkpointer, checkpoint_name, load
from kaggle_kit.errors import CheckpointError, InputNotFoundError


def _model(hidden: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def _stamped(step: int, hidden: int = 8) -> nn.Module:
    """A model whose every weight equals ``step``, so the loaded step can be read off the weights."""
    model = _model(hidden)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float(step))
    return model


def _run(folder: Path, metrics: dict[int, float]) -> Path:
    """A finished run's checkpoint folder: one checkpoint per step, monitored "val" (higher is better)."""
    ck = Checkpointer(folder, keep=len(metrics), monitor="val", mode="max")
    for step, value in metrics.items():
        ck.save(step=step, model=_stamped(step), metrics={"val": value})
    return folder


def _weights_step(model: nn.Module) -> float:
    values = {float(p.detach().flatten()[0]) for p in model.parameters()}
    assert len(values) == 1, values
    return values.pop()


def test_best_and_newest_from_a_folder(tmp_path: Path, kaggle_root: Path) -> None:
    folder = _run(tmp_path / "run", {1: 0.1, 2: 0.9, 3: 0.2})
    model = _model()
    best = load(folder, model=model)
    assert best.step == 2 and _weights_step(model) == 2.0
    assert best.best_metric == pytest.approx(0.9) and best.best_name == checkpoint_name(2)
    assert best.path == folder / f"{checkpoint_name(2)}.manifest.json"
    newest = load(str(folder), model=model, which="newest")
    assert newest.step == 3 and _weights_step(model) == 3.0


def test_best_is_the_newest_when_nothing_was_monitored(tmp_path: Path, kaggle_root: Path) -> None:
    ck = Checkpointer(tmp_path / "run", keep=5)
    for step in (4, 5):
        ck.save(step=step, model=_stamped(step))
    model = _model()
    assert load(tmp_path / "run", model=model).step == 5 and _weights_step(model) == 5.0


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_attached_dataset_by_handle_under_both_layouts(layout: str, tmp_path: Path, kaggle_root: Path) -> None:
    run = _run(tmp_path / "run", {1: 0.5, 2: 0.3})
    mount = (kaggle_root / "input" / "datasets" / "alice" / "run-ckpts" if layout == "current"
             else kaggle_root / "input" / "run-ckpts")
    mount.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run, mount)
    model = _model()
    loaded = load("alice/run-ckpts", model=model)
    assert loaded.step == 1 and loaded.source == "input" and _weights_step(model) == 1.0
    assert loaded.path.parent == mount
    assert load("alice/run-ckpts", model=model, which="newest").step == 2


def test_attached_notebook_output_by_handle(tmp_path: Path, kaggle_root: Path) -> None:
    # A notebook slug may be 5 characters, one fewer than a dataset's; its output keeps its folders.
    output = kaggle_root / "input" / "notebooks" / "alice" / "train" / "checkpoints"
    output.parent.mkdir(parents=True)
    shutil.copytree(_run(tmp_path / "run", {3: 0.9, 4: 0.1}), output)
    model = _model()
    assert load("alice/train", model=model).step == 3 and _weights_step(model) == 3.0


def test_none_searches_every_attached_input_but_the_competition(tmp_path: Path, kaggle_root: Path) -> None:
    # A training run's output keeps its folders: checkpoints sit in a sub-folder.
    output = kaggle_root / "input" / "notebooks" / "alice" / "train-run" / "checkpoints"
    output.parent.mkdir(parents=True)
    shutil.copytree(_run(tmp_path / "run", {6: 0.2, 7: 0.8, 8: 0.4}), output)
    # Competition data is never searched, even if it held something that looks like a checkpoint.
    competition = kaggle_root / "input" / "competitions" / "some-comp"
    shutil.copytree(_run(tmp_path / "other", {99: 1.0}), competition)
    model = _model()
    loaded = load(None, model=model)
    assert loaded.step == 7 and _weights_step(model) == 7.0
    assert kaggle_kit.load_checkpoint is load


def test_nothing_found_is_a_kit_error_naming_where_it_looked(tmp_path: Path, kaggle_root: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=rf"no checkpoint .* in {re.escape(str(empty))}"):
        load(empty, model=_model())
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "missing", model=_model())
    with pytest.raises(InputNotFoundError) as not_attached:
        load("alice/not-attached", model=_model())
    message = str(not_attached.value)
    assert str(kaggle_root / "input" / "datasets" / "alice" / "not-attached") in message
    assert str(kaggle_root / "input" / "not-attached") in message
    with pytest.raises(CheckpointError, match=f"nothing is attached under {re.escape(str(kaggle_root / 'input'))}"):
        load(None, model=_model())
    with pytest.raises(CheckpointError, match="neither an existing folder nor a dataset handle"):
        load("no handle at all!", model=_model())
    with pytest.raises(CheckpointError, match="which='latest'"):
        load(empty, model=_model(), which="latest")  # type: ignore[arg-type]


def test_a_model_that_does_not_fit_is_a_kit_error(tmp_path: Path, kaggle_root: Path) -> None:
    folder = _run(tmp_path / "run", {1: 0.5})
    wider = _model(hidden=16)
    untouched = [p.detach().clone() for p in wider.parameters()]
    with pytest.raises(CheckpointError, match=r"does not fit this model: 0\.weight: checkpoint \[8, 4\] vs model "
                                              r"\[16, 4\]"):
        load(folder, model=wider)
    assert all(torch.equal(a, b) for a, b in zip(untouched, wider.parameters()))
    with pytest.warns(UserWarning, match="force=True"):
        load(folder, model=wider, force=True)
    assert torch.equal(wider[2].bias, torch.full((2,), 1.0))  # the one tensor of the same shape
    with pytest.raises(CheckpointError, match="pass the torch.nn.Module"):
        load(folder, model=object())  # type: ignore[arg-type]


def test_corrupt_or_missing_best_falls_back_to_the_newest_with_a_warning(tmp_path: Path, kaggle_root: Path) -> None:
    folder = _run(tmp_path / "run", {1: 0.9, 2: 0.1, 3: 0.2})
    best_pt = folder / f"{checkpoint_name(1)}.pt"
    best_pt.write_bytes(best_pt.read_bytes()[:50])
    model = _model()
    with pytest.warns(UserWarning, match=checkpoint_name(1)):
        assert load(folder, model=model).step == 3
    for path in folder.glob(f"{checkpoint_name(1)}.*"):
        path.unlink()
    with pytest.warns(RuntimeWarning, match="is not there; loading the newest"):
        assert load(folder, model=model).step == 3
    assert _weights_step(model) == 3.0


def test_every_checkpoint_corrupt_is_a_kit_error(tmp_path: Path, kaggle_root: Path) -> None:
    folder = _run(tmp_path / "run", {1: 0.9})
    (folder / f"{checkpoint_name(1)}.pt").write_bytes(b"not a tensor file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="verifies"):
            load(folder, model=_model())


def test_load_sets_weights_only_and_looks_through_wrappers(tmp_path: Path, kaggle_root: Path) -> None:
    folder = _run(tmp_path / "run", {1: 0.5})
    wrapped = nn.DataParallel(_model())
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    load(folder, model=wrapped)
    assert torch.equal(torch.rand(2), expected)  # the training run's RNG state was not applied
    assert _weights_step(wrapped.module) == 1.0
