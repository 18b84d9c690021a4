"""``kaggle-kit run``: one command carries a training run across as many Kaggle sessions as it takes, to a
submission (:func:`carry_run`), with its state in the project (:mod:`kaggle_kit.runs.state`)."""

from kaggle_kit.runs.engine import DEFAULT_QUOTA_RESERVE_S, Poller, RunOptions, RunOutcome, carry_run
from kaggle_kit.runs.state import RUNS_DIR, RunLock, RunState, SessionRecord, load_state

__all__ = ["DEFAULT_QUOTA_RESERVE_S", "RUNS_DIR", "Poller", "RunLock", "RunOptions", "RunOutcome", "RunState",
           "SessionRecord", "carry_run", "load_state"]
