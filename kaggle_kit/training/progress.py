"""Progress display for the loop: a tqdm widget in a notebook or terminal, plain lines in a Batch log."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from kaggle_kit.env import is_batch

__all__ = ["ProgressBar", "LineProgress", "progress_bar", "in_notebook"]


class ProgressBar(Protocol):
    """What the loop needs of a progress display (tqdm's names)."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, text: str) -> object: ...

    def close(self) -> object: ...


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (so widgets and inline images show)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LineProgress:
    """Progress as plain lines at most every ``interval_s`` seconds: a Batch log keeps no carriage returns."""

    def __init__(self, *, total: int, initial: int, desc: str, interval_s: float) -> None:
        self.total, self.n, self.desc, self.interval_s = total, initial, desc, interval_s
        self._postfix = ""
        self._start = time.monotonic()
        self._first = initial
        self._last = self._start

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._print()

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def _print(self) -> None:
        rate = (self.n - self._first) / max(time.monotonic() - self._start, 1e-9)
        print(f"{self.desc}: {self.n}/{self.total} steps, {rate:.2f} steps/s, {self._postfix}", flush=True)

    def close(self) -> None:
        self._print()


def progress_bar(*, total: int, initial: int, desc: str, interval_s: float) -> ProgressBar:
    """Plain lines in a Batch session or without a terminal or notebook; a tqdm.auto bar otherwise."""
    if is_batch() or not (sys.stderr.isatty() or in_notebook()):
        return LineProgress(total=total, initial=initial, desc=desc, interval_s=interval_s)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
