"""Kaggle handles: one rule for owner/slug, versions, models and competitions (kaggle_kit.handles)."""

from __future__ import annotations

import pytest

from kaggle_kit.errors import HandleError
from kaggle_kit.handles import parse_competition, parse_dataset, parse_kernel, parse_model, parse_owner, slugify


@pytest.mark.parametrize("text, ref, version", [
    ("alice/cmfd-checkpoints", "alice/cmfd-checkpoints", None),
    ("alice/cmfd-checkpoints/7", "alice/cmfd-checkpoints", 7),
    ("alice/cmfd-checkpoints/versions/7", "alice/cmfd-checkpoints", 7),
    ("Alice/CMFD-Checkpoints", "alice/cmfd-checkpoints", None),
    ("my_org/run-checkpoints", "my_org/run-checkpoints", None),
])
def test_dataset_forms(text: str, ref: str, version: int | None) -> None:
    handle = parse_dataset(text)
    assert (handle.ref, handle.version) == (ref, version)
    assert handle.cli_ref == (ref if version is None else f"{ref}/{version}")


@pytest.mark.parametrize("text, message", [
    ("alice/ckpt", "Kaggle allows 6 to 50"),
    ("alice/" + "a" * 51, "Kaggle allows 6 to 50"),
    ("alice/run_checkpoints", "did you mean 'run-checkpoints'"),
    ("alice/run--checkpoints", "single hyphens"),
    ("alice/-run-checkpoints", "single hyphens"),
    ("alice/..", "not valid on Kaggle"),
    ("alice/run-checkpoints/0", "positive whole number"),
    ("alice/run-checkpoints/versions/x", "positive whole number"),
    ("alice//run-checkpoints", "empty part"),
    ("alice", "form owner/slug"),
    ("a/b/c/d", "form owner/slug"),
    ("al ice/run-checkpoints", "owner"),
    ("", "must be a string"),
    (None, "must be a string"),
    ("alice/run-check\x00points", "not valid on Kaggle"),
])
def test_dataset_refusals(text: object, message: str) -> None:
    with pytest.raises(HandleError, match=message):
        parse_dataset(text)


def test_unversioned_refuses_a_version() -> None:
    with pytest.raises(HandleError, match="form owner/slug"):
        parse_dataset("alice/run-checkpoints/3", versioned=False)


def test_kernel_slug_at_least_five() -> None:
    assert parse_kernel("alice/train").slug == "train"
    with pytest.raises(HandleError, match="5 to 50"):
        parse_kernel("alice/abc")


def test_model_and_competition() -> None:
    model = parse_model("metaresearch/dinov2/pytorch/small/1")
    assert (model.ref, model.version) == ("metaresearch/dinov2/pytorch/small", 1)
    assert parse_model("metaresearch/dinov2/pytorch/small").version is None
    with pytest.raises(HandleError, match="owner/model/framework/variation"):
        parse_model("metaresearch/dinov2")
    assert parse_competition("Titanic") == "titanic"
    with pytest.raises(HandleError, match="without '/'"):
        parse_competition("alice/titanic")


def test_owner_and_slugify() -> None:
    assert parse_owner("Alice") == "alice"
    with pytest.raises(HandleError):
        parse_owner("alice/x")
    assert slugify("My Awesome  Kernel!") == "my-awesome-kernel"
