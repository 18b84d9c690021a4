"""Writing ``submission.csv``: sample_submission's order, never an empty annotation, checked before it is final."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Mapping

from kaggle_kit.cmfd import rle
from kaggle_kit.errors import SubmissionError


def read_sample_ids(sample_submission: Path) -> list[str]:
    """The case_ids of ``sample_submission.csv`` in file order."""
    path = Path(sample_submission)
    if not path.is_file():
        raise SubmissionError(f"{path}: sample submission not found; pass the competition's sample_submission.csv")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if "case_id" not in (reader.fieldnames or []):
            raise SubmissionError(f"{path}: no case_id column; expected the header case_id,annotation")
        return [str(row["case_id"]) for row in reader]


def write_submission(
    annotations: Mapping[str, str],
    sample_submission: Path,
    out: Path,
    *,
    shapes: Mapping[str, tuple[int, int]],
) -> Path:
    """Write a submission in sample_submission's order and validate it by decoding it back.

    Args:
        annotations: case_id -> annotation (``authentic`` or RLE instances joined by ``;``).
        sample_submission: the competition's sample_submission.csv; fixes the rows and their order.
        out: where to write submission.csv (written to a temporary file, then renamed).
        shapes: case_id -> (H, W) of the original image, used to validate every annotation.

    Returns:
        ``out``.

    Raises:
        SubmissionError: a test image has no prediction or shape, or an annotation would not decode.
    """
    ids = read_sample_ids(sample_submission)
    for case_id in ids:
        if case_id not in annotations:
            raise SubmissionError(f"case_id {case_id} from {sample_submission} has no prediction; predict every image")
        if case_id not in shapes:
            raise SubmissionError(f"case_id {case_id} has no image shape; pass the shape of every test image")
        _validate(case_id, annotations[case_id], shapes[case_id])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".submission-", suffix=".csv", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["case_id", "annotation"])
            for case_id in ids:
                writer.writerow([case_id, annotations[case_id]])
        _check_written(Path(tmp), ids, annotations, shapes)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _validate(case_id: str, annotation: str, shape: tuple[int, int]) -> None:
    try:
        rle.decode_annotation_flat(annotation, int(shape[0]) * int(shape[1]))
    except SubmissionError as exc:
        raise SubmissionError(f"case_id {case_id}: {exc}") from None


def _check_written(
    path: Path, ids: list[str], annotations: Mapping[str, str], shapes: Mapping[str, tuple[int, int]]
) -> None:
    # Read the file back as the scorer would: quoting, order and every instance must survive the round trip.
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if [r["case_id"] for r in rows] != ids:
        raise SubmissionError(f"{path}: rows read back do not follow sample_submission's order")
    for row in rows:
        if row["annotation"] != annotations[row["case_id"]]:
            raise SubmissionError(f"{path}: annotation of case_id {row['case_id']} changed when read back")
        _validate(row["case_id"], row["annotation"], shapes[row["case_id"]])
