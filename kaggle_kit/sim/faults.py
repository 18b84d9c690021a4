"""Faults the stand-in server injects into its next matching requests."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from kaggle_kit.errors import ConfigError

FAULT_KINDS = ("429", "500", "503", "drop", "slow", "cut_upload")


@dataclass
class Fault:
    """One armed fault: ``count`` more requests whose path contains ``match`` get ``kind``.

    ``429`` answers with ``Retry-After: retry_after`` (seconds, default 1); ``500``/``503`` answer an error;
    ``drop`` closes the connection without a reply; ``slow`` waits ``delay`` seconds (default 2) and then answers
    normally; ``cut_upload`` keeps the first half of an upload PUT's body, then closes the connection.
    """

    kind: str
    count: int = 1
    match: str | None = None
    retry_after: float | None = None
    delay: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_fault(kind: str, *, count: int = 1, match: str | None = None, retry_after: float | None = None,
               delay: float | None = None) -> Fault:
    """A validated :class:`Fault`; raises ConfigError naming the bad field."""
    kind = str(kind)
    if kind not in FAULT_KINDS:
        raise ConfigError(f"fault kind {kind!r} is unknown: use one of {', '.join(FAULT_KINDS)}")
    if int(count) < 1:
        raise ConfigError(f"fault count {count!r} must be at least 1")
    for name, value in (("retry_after", retry_after), ("delay", delay)):
        if value is not None and float(value) < 0:
            raise ConfigError(f"fault {name} {value!r} must be zero or more seconds")
    return Fault(kind, int(count), match or None,
                 None if retry_after is None else float(retry_after), None if delay is None else float(delay))


def parse_fault_spec(spec: str) -> Fault:
    """Parse ``KIND[,count=N][,match=TEXT][,retry_after=S][,delay=S]`` (the ``--fault`` flag)."""
    kind, *options = [part.strip() for part in spec.split(",")]
    fields: dict[str, Any] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in ("count", "match", "retry_after", "delay"):
            raise ConfigError(f"--fault {spec!r}: option {option!r} is not one of count=N, match=TEXT, "
                              "retry_after=SECONDS, delay=SECONDS")
        try:
            fields[name] = value if name == "match" else (int(value) if name == "count" else float(value))
        except ValueError:
            raise ConfigError(f"--fault {spec!r}: {name} needs a number, got {value!r}") from None
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
        with self._lock:
            for fault in self._faults:
                if fault.kind == "cut_upload" and not is_upload:
                    continue
                if fault.match and fault.match not in path:
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return Fault(**{**fault.to_dict(), "count": 1})
            return None
