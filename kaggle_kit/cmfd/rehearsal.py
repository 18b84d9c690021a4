"""The CMFD workload as `kaggle-kit rehearse` runs it: a small synthetic competition and its exact metric."""

from __future__ import annotations

from pathlib import Path

from kaggle_kit.cmfd.metric import score_files
from kaggle_kit.cmfd.synthetic import make_synthetic_competition, solution_path
from kaggle_kit.rehearsal import RehearsalWorkload

COMPETITION = "recodai-luc-scientific-image-forgery-detection"
# Small enough for a few CPU minutes, large enough that training beats predicting `authentic` everywhere.
REHEARSAL_CASES = 48
REHEARSAL_IMAGE_SIZE = 112


def _make_competition(dest: Path, seed: int) -> Path:
    make_synthetic_competition(dest, n_cases=REHEARSAL_CASES, size=REHEARSAL_IMAGE_SIZE, seed=seed)
    return solution_path(dest)


def _authentic_everywhere(competition_dir: Path, solution: Path) -> float:
    # sample_submission.csv predicts `authentic` for every image: the baseline any model must beat.
    return score_files(solution, competition_dir / "sample_submission.csv")


WORKLOAD = RehearsalWorkload(
    name="cmfd",
    competition=COMPETITION,
    config="tiny",
    make_competition=_make_competition,
    score=score_files,
    baseline=_authentic_everywhere,
    baseline_name="`authentic`",
)
