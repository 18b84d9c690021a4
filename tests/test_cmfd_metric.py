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
