"""What every API area of the offline Kaggle shares: the RPC declaration, errors and redirects, paging, version
labels, times and durations as Kaggle's JSON writes them, and the server's own URL paths.

An area is a class whose public methods marked with :func:`rpc` answer ``<package.Service>/<Method>`` calls; the
server builds its table from the areas with :func:`rpc_table`, so adding an RPC touches only the area that serves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote

WEB_BASE = "https://www.kaggle.com"
# Paths the server answers besides the RPCs; the areas build URLs with them, the HTTP layer routes on them.
UPLOAD_PATH = "/_sim/upload/"
BLOB_PATH = "/_sim/blobs/"
OUTPUT_PATH = "/_sim/outputs/"
FAULTS_PATH = "/_sim/faults"

_RPC_NAME = re.compile(r"[a-z]+\.[A-Za-z]+/[A-Za-z]+")


class ApiError(Exception):
    """An RPC failure answered as HTTP ``status`` with ``{"code", "message"}`` (and ``headers``, if any)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def permission_denied(permission: str = "kernels.get") -> ApiError:
    """Kaggle's answer to a resource that does not exist or is not the caller's: 403, the permission named."""
    return ApiError(403, f"Permission '{permission}' was denied")


class UrlSigner:
    """Signs the server's download paths with an expiring HMAC, as Kaggle hands out signed storage URLs.

    A bare GET (the client sends no credentials to the URLs it was handed) is served only with a valid, unexpired
    signature; the key lives in memory, so a restarted server hands out new URLs.
    """

    def __init__(self, *, ttl_s: Callable[[], float]) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl_s = ttl_s

    def _mac(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base: str, path: str, *, now: float | None = None) -> str:
        """``base`` + the URL-quoted ``path`` (unquoted form) + its ``expires`` and ``signature`` parameters."""
        expires = int((time.time() if now is None else now) + self._ttl_s())
        return f"{base}{quote(path)}?expires={expires}&signature={self._mac(path, expires)}"

    def verify(self, path: str, query: Mapping[str, str]) -> str | None:
        """None when ``query`` signs ``path`` and has not expired, else why not."""
        signature, expires = query.get("signature"), query.get("expires")
        if not signature or not expires:
            return "the URL carries no signature"
        if not expires.isdigit() or not hmac.compare_digest(signature, self._mac(path, int(expires))):
            return "the URL's signature does not match it"
        if int(expires) < time.time():
            return "the signed URL has expired"
        return None


class Redirect:
    """An RPC answered with a 302 to ``url`` (downloads)."""

    def __init__(self, url: str) -> None:
        self.url = url


Body = dict[str, Any]
Reply = dict[str, Any] | Redirect
Handler = Callable[[Body, str], Reply]
_Method = TypeVar("_Method", bound=Callable[..., Reply])


@dataclass(frozen=True)
class RpcSpec:
    """How an area method is served: its wire name, and whether it answers without credentials."""

    name: str
    anonymous: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One row of the server's RPC table: the bound handler and how it is served."""

    spec: RpcSpec
    handler: Handler


def rpc(name: str, *, anonymous: bool = False) -> Callable[[_Method], _Method]:
    """Mark an area method ``(body, user) -> reply`` as the handler of ``name`` (``<package.Service>/<Method>``).

    ``anonymous`` RPCs are answered without credentials, with ``user`` set to ``""``.
    """
    if not _RPC_NAME.fullmatch(name):
        raise ValueError(f"RPC name {name!r} is not <package.Service>/<Method>, e.g. "
                         "datasets.DatasetApiService/GetDataset")
    spec = RpcSpec(name, anonymous)

    def mark(method: _Method) -> _Method:
        setattr(method, "rpc_spec", spec)
        return method

    return mark


def rpc_table(*areas: object) -> dict[str, Endpoint]:
    """Every RPC the ``areas`` declare, by wire name; an RPC declared twice is an error naming both areas."""
    table: dict[str, Endpoint] = {}
    owners: dict[str, str] = {}
    for area in areas:
        for attr in sorted(dir(type(area))):
            spec = getattr(getattr(type(area), attr), "rpc_spec", None)
            if not isinstance(spec, RpcSpec):
                continue
            where = f"{type(area).__name__}.{attr}"
            if spec.name in table:
                raise ValueError(f"RPC {spec.name} is declared by both {owners[spec.name]} and {where}")
            table[spec.name] = Endpoint(spec, getattr(area, attr))
            owners[spec.name] = where
    return table


def to_int(value: Any, default: int = 0) -> int:
    """``int(value)``, or ``default`` for anything that is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def duration(seconds: float) -> str:
    """Seconds as protobuf JSON writes a Duration (``"151.5s"``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def iso_time(ts: float | None) -> str | None:
    """Epoch seconds as Kaggle's JSON writes a timestamp (``2024-05-01T12:00:00.000Z``); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts % 1 * 1000):03d}Z"


def page(items: list[Any], body: Body) -> tuple[list[Any], str]:
    """The slice of ``items`` a list call asks for (``pageToken`` or 1-based ``page``, ``pageSize`` default 20) and
    the next page's token (``""`` on the last page)."""
    size = to_int(body.get("pageSize"), 20) or 20
    if body.get("pageToken"):
        start = to_int(body.get("pageToken"), 0)
    else:
        start = (max(to_int(body.get("page"), 1), 1) - 1) * size
    chunk = items[start:start + size]
    return chunk, (str(start + size) if start + size < len(items) else "")


def version_number(label: Any) -> int | None:
    """The number in a version label such as ``v3`` (or ``3``); None when the label is empty."""
    if not label:
        return None
    text = str(label).lstrip("vV")
    if not text.isdigit():
        raise ApiError(400, f"version label {label!r} is not a version number such as v3")
    return int(text)
