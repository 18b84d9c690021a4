"""The HTTP layer of the offline Kaggle server: request targets, faults, the RPC envelope, upload PUTs and ranged
file replies.

The API's meaning lives in the server and its areas; this module only moves bytes for them, through the public
methods that :class:`ApiBackend` names. Whatever a client sends, it gets an HTTP answer in Kaggle's error envelope
(``{"code", "message"}``): a malformed request line or header, a bad chunk size, a body too large (refused from its
header, before it is read), JSON too deep, or a failure inside the server. Only an injected ``drop`` fault, or a
client that stops sending mid-body, ends a connection without one.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import re
import socket
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from kaggle_kit.errors import KaggleKitError, MalformedFileError
from kaggle_kit.fileio import loads_json
from kaggle_kit.sim.faults import FAULT_FIELDS, FAULT_KINDS, NO_RETRY_AFTER, FaultQueue, make_fault
from kaggle_kit.sim.rpc import BLOB_PATH, FAULTS_PATH, OUTPUT_PATH, UPLOAD_PATH, ApiError, Redirect
from kaggle_kit.sim.uploads import Uploads

_log = logging.getLogger(__name__)

HEALTH_PATH = "/_sim/health"
# The most of a refused body read and thrown away after the error reply, so the client sees the reply rather than
# a reset connection; reading stops sooner when the client pauses this long.
_LINGER_BYTES = 1 << 30
_LINGER_S = 2.0
# The fault control endpoint takes a few small JSON objects.
_FAULT_BODY_BYTES = 1 << 20
_DISCARD_ANY_BYTES = 1 << 62


class ApiBackend(Protocol):
    """What the HTTP layer needs from the server it serves."""

    @property
    def request_log(self) -> deque[tuple[str, str, int]]:
        """(method, path, status) of recent requests, newest last; status 0 when the connection was dropped."""

    @property
    def faults(self) -> FaultQueue: ...

    @property
    def uploads(self) -> Uploads: ...

    @property
    def max_rpc_body_bytes(self) -> int: ...

    def authenticate(self, header: str | None) -> str | None:
        """The user an Authorization header proves, or None."""

    def call_rpc(self, name: str, body: dict[str, Any], user: str | None) -> dict[str, Any] | Redirect:
        """Answer RPC ``name`` for ``user`` (None: no valid credentials); ApiError for an error reply."""

    def check_download(self, path: str, query: Mapping[str, str], authorization: str | None) -> None:
        """Raise ApiError unless a GET of ``path`` is signed (``query``) or carries the server's credentials."""

    def kernel_output_file(self, owner: str, slug: str, number: int, rel: str) -> Path | None: ...


class _BadRequest(Exception):
    """The request cannot be read further: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], backend: ApiBackend) -> None:
        self.backend = backend
        super().__init__(address, _Handler)


class _DualStackServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kaggle-kit-sim/1"
    # An upload cut off mid-body must not hang a worker thread forever.
    timeout = 60

    @property
    def backend(self) -> ApiBackend:
        return cast(_HTTPServer, self.server).backend

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        _log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        route = getattr(self, "_route", None) or getattr(self, "path", "-")
        _log.info("%s %s %s", getattr(self, "command", None) or "-", route, code)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's answer to a malformed request line or header, in the API's envelope; then close."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # a line too broken to name its version still gets a status line
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        payload = json.dumps({"code": code, "message": f"malformed request: {text}"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(payload)
        if not hasattr(self, "_route"):
            self.backend.request_log.append((getattr(self, "command", None) or "-", "-", code))

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _content_length(self) -> int | None:
        """The declared body length; None for a chunked body."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdigit():
            raise _BadRequest(400, f"Content-Length {text!r} is not a whole number of bytes")
        return int(text)

    def _iter_body(self, limit: int) -> Iterator[bytes]:
        """Yield the request body in chunks (Content-Length or chunked); more than ``limit`` bytes is refused.

        A declared length over the limit is refused before any of the body is read.
        """
        length = self._content_length()
        if length is not None and length > limit:
            raise _BadRequest(413, f"the request body of {length} bytes is larger than the {limit} bytes accepted "
                                   "here")
        self._body_started = True
        if length is None:
            total = 0
            while True:
                line = self.rfile.readline(1026)
                size_text = line.split(b";")[0].strip()
                if not line.endswith(b"\n") or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                    raise _BadRequest(400, f"bad chunk size line {line[:40]!r} in a chunked body")
                size = int(size_text, 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    self._body_read = True
                    return
                total += size
                if total > limit:
                    raise _BadRequest(413, f"the chunked request body is larger than the {limit} bytes accepted here")
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise ConnectionError("client closed mid-body")
                    remaining -= len(data)
                    yield data
                if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise _BadRequest(400, "a chunk of the chunked body does not end where its size says")
        else:
            remaining = length
            while remaining > 0:
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(data)
                yield data
        self._body_read = True

    def _read_body(self, limit: int) -> bytes:
        return b"".join(self._iter_body(limit))

    def _discard_body(self) -> None:
        """Read a body nobody needs and throw it away as it arrives (nothing is kept, so no limit applies)."""
        for _ in self._iter_body(_DISCARD_ANY_BYTES):
            pass

    def _send(self, status: int, payload: bytes = b"", *, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self._status = status
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not self._body_read:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"code": status, "message": message}, headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._status = 0

    def _linger(self) -> None:
        """After an early error reply, read and throw away what the client still sends, so it reads the reply."""
        try:
            self.connection.settimeout(_LINGER_S)
            taken = 0
            while taken < _LINGER_BYTES:
                data = self.connection.recv(1 << 20)
                if not data:
                    break
                taken += len(data)
        except OSError:
            pass

    def _dispatch(self) -> None:
        target = self.path
        query = ""
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target, query = parts.path or "/", parts.query
        else:
            target, _, query = target.partition("?")
        route = unquote(target)
        if route.startswith("/api/v1/"):
            route = route[len("/api"):]
        self._route = route
        self._query = dict(parse_qsl(query))
        self._status = 0
        self._body_started = False
        self._body_read = False
        try:
            self._handle(route)
        except _BadRequest as exc:
            self._send_error(exc.status, exc.message)
            if not self._body_read:
                self._linger()
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # answer like Kaggle's 500 instead of dropping the connection
            _log.exception("%s %s failed inside the offline server", self.command, route)
            if self._status:
                self.close_connection = True  # the reply had begun: all that is left is to end it
            else:
                self._send_error(500, f"{self.command} {route} failed inside the offline server: "
                                      f"{type(exc).__name__}: {exc}")
        finally:
            self.backend.request_log.append((self.command, route, self._status))

    def _handle(self, route: str) -> None:
        backend = self.backend
        is_upload = self.command == "PUT" and route.startswith(UPLOAD_PATH)
        fault = None if route.startswith(FAULTS_PATH) else backend.faults.take(route, is_upload=is_upload)
        if fault is not None and fault.kind != "cut_upload":
            if fault.kind == "slow":
                time.sleep(2.0 if fault.delay is None else fault.delay)
            else:
                self._discard_body()
                if fault.kind == "drop":
                    self._drop()
                    return
                headers = {}
                retry_after = fault.retry_after_header
                if fault.kind == "429" and retry_after is not None:
                    headers["Retry-After"] = retry_after
                messages = {"429": "Too many requests", "500": "Internal error", "503": "Service unavailable"}
                self._send_error(int(fault.kind), messages[fault.kind], headers)
                return
        if route.startswith("/v1/"):
            self._handle_rpc(route[len("/v1/"):])
        elif is_upload:
            self._handle_upload(route[len(UPLOAD_PATH):], cut=fault is not None)
        elif route.startswith(BLOB_PATH) and self.command in ("GET", "HEAD"):
            self._handle_blob(route)
        elif route.startswith(OUTPUT_PATH) and self.command in ("GET", "HEAD"):
            self._handle_output(route)
        elif route == FAULTS_PATH:
            self._handle_faults()
        elif route == HEALTH_PATH and self.command in ("GET", "HEAD"):
            self._discard_body()
            self._send_json(200, {"status": "ok"})
        else:
            self._discard_body()
            if backend.authenticate(self.headers.get("Authorization")) is None:
                self._send_error(401, "Unauthenticated: send the offline server's credentials")
            else:
                self._send_error(404, f"{self.command} {route} is not served by the offline Kaggle stand-in")

    def _handle_rpc(self, name: str) -> None:
        backend = self.backend
        raw = self._read_body(backend.max_rpc_body_bytes)
        if self.command != "POST":
            self._send_error(405, f"{name} takes POST with a JSON body")
            return
        try:
            body = loads_json(raw or b"{}", where=f"the {name} request body", max_bytes=backend.max_rpc_body_bytes)
        except MalformedFileError as exc:
            self._send_error(400, str(exc))
            return
        if not isinstance(body, dict):
            self._send_error(400, f"{name}: the request body is not a JSON object")
            return
        try:
            reply = backend.call_rpc(name, body, backend.authenticate(self.headers.get("Authorization")))
        except ApiError as exc:
            self._send_error(exc.status, exc.message, exc.headers)
            return
        except Exception as exc:  # answer like Kaggle's 500 instead of dropping the connection
            _log.exception("RPC %s failed", name)
            self._send_error(500, f"{name} failed inside the offline server: {type(exc).__name__}: {exc}")
            return
        if isinstance(reply, Redirect):
            self._send(302, b"", headers={"Location": reply.url})
        else:
            self._send_json(200, {k: v for k, v in reply.items() if v is not None})

    def _handle_faults(self) -> None:
        backend = self.backend
        raw = self._read_body(_FAULT_BODY_BYTES)
        if backend.authenticate(self.headers.get("Authorization")) is None:
            self._send_error(401, "the fault control endpoint needs the server's credentials")
            return
        if self.command == "GET":
            self._send_json(200, {"faults": [f.to_dict() for f in backend.faults.pending()]})
        elif self.command == "DELETE":
            backend.faults.clear()
            self._send_json(200, {"faults": []})
        elif self.command == "POST":
            try:
                spec = loads_json(raw or b"{}", where="the fault request body")
                specs = spec if isinstance(spec, list) else [spec]
                faults = [make_fault(**{k: s[k] for k in FAULT_FIELDS if k in s}) for s in specs]
            except (ValueError, TypeError, KeyError, KaggleKitError) as exc:
                self._send_error(400, f"bad fault: {exc}; send {{\"kind\": one of {list(FAULT_KINDS)}, "
                                      f"\"count\", \"match\", \"retry_after\" (seconds or \"{NO_RETRY_AFTER}\"), "
                                      "\"delay\", \"for_s\"}")
                return
            for fault in faults:
                backend.faults.add(fault)
            self._send_json(200, {"faults": [f.to_dict() for f in backend.faults.pending()]})
        else:
            self._send_error(405, f"use GET, POST or DELETE on {FAULTS_PATH}")

    def _handle_upload(self, token: str, *, cut: bool) -> None:
        uploads = self.backend.uploads
        # The most this PUT may carry is what the upload still lacks: a longer body is refused from its header.
        limit = uploads.max_put_bytes(token)
        reply = uploads.receive(token, self.headers.get("Content-Range") or "", self._iter_body(limit), cut=cut)
        if reply.status == 0:
            self._drop()
        elif reply.status == 200:
            self._send_json(200, {"token": token})
        elif reply.status == 308:
            headers = {"Range": f"bytes=0-{reply.received - 1}"} if reply.received > 0 else {}
            self._send(308, b"", headers=headers)
        else:
            self._send_error(reply.status, reply.message)

    def _check_download(self, route: str) -> bool:
        self._discard_body()
        try:
            self.backend.check_download(route, self._query, self.headers.get("Authorization"))
        except ApiError as exc:
            self._send_error(exc.status, exc.message, exc.headers)
            return False
        return True

    def _handle_blob(self, route: str) -> None:
        if not self._check_download(route):
            return
        sha = route[len(BLOB_PATH):].split("/", 1)[0]
        path = self.backend.uploads.blob_file(sha)
        if path is None:
            self._send_error(404, "blob not found")
            return
        self._serve_file(path, f'"{sha}"')

    def _handle_output(self, route: str) -> None:
        if not self._check_download(route):
            return
        parts = route[len(OUTPUT_PATH):].split("/", 3)
        path = None
        if len(parts) == 4 and parts[2].isdigit():
            path = self.backend.kernel_output_file(parts[0], parts[1], int(parts[2]), parts[3])
        if path is None:
            self._send_error(404, "output file not found")
            return
        stat = path.stat()
        tag = hashlib.sha1(f"{parts[3]}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        self._serve_file(path, f'"{tag}"')

    def _serve_file(self, path: Path, etag: str) -> None:
        size = path.stat().st_size
        last_modified = email.utils.formatdate(int(path.stat().st_mtime), usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes"}
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self._status = 304
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (not if_range or if_range in (etag, last_modified)):
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if match and (match.group(1) or match.group(2)):
                if match.group(1):
                    start = int(match.group(1))
                    end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                else:
                    start, end = max(0, size - int(match.group(2))), size - 1
                if start >= size or start > end:
                    self._send_error(416, f"range {wanted} is outside the {size}-byte file",
                                     {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        self._status = status
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = fh.read(min(remaining, 1 << 20))
                if not data:
                    break
                self.wfile.write(data)
                remaining -= len(data)


def make_http_server(backend: ApiBackend, host: str, port: int) -> ThreadingHTTPServer:
    """A threaded HTTP server on ``host:port`` whose handler serves ``backend``."""
    server_class = _DualStackServer if ":" in host else _HTTPServer
    return server_class((host, port), backend)
