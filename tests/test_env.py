"""kaggle_kit.env against fake Kaggle trees built through KAGGLE_KIT_KAGGLE_ROOT."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaggle_kit import env
from kaggle_kit.errors import InputNotFoundError


@pytest.fixture
def kaggle(kaggle_root):
    return kaggle_root


def test_default_root_is_slash_kaggle(monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_KAGGLE_ROOT", raising=False)
    assert env.kaggle_root() == Path("/kaggle")
    assert env.working_dir() == Path("/kaggle/working")


def test_root_override_moves_all_three_folders(kaggle):
    assert env.input_dir() == kaggle / "input"
    assert env.working_dir() == kaggle / "working"
    assert env.temp_dir() == kaggle / "temp"


def test_run_type(monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert not env.in_kaggle() and env.run_type() is None
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert env.in_kaggle() and env.is_batch() and env.run_type() == "Batch"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert env.run_type() == "Interactive" and not env.is_batch()


@pytest.mark.parametrize(
    ("rel", "handle", "kind"),
    [
        ("competitions/recodai-luc", "recodai-luc", "competition"),
        ("datasets/alice/ckpt", "alice/ckpt", "dataset"),
        ("datasets/alice/ckpt", "alice/ckpt/3", "dataset"),
        ("datasets/alice/ckpt", "alice/ckpt/versions/3", "dataset"),
        ("notebooks/alice/train", "alice/train", "notebook"),
        ("models/metaresearch/dinov2/pytorch/small/1", "metaresearch/dinov2/pytorch/small/1", "model"),
        ("recodai-luc", "recodai-luc", "competition"),  # legacy
        ("ckpt", "alice/ckpt", "dataset"),  # legacy
        ("train", "alice/train", "notebook"),  # legacy
        ("dinov2", "metaresearch/dinov2/pytorch/small/1", "model"),  # legacy
    ],
)
def test_find_input_under_both_layouts(kaggle, rel, handle, kind):
    target = kaggle / "input" / rel
    target.mkdir(parents=True)
    assert env.find_input(handle, kind) == target
    assert env.find_input(handle) == target


def test_current_layout_preferred_over_legacy(kaggle):
    (kaggle / "input" / "ckpt").mkdir()
    (kaggle / "input" / "datasets" / "alice" / "ckpt").mkdir(parents=True)
    assert env.find_input("alice/ckpt", "dataset") == kaggle / "input" / "datasets" / "alice" / "ckpt"


def test_model_without_version_takes_newest(kaggle):
    base = kaggle / "input" / "models" / "metaresearch" / "dinov2" / "pytorch" / "small"
    for n in ("1", "2", "10"):
        (base / n).mkdir(parents=True)
    assert env.find_input("metaresearch/dinov2/pytorch/small", "model") == base / "10"


def test_missing_input_lists_places(kaggle):
    with pytest.raises(InputNotFoundError) as err:
        env.find_input("alice/ckpt", "dataset")
    message = str(err.value)
    assert str(kaggle / "input" / "datasets" / "alice" / "ckpt") in message
    assert str(kaggle / "input" / "ckpt") in message
    assert "Add Input" in message


def test_bad_kind_and_empty_handle(kaggle):
    with pytest.raises(InputNotFoundError, match="unknown input kind"):
        env.find_input("x", "competitions")
    with pytest.raises(InputNotFoundError, match="empty input handle"):
        env.find_input("/")


def test_attached_inputs_lists_both_layouts(kaggle):
    for rel in ("competitions/comp", "datasets/alice/ckpt", "models/o/m/pytorch/v/2", "notebooks/bob/nb", "legacy"):
        (kaggle / "input" / rel).mkdir(parents=True)
    found = {(a.kind, a.handle, a.layout) for a in env.attached_inputs()}
    assert found == {
        ("competition", "comp", "current"),
        ("dataset", "alice/ckpt", "current"),
        ("model", "o/m/pytorch/v/2", "current"),
        ("notebook", "bob/nb", "current"),
        (None, "legacy", "legacy"),
    }
