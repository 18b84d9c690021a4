"""A session clock for tests whose deadline arrives after a number of optimizer steps, whatever the machine's speed."""

from __future__ import annotations


class StopAfter:
    """A session clock whose deadline arrives after ``steps`` optimizer steps (None: never)."""

    def __init__(self, steps: int | None) -> None:
        self.steps, self.asked = steps, 0

    def time_left(self) -> float:
        return 3600.0

    def should_stop(self, margin_s: float) -> bool:
        self.asked += 1
        return self.steps is not None and self.asked >= self.steps
