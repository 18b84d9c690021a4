"""The competition metric, its worked examples, and the `cmfd score` command's refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.cli import main
from kaggle_kit.cmfd import metric
from kaggle_kit.errors import SubmissionError


def test_worked_example_one_run() -> None:
    assert metric.image_score("[101, 103]", "[101, 102]", (720, 960)) == pytest.approx(204 / 205)


def test_worked_example_two_true_instances() -> None:
    assert metric.image_score("[101, 102];[300, 100]", "[101, 102]", (720, 960)) == pytest.approx(0.5)


def test_authentic_rules() -> None:
    assert metric.image_score("authentic", "authentic", (10, 10)) == 1.0
    assert metric.image_score("authentic", "[1, 5]", (10, 10)) == 0.0
    assert metric.image_score("[1, 5]", "authentic", (10, 10)) == 0.0
    assert metric.image_score("[1, 5]", "[]", (10, 10)) == 0.0


def test_hungarian_matching_beats_greedy() -> None:
    # Greedy would pair prediction A with truth 1 (best single F1) and leave B with a poor match; the optimal
    # assignment pairs A-2 and B-1.
    a = np.zeros(100, bool)
    a[0:12] = True
    b = np.zeros(100, bool)
    b[0:6] = True
    t1 = np.zeros(100, bool)
    t1[0:8] = True
    t2 = np.zeros(100, bool)
    t2[6:20] = True
    f1 = lambda p, t: 2 * (p & t).sum() / (p.sum() + t.sum())  # noqa: E731
    greedy = (f1(a, t1) + f1(b, t2)) / 2
    optimal = (f1(a, t2) + f1(b, t1)) / 2
    assert optimal > greedy
    assert metric.instance_score([a, b], [t1, t2]) == pytest.approx(optimal)


def test_extra_predictions_are_penalised() -> None:
    t = np.zeros(50, bool)
    t[:10] = True
    spurious = np.zeros(50, bool)
    spurious[30:40] = True
    assert metric.instance_score([t, spurious], [t]) == pytest.approx(0.5)


def _write(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture
def solution(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "solution.csv",
        [
            ["case_id", "annotation", "shape"],
            ["11", "[101, 103]", "[720, 960]"],
            ["12", "authentic", "[64, 80]"],
            ["13", "[101, 102];[300, 100]", "[720, 960]"],
        ],
    )


def test_score_command_prints_score_last(tmp_path: Path, solution: Path, capsys: pytest.CaptureFixture) -> None:
    sub = _write(tmp_path / "sub.csv", [["case_id", "annotation"], ["13", "[101, 102]"], ["12", "authentic"],
                                        ["11", "[101, 102]"]])
    assert main(["cmfd", "score", "--solution", str(solution), "--submission", str(sub)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last) == pytest.approx((204 / 205 + 1 + 0.5) / 3, abs=1e-6)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([["11", "[101, 103]"], ["12", "authentic"], ["13", "[300, 5, 100, 5]"]], "row 4 (case_id 13): starts not"),
        ([["11", "[101, 103]"], ["12", "authentic"], ["13", "[100, 5, 102, 5]"]], "row 4 (case_id 13): runs overlap"),
        ([["11", "[101, 103, 7]"], ["12", "authentic"], ["13", "authentic"]], "row 2 (case_id 11): odd"),
        ([["11", ""], ["12", "authentic"], ["13", "authentic"]], "row 2 (case_id 11): annotation is empty"),
        ([["11", "authentic"], ["12", "authentic"]], "missing"),
        ([["11", "authentic"], ["11", "authentic"], ["13", "authentic"]], "row 3 (case_id 11): duplicate"),
        ([["11", "authentic"], ["12", "authentic"], ["13", "authentic"], ["99", "authentic"]], "case_id 99"),
        ([["11", "authentic"], ["12", "[1, 99999]"], ["13", "authentic"]], "beyond"),
    ],
)
def test_score_command_refuses_malformed_submission(
    tmp_path: Path, solution: Path, capsys: pytest.CaptureFixture, rows: list[list[str]], reason: str
) -> None:
    sub = _write(tmp_path / "sub.csv", [["case_id", "annotation"], *rows])
    assert main(["cmfd", "score", "--solution", str(solution), "--submission", str(sub)]) != 0
    assert reason in capsys.readouterr().err


def test_wrong_header_is_refused(tmp_path: Path, solution: Path) -> None:
    sub = _write(tmp_path / "sub.csv", [["id", "prediction"], ["11", "authentic"]])
    with pytest.raises(SubmissionError, match="missing column"):
        metric.score_files(solution, sub)


def _score(solution: Path, submission: Path) -> int:
    return main(["cmfd", "score", "--solution", str(solution), "--submission", str(submission)])


@pytest.mark.parametrize(("annotation", "reason"), [
    ("[1, 99999999999999999999]", "beyond the image's 5120 pixels"),
    ("[1, 4611686018427387904]", "run 0 (start 1, length 4611686018427387904) is beyond the image's 5120 pixels"),
    ("[" * 100_000 + "]" * 100_000, "is not a JSON list of integers"),
    ("[1, 1" + "0" * 5000 + "]", "is not a JSON list of integers"),
])
def test_hostile_annotations_are_refused_with_the_row(tmp_path: Path, solution: Path, capsys: pytest.CaptureFixture,
                                                      annotation: str, reason: str) -> None:
    sub = _write(tmp_path / "sub.csv", [["case_id", "annotation"], ["11", "authentic"], ["12", annotation],
                                        ["13", "authentic"]])
    assert _score(solution, sub) == 2
    err = capsys.readouterr().err
    assert "row 3 (case_id 12)" in err and reason in err and "Traceback" not in err


def test_an_annotation_too_large_to_decode_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    solution = _write(tmp_path / "solution.csv", [["case_id", "annotation", "shape"],
                                                  ["1", "[1, 5]", "[40000, 40000]"]])
    sub = _write(tmp_path / "sub.csv", [["case_id", "annotation"], ["1", "[1, 1];[3, 1]"]])
    assert _score(solution, sub) == 2
    assert "2 instances of a 1600000000-pixel image would take 3.0 GiB to decode" in capsys.readouterr().err


def test_a_folder_or_bytes_not_utf8_are_refused(tmp_path: Path, solution: Path, capsys: pytest.CaptureFixture) -> None:
    assert _score(solution, tmp_path) == 2
    assert "is a folder, not a CSV file" in capsys.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"case_id,annotation\n11,authentic\xe9\n")
    assert _score(solution, latin) == 2
    assert "not a UTF-8 CSV (invalid continuation byte); save it as UTF-8" in capsys.readouterr().err


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path, solution: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    sub = tmp_path / "sub.csv"
    sub.write_text("case_id,annotation\r\n13,\"[101, 102]\"\r\n12,authentic\r\n11,\"[101, 102]\"\r\n",
                   encoding="utf-8-sig")
    assert _score(solution, sub) == 0
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx((204 / 205 + 1 + 0.5) / 3)


def test_an_annotation_longer_than_the_csv_default_limit_is_scored(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kaggle_kit.cmfd import rle

    # Every other pixel of a 400 x 400 image: the longest RLE the format allows for it, 0.8 MB where the csv
    # module's default limit is 128 KiB (a 1200 x 1200 mask's runs to 8 MB).
    flat = np.zeros(400 * 400, dtype=bool)
    flat[::2] = True
    mask = flat.reshape((400, 400), order="F")
    annotation = rle.encode_annotation([mask])
    assert len(annotation) > 800_000
    solution = _write(tmp_path / "solution.csv", [["case_id", "annotation", "shape"], ["1", annotation, "[400, 400]"],
                                                  ["2", "authentic", "[8, 8]"]])
    sub = _write(tmp_path / "sub.csv", [["case_id", "annotation"], ["1", annotation], ["2", "authentic"]])
    assert _score(solution, sub) == 0
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) == 1.0
    assert csv.field_size_limit() == 131072  # the module-wide limit is left as it was
