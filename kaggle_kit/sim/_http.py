"""HTTP plumbing of the offline Kaggle server: request targets, auth gate, faults, uploads, ranged file replies.

The API's meaning lives in :mod:`kaggle_kit.sim.server`; this module only moves bytes for it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from kaggle_kit.errors import KaggleKitError
from kaggle_kit.sim._faults import FAULT_KINDS, make_fault

if TYPE_CHECKING:
    from kaggle_kit.sim.server import SimServer

_log = logging.getLogger("kaggle_kit.sim.server")


class ApiError(Exception):
    """An RPC failure answered as HTTP ``status`` with ``{"code", "message"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Redirect:
    """An RPC answered with a 302 to ``url`` (downloads)."""

    def __init__(self, url: str) -> None:
        self.url = url


def duration(seconds: float) -> str:
    """Seconds as protobuf JSON writes a Duration (``"151.5s"``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def to_int(value: Any, default: int = 0) -> int:
    """``int(value)``, or ``default`` for anything that is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _DualStackServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kaggle-kit-sim/1"
    # An upload cut off mid-body must not hang a worker thread forever.
    timeout = 60

    @property
    def sim(self) -> SimServer:
        return self.server.sim  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        _log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        _log.info("%s %s %s", self.command, getattr(self, "_route", self.path), code)

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

    # Plumbing

    def _iter_body(self) -> Any:
        """Yield the request body in chunks (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise ConnectionError("client closed mid-body")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)
        else:
            remaining = to_int(self.headers.get("Content-Length"), 0)
            while remaining > 0:
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise ConnectionError("client closed mid-body")
                remaining -= len(data)
                yield data

    def _read_body(self) -> bytes:
        return b"".join(self._iter_body())

    def _send(self, status: int, payload: bytes = b"", *, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)
        self._status = status

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

    def _dispatch(self) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path or "/"
        else:
            target = target.split("?", 1)[0]
        route = unquote(target)
        if route.startswith("/api/v1/"):
            route = route[len("/api"):]
        self._route = route
        self._status = 0
        try:
            self._handle(route)
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True
        finally:
            self.sim.request_log.append((self.command, route, self._status))

    def _handle(self, route: str) -> None:
        sim = self.sim
        is_upload = self.command == "PUT" and route.startswith("/_sim/upload/")
        fault = None if route.startswith("/_sim/faults") else sim._faults.take(route, is_upload=is_upload)
        if fault is not None and fault.kind != "cut_upload":
            if fault.kind == "slow":
                time.sleep(2.0 if fault.delay is None else fault.delay)
            else:
                self._read_body()
                if fault.kind == "drop":
                    self._drop()
                    return
                headers = {}
                if fault.kind == "429":
                    headers["Retry-After"] = duration(1.0 if fault.retry_after is None else fault.retry_after)[:-1]
                messages = {"429": "Too many requests (injected fault)", "500": "Internal error (injected fault)",
                            "503": "Service unavailable (injected fault)"}
                self._send_error(int(fault.kind), messages[fault.kind], headers)
                return
        if route.startswith("/v1/"):
            self._handle_rpc(route[len("/v1/"):])
        elif is_upload:
            self._handle_upload(route[len("/_sim/upload/"):], cut=fault is not None)
        elif route.startswith("/_sim/blobs/") and self.command in ("GET", "HEAD"):
            self._handle_blob(route[len("/_sim/blobs/"):])
        elif route.startswith("/_sim/outputs/") and self.command in ("GET", "HEAD"):
            self._handle_output(route[len("/_sim/outputs/"):])
        elif route == "/_sim/faults":
            self._handle_faults()
        elif route in ("/", "/_sim/health") and self.command in ("GET", "HEAD"):
            self._send_json(200, {"status": "ok", "service": "kaggle-kit offline Kaggle"})
        else:
            self._read_body()
            self._send_error(404, f"{self.command} {route} is not served by the offline Kaggle stand-in")

    def _handle_rpc(self, name: str) -> None:
        sim = self.sim
        raw = self._read_body()
        if self.command != "POST":
            self._send_error(405, f"{name} takes POST with a JSON body")
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._send_error(400, f"{name}: the request body is not a JSON object")
            return
        if name == "security.OAuthService/IntrospectToken":
            self._send_json(200, sim._introspect(body))
            return
        user = sim._check_auth(self.headers.get("Authorization"))
        if user is None:
            self._send_error(401, "Unauthenticated: send the offline server's username and key (Basic) or its token "
                                  "(Bearer)", {"WWW-Authenticate": 'Basic realm="kaggle-kit-sim"'})
            return
        try:
            reply = sim._call_rpc(name, body, user)
        except ApiError as exc:
            self._send_error(exc.status, exc.message)
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
        sim = self.sim
        raw = self._read_body()
        if sim._check_auth(self.headers.get("Authorization")) is None:
            self._send_error(401, "the fault control endpoint needs the server's credentials")
            return
        if self.command == "GET":
            self._send_json(200, {"faults": [f.to_dict() for f in sim.pending_faults]})
        elif self.command == "DELETE":
            sim.clear_faults()
            self._send_json(200, {"faults": []})
        elif self.command == "POST":
            try:
                spec = json.loads(raw or b"{}")
                specs = spec if isinstance(spec, list) else [spec]
                faults = [make_fault(**{k: s[k] for k in ("kind", "count", "match", "retry_after", "delay") if k in s})
                          for s in specs]
            except (ValueError, TypeError, KeyError, KaggleKitError) as exc:
                self._send_error(400, f"bad fault: {exc}; send {{\"kind\": one of {list(FAULT_KINDS)}, "
                                      "\"count\", \"match\", \"retry_after\", \"delay\"}")
                return
            for fault in faults:
                sim._faults.add(fault)
            self._send_json(200, {"faults": [f.to_dict() for f in sim.pending_faults]})
        else:
            self._send_error(405, "use GET, POST or DELETE on /_sim/faults")

    def _handle_upload(self, token: str, *, cut: bool) -> None:
        sim = self.sim
        record = sim._upload_record(token)
        if record is None:
            self._read_body()
            self._send_error(404, "upload session not found or expired: start the upload again")
            return
        part = sim._part_path(token)
        length = record["length"]
        have = part.stat().st_size if part.exists() else 0
        content_range = self.headers.get("Content-Range") or ""
        if record["blob"] is not None and not content_range.startswith("bytes */"):
            # A completed upload re-sent whole: keep the stored blob.
            self._read_body()
            self._send_json(200, {"token": token})
            return
        probe = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
        if probe:
            self._read_body()
            if record["blob"] is not None:
                self._send_json(200, {"token": token})
            else:
                self._send_incomplete(have)
            return
        start = 0
        ranged = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range.strip())
        if content_range and not ranged:
            self._read_body()
            self._send_error(400, f"malformed Content-Range {content_range!r}")
            return
        if ranged:
            start = int(ranged.group(1))
            if int(ranged.group(3)) != length or start > have:
                self._read_body()
                self._send_error(400, f"Content-Range {content_range!r} does not continue the {have} bytes received "
                                      f"of {length}")
                return
        cut_at = start + max(1, (length - start) // 2) if cut else None
        with open(part, "r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            written = start
            for chunk in self._iter_body():
                if cut_at is not None and written + len(chunk) >= cut_at:
                    out.write(chunk[: cut_at - written])
                    out.flush()
                    self._drop()
                    return
                out.write(chunk)
                written += len(chunk)
        if written == length:
            sim._finish_upload(token)
            self._send_json(200, {"token": token})
        elif written > length:
            part.unlink(missing_ok=True)
            self._send_error(400, f"received {written} bytes but the upload declared {length}: start it again")
        else:
            self._send_incomplete(written)

    def _send_incomplete(self, have: int) -> None:
        headers = {"Range": f"bytes=0-{have - 1}"} if have > 0 else {}
        self._send(308, b"", headers=headers)

    def _handle_blob(self, rest: str) -> None:
        self._read_body()
        sha = rest.split("/", 1)[0]
        path = self.sim.store.blob_path(sha) if re.fullmatch(r"[0-9a-f]{64}", sha) else None
        if path is None or not path.is_file():
            self._send_error(404, "blob not found")
            return
        self._serve_file(path, f'"{sha}"')

    def _handle_output(self, rest: str) -> None:
        self._read_body()
        parts = rest.split("/", 3)
        path = None
        if len(parts) == 4 and parts[2].isdigit():
            path = self.sim.kernel_output_file(parts[0], parts[1], int(parts[2]), parts[3])
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
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._status = 304
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
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._status = status
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


def make_http_server(sim: "SimServer", host: str, port: int) -> ThreadingHTTPServer:
    """A threaded HTTP server on ``host:port`` whose handler serves ``sim``."""
    server_class = _DualStackServer if ":" in host else _HTTPServer
    httpd = server_class((host, port), _Handler)
    httpd.sim = sim  # type: ignore[attr-defined]
    return httpd
