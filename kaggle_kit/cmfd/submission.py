"""Writing ``submission.csv``: sample_submission's order, never an empty annotation, checked before it is final."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping

from kaggle_kit.cmfd import rle
from kaggle_kit.errors import SubmissionError
from kaggle_kit.fileio import atomic_writer


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
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["case_id", "annotation"])
    for case_id in ids:
        writer.writerow([case_id, annotations[case_id]])
    text = buffer.getvalue()
    out = Path(out)
    _check_written(text, out, ids, annotations, shapes)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return out


def _validate(case_id: str, annotation: str, shape: tuple[int, int]) -> None:
    try:
        rle.decode_annotation_flat(annotation, int(shape[0]) * int(shape[1]))
    except SubmissionError as exc:
        raise SubmissionError(f"case_id {case_id}: {exc}") from None


def _check_written(
    text: str, path: Path, ids: list[str], annotations: Mapping[str, str], shapes: Mapping[str, tuple[int, int]]
) -> None:
    # Read the text back as the scorer would: quoting, order and every instance must survive the round trip.
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if [r["case_id"] for r in rows] != ids:
        raise SubmissionError(f"{path}: rows read back do not follow sample_submission's order")
    for row in rows:
        if row["annotation"] != annotations[row["case_id"]]:
            raise SubmissionError(f"{path}: annotation of case_id {row['case_id']} changed when read back")
        _validate(row["case_id"], row["annotation"], shapes[row["case_id"]])
