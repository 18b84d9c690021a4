"""RLE as the competition defines it: column-major, 1-based, refusals of malformed runs."""

from __future__ import annotations

import numpy as np
import pytest

from kaggle_kit.cmfd import rle
from kaggle_kit.errors import SubmissionError


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 65), (97, 31)])
def test_round_trip_random_masks(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = rng.random(shape) < density
        runs = rle.encode(mask)
        assert np.array_equal(rle.decode(runs, shape), mask)


def test_column_major_and_one_based() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 0] = True  # column 0, row 1 -> pixel 2 (1-based, down the first column)
    mask[0, 1] = True  # column 1, row 0 -> pixel 4
    mask[2, 1] = True  # pixel 6
    assert rle.encode(mask) == [2, 1, 4, 1, 6, 1]
    full_column = np.zeros((3, 4), dtype=bool)
    full_column[:, 2] = True
    assert rle.encode(full_column) == [7, 3]


def test_annotation_round_trip_keeps_instances_apart() -> None:
    masks = np.zeros((2, 10, 12), dtype=bool)
    masks[0, 1:4, 1:4] = True
    masks[1, 6:9, 7:11] = True
    annotation = rle.encode_annotation(masks)
    assert annotation.count(";") == 1
    assert np.array_equal(rle.decode_annotation(annotation, (10, 12)), masks)


def test_no_instance_is_authentic() -> None:
    assert rle.encode_annotation(np.zeros((2, 5, 5), dtype=bool)) == "authentic"
    assert rle.encode_annotation([]) == "authentic"
    assert rle.decode_annotation("authentic", (5, 5)) is None
    # "[]" is an empty mask, not authentic.
    assert rle.decode_annotation("[]", (5, 5)).sum() == 0


@pytest.mark.parametrize(
    ("runs", "reason"),
    [
        ([5, 2, 3], "odd"),
        ([10, 2, 3, 1], "not ascending"),
        ([10, 2, 10, 1], "not ascending"),
        ([1, 5, 4, 2], "overlap"),
        ([0, 2], "1-based"),
        ([3, 0], "length"),
        ([99, 5], "beyond"),
    ],
)
def test_decoder_refuses_malformed_runs(runs: list[int], reason: str) -> None:
    with pytest.raises(SubmissionError, match=reason):
        rle.decode(runs, (10, 10))


def test_touching_runs_are_accepted() -> None:
    assert rle.decode([1, 2, 3, 2], (2, 2)).all()


@pytest.mark.parametrize("annotation", ["", "  ", "nan", None, float("nan")])
def test_empty_or_nan_annotation_is_refused(annotation: object) -> None:
    with pytest.raises(SubmissionError, match="authentic"):
        rle.parse_annotation(annotation)  # type: ignore[arg-type]


@pytest.mark.parametrize("annotation", ["[1, 2", "{\"a\": 1}", "[1.5, 2]", "[true, 1]"])
def test_non_integer_lists_are_refused(annotation: str) -> None:
    with pytest.raises(SubmissionError):
        rle.parse_annotation(annotation)
