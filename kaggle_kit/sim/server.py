"""A loopback stand-in for Kaggle's API that the real ``kaggle`` client (kaggle 2.2.x, kagglesdk 0.1.x) talks to.

It serves RPCs as POST JSON under ``/v1/...`` and ``/api/v1/...`` (also as absolute-form targets, so ``HTTP_PROXY``
reaches it), resumable upload PUTs and redirected blob downloads, keeps its state on disk, runs pushed notebooks in
the session sandbox when given one, and injects faults on request.

The RPCs (``<package.Service>/<Method>``) are declared by the API areas, each in its own module: ``uploads``
(``blobs.BlobApiService``), ``datasets`` (``datasets.DatasetApiService``), ``kernels`` and ``quota``
(``kernels.KernelsApiService``), ``competitions`` (``competitions.CompetitionApiService``), and this module
(``security.OAuthService/IntrospectToken``). Anything else answers 404 with a message naming the method.

Downloads (blobs, kernel outputs) are served to a bare GET only through the signed, expiring URLs the RPCs hand out
(or with the server's credentials); Kaggle's limits and the stand-in's strictness are :class:`SimSettings`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import contextlib
import dataclasses
import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kaggle_kit import envvars
from kaggle_kit.env import LAYOUTS
from kaggle_kit.errors import ConfigError, KaggleKitError
from kaggle_kit.kaggle_platform import WEEKLY_GPU_QUOTA_S
from kaggle_kit.sim.competitions import Competitions
from kaggle_kit.sim.datasets import Datasets
from kaggle_kit.sim.faults import FAULT_KINDS, Fault, FaultQueue, make_fault
from kaggle_kit.sim.http import make_http_server
from kaggle_kit.sim.kernels import Kernels
from kaggle_kit.sim.quota import Quota
from kaggle_kit.sim.rpc import ApiError, Body, Reply, UrlSigner, rpc, rpc_table
from kaggle_kit.sim.sessions import SessionRunner
from kaggle_kit.sim.settings import SimSettings
from kaggle_kit.sim.state import StateStore
from kaggle_kit.sim.uploads import UPLOAD_TTL_S, Uploads

__all__ = ["SimServer", "SimSettings", "FAULT_KINDS", "UPLOAD_TTL_S"]


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential a client sent with the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())


class SimServer:
    """The offline Kaggle API, served on loopback from a state folder.

    Args:
        state_dir: folder holding datasets, uploads, kernels and the quota ledger; a restart on it keeps them.
        username: the only user; Basic auth must carry it and ``key``.
        key: the API key that Basic auth must carry.
        token: an access token accepted as ``Bearer`` (and by IntrospectToken); None accepts none.
        processing_seconds: how long a new dataset version stays in processing before READY.
        port: TCP port on ``host``; 0 picks a free one.
        sandbox: a ``kaggle_kit.sim.sandbox.Sandbox`` that runs pushed kernels; without one a push stays QUEUED.
        host: loopback address to bind.
        competitions_dir: folder of ``<competition-slug>/`` folders attached as competition sources.
        models_dir: folder of ``<owner>/<model>/<framework>/<variation>/<N>/`` attached as model sources.
        gpu_quota_s: the weekly GPU allowance reported by GetAcceleratorQuotaStatistics.
        upload_ttl_s: age after which an unfinished upload answers 404 (expired).
        clock_scale: passed to every sandbox session (simulated seconds per real second).
        input_layout: where sessions find their inputs: "current" (``/kaggle/input/datasets/<owner>/<slug>``, ...)
            or "legacy" (``/kaggle/input/<slug>``); Kaggle uses one or the other.
        settings: Kaggle's limits and the stand-in's strictness (:class:`SimSettings`; Kaggle's values by default).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, username: str, key: str, token: str | None = None,
                 processing_seconds: float = 0.0, port: int = 0, sandbox: Any = None, host: str = "127.0.0.1",
                 competitions_dir: str | os.PathLike[str] | None = None,
                 models_dir: str | os.PathLike[str] | None = None, gpu_quota_s: float = WEEKLY_GPU_QUOTA_S,
                 upload_ttl_s: float = UPLOAD_TTL_S, clock_scale: float = 1.0,
                 settings: SimSettings | None = None, input_layout: str = "current") -> None:
        if not username or "/" in username or ":" in username:
            raise ConfigError(f"SimServer username {username!r} must be a non-empty name without '/' or ':'")
        if not key:
            raise ConfigError("SimServer key must not be empty: pass the API key clients will send")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"SimServer host {host!r} is not a loopback address: the stand-in serves 127.0.0.1 only")
        if input_layout not in LAYOUTS:
            raise ConfigError(f"SimServer input_layout {input_layout!r} is not one of {', '.join(LAYOUTS)}")
        if processing_seconds < 0 or gpu_quota_s < 0 or upload_ttl_s <= 0:
            raise ConfigError("SimServer processing_seconds and gpu_quota_s must be >= 0 and upload_ttl_s > 0")
        self.settings = dataclasses.replace(settings) if settings is not None else SimSettings()
        self.settings.check()
        self.username = username
        self._key = key
        self._token = token
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.store = StateStore(Path(state_dir))
        self.faults = FaultQueue()
        # (method, path, status) of recent requests, newest last; status 0 when the connection was dropped.
        self.request_log: deque[tuple[str, str, int]] = deque(maxlen=10000)

        def base_url() -> str:
            return self.url

        self.signer = UrlSigner(ttl_s=lambda: self.settings.signed_url_ttl_s)
        self.uploads = Uploads(self.store, base_url=base_url, signer=self.signer, ttl_s=upload_ttl_s)
        self.datasets = Datasets(self.store, self.uploads, settings=self.settings,
                                 processing_seconds=processing_seconds)
        self.quota = Quota(self.store, gpu_quota_s=gpu_quota_s)
        self.sessions = SessionRunner(
            self.store, self.datasets, self.quota, sandbox=sandbox, base_url=base_url,
            secrets={envvars.USERNAME: username, envvars.KEY: key}, settings=self.settings,
            competitions_dir=Path(competitions_dir) if competitions_dir else None,
            models_dir=Path(models_dir) if models_dir else None, clock_scale=clock_scale,
            input_layout=input_layout)
        self.kernels = Kernels(self.store, self.datasets, self.sessions, base_url=base_url, signer=self.signer)
        self.competitions = Competitions(self.store, self.uploads, competitions_dir=lambda: self.competitions_dir,
                                         kernel_output=self.kernels.latest_output_file,
                                         kernel_status=self.kernels.version_status)
        self._rpcs = rpc_table(self, self.uploads, self.datasets, self.kernels, self.quota, self.competitions)

    # Settings, each kept by the area it governs.

    @property
    def processing_seconds(self) -> float:
        return self.datasets.processing_seconds

    @property
    def upload_ttl_s(self) -> float:
        return self.uploads.ttl_s

    @property
    def gpu_quota_s(self) -> float:
        return self.quota.gpu_quota_s

    @property
    def sandbox(self) -> Any:
        return self.sessions.sandbox

    @property
    def competitions_dir(self) -> Path | None:
        return self.sessions.competitions_dir

    @property
    def models_dir(self) -> Path | None:
        return self.sessions.models_dir

    @property
    def clock_scale(self) -> float:
        return self.sessions.clock_scale

    @property
    def max_rpc_body_bytes(self) -> int:
        return self.settings.max_rpc_body_bytes

    @contextlib.contextmanager
    def configured(self, **changes: Any) -> Iterator[SimSettings]:
        """Change settings (see :class:`SimSettings`) for the duration of a ``with`` block, then restore them.

        Raises:
            ConfigError: an unknown setting or a value out of range (nothing is changed).
        """
        checked = self.settings.replaced(**changes)
        before = {name: getattr(self.settings, name) for name in changes}
        for name in changes:
            setattr(self.settings, name, getattr(checked, name))
        try:
            yield self.settings
        finally:
            for name, value in before.items():
                setattr(self.settings, name, value)

    @property
    def rpc_names(self) -> list[str]:
        """Every RPC served, sorted."""
        return sorted(self._rpcs)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self._httpd is None:
            raise KaggleKitError("SimServer.url is known only after start(): use it as a context manager")
        host = self._httpd.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self) -> "SimServer":
        """Bind and serve in background threads; queued kernel sessions resume."""
        if self._httpd is not None:
            return self
        try:
            self._httpd = make_http_server(self, self._host, self._port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self._host}:{self._port} ({exc.strerror or exc}): pick another port, "
                              "or 0 for a free one") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kaggle-sim-http", daemon=True)
        self._thread.start()
        self.sessions.recover()
        return self

    def stop(self) -> None:
        """Stop serving; a session still running in the sandbox is left to finish in its daemon thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sessions.stop()
        self._httpd = None

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a real ``kaggle`` CLI subprocess talking to this server (``base`` defaults to os.environ).

        The CLI honours only ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (``http://localhost/api/v1``); ``HTTP_PROXY``
        sends those requests here, and no ``NO_PROXY`` may exempt localhost.
        """
        env = dict(os.environ if base is None else base)
        for name in ("NO_PROXY", "no_proxy", "http_proxy", envvars.API_TOKEN):
            env.pop(name, None)
        env.update({envvars.API_ENVIRONMENT: "LOCALHOST", "HTTP_PROXY": self.url, envvars.USERNAME: self.username,
                    envvars.KEY: self._key, envvars.KIT_API_ENDPOINT: self.url})
        return env

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject_fault(self, kind: str, *, count: int = 1, match: str | None = None,
                     retry_after: float | str | None = None, delay: float | None = None,
                     for_s: float | None = None) -> None:
        """Make the next ``count`` requests whose path contains ``match`` fail as ``kind`` (see FAULT_KINDS and
        :class:`~kaggle_kit.sim.faults.Fault`: ``retry_after="none"`` sends no Retry-After, ``for_s`` persists)."""
        self.faults.add(make_fault(kind, count=count, match=match, retry_after=retry_after, delay=delay,
                                   for_s=for_s))

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self.faults.pending()

    @property
    def quota_used_s(self) -> float:
        """GPU seconds the sandbox's sessions used in the current quota week (the running ones' so far included)."""
        return self.quota.used_s

    @property
    def tpu_quota_used_s(self) -> float:
        """TPU seconds the sandbox's sessions used in the current quota week (the running ones' so far included)."""
        return self.quota.tpu_used_s

    def record_gpu_use(self, gpu_s: float, *, kernel: str = "") -> None:
        """Add a session's GPU seconds to the quota ledger."""
        self.quota.record_gpu_use(gpu_s, kernel=kernel)

    def wait_for_sessions(self, timeout: float = 60.0) -> bool:
        """Block until no kernel session is queued or running; False on timeout."""
        return self.sessions.wait_idle(timeout)

    def dataset_version_dir(self, owner: str, slug: str, number: int | None = None) -> Path:
        """The files of a dataset version laid out in a folder (for mounting into sessions)."""
        return self.datasets.version_dir(owner, slug, number)

    def kernel_output_file(self, owner: str, slug: str, number: int, rel: str) -> Path | None:
        """The saved output file of a kernel version, or None when absent or outside its output folder."""
        return self.kernels.output_file(owner, slug, number, rel)

    def authenticate(self, header: str | None) -> str | None:
        """The user an ``Authorization`` header (Basic user:key, or Bearer token) proves, or None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if _same(user, self.username) and _same(key, self._key):
                return user
        elif scheme.lower() == "bearer" and self._token:
            if _same(value.strip(), self._token):
                return self.username
        return None

    def check_download(self, path: str, query: Mapping[str, str], authorization: str | None) -> None:
        """Allow a GET of a download ``path`` only with a valid signature in ``query`` or the server's credentials.

        Raises:
            ApiError: 401 for a request with neither, 403 for a signature that is wrong or expired.
        """
        problem = self.signer.verify(path, query)
        if problem is None or self.authenticate(authorization) is not None:
            return
        if "signature" in query:
            raise ApiError(403, f"{problem}: ask the API for the file again to get a fresh URL")
        raise ApiError(401, "Unauthenticated: downloads need the signed URL the API hands out, or the server's "
                            "credentials", headers={"WWW-Authenticate": 'Basic realm="kaggle-kit-sim"'})

    def call_rpc(self, name: str, body: dict[str, Any], user: str | None) -> Reply:
        """Answer RPC ``name`` for ``user`` (None: no valid credentials); raises ApiError for an error reply."""
        endpoint = self._rpcs.get(name)
        if user is None and (endpoint is None or not endpoint.spec.anonymous):
            raise ApiError(401, "Unauthenticated: send the offline server's username and key (Basic) or its token "
                                "(Bearer)", headers={"WWW-Authenticate": 'Basic realm="kaggle-kit-sim"'})
        if endpoint is None:
            raise ApiError(404, f"{name} is not served by the offline Kaggle stand-in (kaggle_kit.sim.server)")
        return endpoint.handler(body, user or "")

    @rpc("security.OAuthService/IntrospectToken", anonymous=True)
    def introspect_token(self, body: Body, user: str) -> dict[str, Any]:
        token = str(body.get("token") or "")
        if self._token and _same(token, self._token):
            return {"active": True, "username": self.username, "clientId": "kaggle-kit-sim", "userId": 1}
        return {"active": False}
