"""Files written whole or not at all, and JSON read with limits: the one home of both.

A reader never sees a half-written file: every write goes to a temporary file in the same folder, is flushed and
fsynced, then renamed over the target, and the folder is fsynced so the rename survives a crash. This module is the
only place in the kit that renames files.

JSON that comes from disk, a dataset or the network is parsed with :func:`loads_json`, which refuses oversize input
and nesting deeper than a limit before the parser recurses (a 100,000-deep document would otherwise crash it with a
``RecursionError``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from kaggle_kit.errors import MalformedFileError

__all__ = [
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "move_into_place",
    "fsync_dir",
    "loads_json",
    "read_json",
    "read_limited",
    "MAX_JSON_DEPTH",
    "MAX_JSON_BYTES",
]

MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 64 << 20


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    Args:
        path: the file to write.
        mode: ``"wb"`` or ``"w"`` (text; pass ``encoding=``, ``newline=`` as for :func:`open`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer mode must be 'wb' or 'w', not {mode!r}")
    target = Path(path)
    tmp = _temporary_name(target)
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_writer(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2,
                      default: Callable[[Any], Any] | None = None, sort_keys: bool = False,
                      allow_nan: bool = False) -> None:
    """Write ``data`` as UTF-8 JSON; NaN and infinities only with ``allow_nan`` (metrics of a diverged run)."""
    try:
        text = json.dumps(data, indent=indent, default=default, sort_keys=sort_keys, allow_nan=allow_nan)
    except ValueError as exc:
        raise ValueError(f"cannot write {path} as JSON: {exc}") from exc
    atomic_write_text(path, text)


def move_into_place(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished file or folder over ``target`` (same file system), durably."""
    os.replace(source, target)
    fsync_dir(Path(target).parent)


_JSON_STRUCTURE = re.compile(rb'["\\\[\]{}]')


def _nesting_depth(text: str | bytes, limit: int) -> int | None:
    """The byte offset where nesting first exceeds ``limit`` outside strings, or None when it never does."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    depth = 0
    in_string = False
    skip_until = -1
    for match in _JSON_STRUCTURE.finditer(data):
        index = match.start()
        if index < skip_until:
            continue  # the character a backslash escaped
        char = data[index]
        if in_string:
            if char == 0x5C:  # backslash: the next character is escaped
                skip_until = index + 2
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return index
        elif char in (0x5D, 0x7D):
            depth -= 1
    return None


def loads_json(data: str | bytes, *, where: str, max_depth: int = MAX_JSON_DEPTH,
               max_bytes: int = MAX_JSON_BYTES, allow_nan: bool = False) -> Any:
    """Parse JSON from outside the process, refusing what would crash or exhaust the parser.

    Raises:
        MalformedFileError: naming ``where`` and what was wrong (size, depth, encoding, syntax, NaN).
    """
    size = len(data)
    if size > max_bytes:
        raise MalformedFileError(f"{where} is {size} bytes, more than the {max_bytes} a JSON file here may have")
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFileError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    elif data.startswith("\ufeff"):
        data = data[1:]
    deep = _nesting_depth(data, max_depth)
    if deep is not None:
        raise MalformedFileError(f"{where} nests deeper than {max_depth} levels (at byte {deep}); it is not a file "
                             "this kit wrote")

    def _no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(data) if allow_nan else json.loads(data, parse_constant=_no_constant)
    except ValueError as exc:
        raise MalformedFileError(f"{where} is not valid JSON: {exc}") from None


def read_json(path: str | os.PathLike[str], *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES,
              allow_nan: bool = False) -> Any:
    """Read and parse a JSON file with :func:`loads_json`'s limits; a missing or unreadable file is an error too."""
    data = read_limited(path, max_bytes=max_bytes, what="JSON file here")
    return loads_json(data, where=str(path), max_depth=max_depth, max_bytes=max_bytes, allow_nan=allow_nan)


def read_limited(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file") -> bytes:
    """A file's bytes, refused from its size before it is read when larger than ``max_bytes``.

    Raises:
        MalformedFileError: too large, missing or unreadable (the message names the file and ``what`` it is).
    """
    target = Path(path)
    try:
        size = target.stat().st_size
        if size > max_bytes:
            raise MalformedFileError(f"{target} is {size} bytes, more than the {max_bytes} a {what} may have")
        return target.read_bytes()
    except OSError as exc:
        raise MalformedFileError(f"cannot read the {what} {target}: {exc.strerror or exc}") from None
