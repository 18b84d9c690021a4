"""The competition's score: per-image instance F1 with Hungarian matching, then the mean over images."""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from kaggle_kit.cmfd import rle
from kaggle_kit.errors import MalformedFileError, SubmissionError
from kaggle_kit.fileio import loads_json


@dataclass(frozen=True)
class SolutionRow:
    """One labelled image: its id, its true annotation and its (H, W)."""

    case_id: str
    annotation: str
    shape: tuple[int, int]


def _pair_f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = int(np.count_nonzero(pred & true))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(true)) - tp
    if tp + fp == 0 or tp + fn == 0:
        return 0.0
    return 2 * tp / (2 * tp + fp + fn)


def instance_score(pred: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> float:
    """Score one forged image: matched F1 over max(N_pred, N_true).

    Args:
        pred: predicted instance masks (any shape, all the same as ``true``'s).
        true: true instance masks.
    """
    n_pred, n_true = len(pred), len(true)
    if max(n_pred, n_true) == 0:
        return 0.0
    # Zero rows pad the predictions up to the true count; extra predictions simply stay unmatched.
    f1 = np.zeros((max(n_pred, n_true), n_true))
    for i, p in enumerate(pred):
        for j, t in enumerate(true):
            f1[i, j] = _pair_f1(p, t)
    if n_true == 0:
        return 0.0
    rows, cols = linear_sum_assignment(f1, maximize=True)
    return float(f1[rows, cols].sum()) / max(n_pred, n_true)


def image_score(label: str, prediction: str, shape: tuple[int, int]) -> float:
    """Score one image from its true and predicted annotations.

    Raises:
        SubmissionError: either annotation cannot be decoded at ``shape``.
    """
    n_pixels = int(shape[0]) * int(shape[1])
    true = rle.decode_annotation_flat(label, n_pixels)
    pred = rle.decode_annotation_flat(prediction, n_pixels)
    if true is None or pred is None:
        return 1.0 if (true is None and pred is None) else 0.0
    return instance_score(pred, true)


def _parse_shape(text: str, where: str) -> tuple[int, int]:
    try:
        value = loads_json(text, where="shape", max_depth=1)
    except MalformedFileError:
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise SubmissionError(f"{where}: shape {text!r} must be '[H, W]' with positive integers")
    return int(value[0]), int(value[1])


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """Lets the csv module read fields of any length: a large mask's RLE runs to megabytes (the default is 128 KiB)."""
    previous = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str | None]]:
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder, not a CSV file; pass the CSV file itself")
    try:
        # utf-8-sig: a byte-order mark (as Excel writes) is not part of the first column's name.
        with _any_field_size(), open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            try:
                fieldnames = reader.fieldnames or []
                missing = [c for c in required if c not in fieldnames]
                if missing:
                    raise SubmissionError(
                        f"{path}: missing column(s) {', '.join(missing)}; the header must be {','.join(required)}"
                    )
                return list(reader)
            except csv.Error as exc:
                raise SubmissionError(f"{path} line {reader.line_num}: not a valid CSV ({exc})") from None
    except FileNotFoundError:
        raise SubmissionError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{path}: not a UTF-8 CSV ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_solution(path: Path) -> list[SolutionRow]:
    """Read a solution CSV with columns ``case_id,annotation,shape`` (shape as ``[H, W]``)."""
    rows = []
    for n, row in enumerate(_read_rows(Path(path), ("case_id", "annotation", "shape")), start=2):
        where = f"{path} row {n} (case_id {row['case_id']})"
        shape = _parse_shape(row["shape"] or "", where)
        rows.append(SolutionRow(str(row["case_id"]), str(row["annotation"]), shape))
    return rows


def read_submission(path: Path) -> list[tuple[str, str | None]]:
    """Read a submission CSV into ``(case_id, annotation)`` pairs in file order."""
    return [(str(r["case_id"]), r["annotation"]) for r in _read_rows(Path(path), ("case_id", "annotation"))]


def score_rows(
    solution: Sequence[SolutionRow], submission: Sequence[tuple[str, str | None]], *, source: str = "submission"
) -> float:
    """Mean image score of a submission against a solution, validating every row first.

    Raises:
        SubmissionError: naming the row (1-based file line, header is line 1), the case_id and the reason.
    """
    expected = {row.case_id: row for row in solution}
    seen: dict[str, int] = {}
    for n, (case_id, annotation) in enumerate(submission, start=2):
        where = f"{source} row {n} (case_id {case_id})"
        if case_id not in expected:
            raise SubmissionError(f"{where}: case_id not in the solution; submit exactly the test images")
        if case_id in seen:
            raise SubmissionError(f"{where}: duplicate of row {seen[case_id]}; one row per image")
        seen[case_id] = n
        try:
            rle.decode_annotation_flat(annotation, expected[case_id].shape[0] * expected[case_id].shape[1])
        except SubmissionError as exc:
            raise SubmissionError(f"{where}: {exc}") from None
    missing = [cid for cid in expected if cid not in seen]
    if missing:
        raise SubmissionError(f"{source}: {len(missing)} case_id(s) missing, first {missing[0]}; one row per image")
    if not expected:
        raise SubmissionError(f"{source}: the solution has no rows to score")
    predicted = dict(submission)
    scores = []
    for n, row in enumerate(solution, start=2):
        try:
            scores.append(image_score(row.annotation, str(predicted[row.case_id]), row.shape))
        except SubmissionError as exc:  # the submission was checked above, so the label is at fault
            raise SubmissionError(f"solution row {n} (case_id {row.case_id}): {exc}") from None
    return float(np.mean(scores))


def score_files(solution: Path, submission: Path) -> float:
    """Score a submission CSV against a solution CSV."""
    return score_rows(read_solution(solution), read_submission(submission), source=str(submission))
