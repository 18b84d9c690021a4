"""Faults the stand-in server injects into its next matching requests."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from kaggle_kit.errors import ConfigError

FAULT_KINDS = ("429", "500", "503", "drop", "slow", "cut_upload")
FAULT_FIELDS = ("kind", "count", "match", "retry_after", "delay", "for_s")
# The Retry-After value that sends no Retry-After header at all (Kaggle does not always send one).
NO_RETRY_AFTER = "none"


@dataclass
class Fault:
    """One armed fault: ``count`` more requests whose path contains ``match`` get ``kind``.

    ``429`` answers Kaggle's error body with ``Retry-After: retry_after`` (whole seconds, rounded up; default 1), or
    with no Retry-After when ``retry_after`` is ``"none"``; ``500``/``503`` answer an error; ``drop`` closes the
    connection without a reply; ``slow`` waits ``delay`` seconds (default 2) and then answers normally;
    ``cut_upload`` keeps the first half of an upload PUT's body, then closes the connection.

    ``for_s`` makes the fault persist: once it first fires, every matching request gets it for that many seconds,
    whatever ``count`` and whatever the Retry-After promised (a Retry-After that lies).
    """

    kind: str
    count: int = 1
    match: str | None = None
    retry_after: float | str | None = None
    delay: float | None = None
    for_s: float | None = None
    first_fired: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def retry_after_header(self) -> str | None:
        """The Retry-After header a 429 carries (delta-seconds are whole numbers), or None for none."""
        if self.retry_after == NO_RETRY_AFTER:
            return None
        return str(math.ceil(1.0 if self.retry_after is None else float(self.retry_after)))


def make_fault(kind: str, *, count: int = 1, match: str | None = None, retry_after: float | str | None = None,
               delay: float | None = None, for_s: float | None = None) -> Fault:
    """A validated :class:`Fault`; raises ConfigError naming the bad field."""
    kind = str(kind)
    if kind not in FAULT_KINDS:
        raise ConfigError(f"fault kind {kind!r} is unknown: use one of {', '.join(FAULT_KINDS)}")
    try:
        count = int(count)
        numbers = {name: None if value is None else float(value)
                   for name, value in (("retry_after", None if retry_after == NO_RETRY_AFTER else retry_after),
                                       ("delay", delay), ("for_s", for_s))}
    except (TypeError, ValueError):
        raise ConfigError(f"fault count, retry_after ('{NO_RETRY_AFTER}' or seconds), delay and for_s must be "
                          f"numbers, got count={count!r} retry_after={retry_after!r} delay={delay!r} "
                          f"for_s={for_s!r}") from None
    if count < 1:
        raise ConfigError(f"fault count {count!r} must be at least 1")
    for name, value in numbers.items():
        if value is not None and not 0 <= value < math.inf:
            raise ConfigError(f"fault {name} {value!r} must be zero or more seconds")
    after: float | str | None = NO_RETRY_AFTER if retry_after == NO_RETRY_AFTER else numbers["retry_after"]
    return Fault(kind, count, match or None, after, numbers["delay"], numbers["for_s"])


def parse_fault_spec(spec: str) -> Fault:
    """Parse ``KIND[,count=N][,match=TEXT][,retry_after=S|none][,delay=S][,for_s=S]`` (the ``--fault`` flag)."""
    kind, *options = [part.strip() for part in spec.split(",")]
    fields: dict[str, Any] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in FAULT_FIELDS[1:]:
            raise ConfigError(f"--fault {spec!r}: option {option!r} is not one of count=N, match=TEXT, "
                              f"retry_after=SECONDS|{NO_RETRY_AFTER}, delay=SECONDS, for_s=SECONDS")
        fields[name] = value
    return make_fault(kind, **fields)


class FaultQueue:
    """Armed faults, first armed first served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**f.to_dict()) for f in self._faults]

    def take(self, path: str, *, is_upload: bool) -> Fault | None:
        """Consume one use of the first fault that applies to a request for ``path``."""
        now = time.monotonic()
        with self._lock:
            for fault in list(self._faults):
                if fault.kind == "cut_upload" and not is_upload:
                    continue
                if fault.match and fault.match not in path:
                    continue
                if fault.for_s is not None:
                    if fault.first_fired is None:
                        fault.first_fired = now
                    elif now - fault.first_fired > fault.for_s:
                        self._faults.remove(fault)
                        continue
                else:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return Fault(**{**fault.to_dict(), "count": 1})
            return None
