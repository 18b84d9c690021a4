"""Messages that must be seen: the kit's one loud line on stderr."""

from __future__ import annotations

import sys

__all__ = ["loud_warning"]


def loud_warning(message: str) -> None:
    """A line nobody scrolls past, for what must not be discovered after the session died."""
    print(f"[kaggle-kit] {'!' * 8} {message}", file=sys.stderr, flush=True)
