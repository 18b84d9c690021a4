"""The CMFD project's rehearsal hooks, named by the kit's own declaration (``[tool.kaggle-kit.rehearse]`` in the
repository's ``pyproject.toml``).

The rehearsal's competition is small and easy on purpose: large translated copies on the 14-pixel patch grid of
112-pixel images, which the tiny random-init config learns in a few hundred CPU steps.
"""

from __future__ import annotations

from pathlib import Path

from kaggle_kit.cmfd.metric import score_files
from kaggle_kit.cmfd.synthetic import CopyMoveSettings, make_synthetic_competition, solution_path

__all__ = ["COMPETITION", "all_authentic_score", "make_demo_competition", "score_files"]

COMPETITION = "recodai-luc-scientific-image-forgery-detection"
DEMO_CASES = 48
DEMO_TEST = 8
DEMO_SIZE = 112  # the tiny config's data.image_size, so letterboxing keeps the copies on the patch grid
DEMO_SETTINGS = CopyMoveSettings.easy(align=14)


def make_demo_competition(dest: Path, seed: int) -> Path:
    """Write the rehearsal's synthetic competition at ``dest``; returns its solution CSV (outside ``dest``)."""
    make_synthetic_competition(
        dest, n_cases=DEMO_CASES, size=DEMO_SIZE, seed=seed, n_test=DEMO_TEST, settings=DEMO_SETTINGS, fixed_size=True
    )
    return solution_path(dest)


def all_authentic_score(competition_dir: Path, solution: Path) -> float:
    """The score of sample_submission.csv, which predicts ``authentic`` for every test image."""
    return score_files(solution, Path(competition_dir) / "sample_submission.csv")
