"""The one place where the kit finds Kaggle credentials and builds an authenticated Kaggle API client.

Credentials are read, never written: the client is handed them in memory, so no kaggle.json appears in the working
folder, a notebook, a log or a checkpoint. ``import kaggle`` authenticates at import time and exits when it finds
nothing, so the kit imports ``kaggle.api.kaggle_api_extended`` lazily, inside functions.

``KAGGLE_KIT_API_ENDPOINT`` points every in-process client at another server (the offline stand-in) through the one
seam the client has: kagglesdk's endpoint table, read whenever a client is constructed.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlparse

from kaggle_kit import envvars
from kaggle_kit.errors import CredentialError, KaggleApiError, MalformedFileError
from kaggle_kit.fileio import read_json

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

ENDPOINT_ENV = envvars.KIT_API_ENDPOINT
DEFAULT_SECRET_LABELS = (envvars.USERNAME, envvars.KEY)
TOKEN_SECRET_LABEL = envvars.API_TOKEN

_default_endpoints: dict | None = None


@dataclass(frozen=True)
class Credentials:
    """Kaggle credentials: a legacy username and key, or an access token. ``source`` says where they came from."""

    username: str | None = None
    key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.token and not (self.username and self.key):
            raise CredentialError(f"incomplete Kaggle credentials from {self.source or 'the caller'}: "
                                  "pass a username and key, or an access token")

    def __repr__(self) -> str:
        kind = "token" if self.token else "api key"
        return f"Credentials(username={self.username!r}, {kind}=***, source={self.source!r})"


def _config_dir() -> Path:
    configured = os.environ.get(envvars.CONFIG_DIR)
    if configured:
        return Path(configured).expanduser()
    home_dir = Path("~/.kaggle").expanduser()
    if home_dir.exists():
        return home_dir
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(xdg) / "kaggle"


def _read_token(value: str) -> str | None:
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return path.read_text().strip() or None
    except OSError:
        return None
    return value.strip() or None


def _from_secrets(labels: Sequence[str]) -> Credentials | None:
    try:
        from kaggle_secrets import UserSecretsClient  # only inside a Kaggle notebook (or the sandbox)
    except ImportError:
        return None
    client = UserSecretsClient()

    def get(label: str) -> str | None:
        try:
            return client.get_secret(label) or None
        except Exception:  # a missing label raises the backend's own error type
            return None

    token = get(TOKEN_SECRET_LABEL) if TOKEN_SECRET_LABEL not in labels else None
    if len(labels) >= 2:
        username, key = get(labels[0]), get(labels[1])
        if username and key:
            return Credentials(username=username, key=key, source=f"Kaggle Secrets {labels[0]}/{labels[1]}")
    elif len(labels) == 1:
        token = get(labels[0]) or token
    if token:
        return Credentials(token=token, source="Kaggle Secrets")
    return None


def find_credentials(*, secret_labels: Sequence[str] | None = None) -> Credentials | None:
    """Find Kaggle credentials where the official client looks, then in Kaggle Secrets.

    Order: ``KAGGLE_API_TOKEN``; ``KAGGLE_USERNAME``/``KAGGLE_KEY``; ``kaggle.json`` in ``KAGGLE_CONFIG_DIR`` or
    ``~/.kaggle``; ``~/.kaggle/access_token``; Kaggle Secrets (labels ``KAGGLE_USERNAME`` and ``KAGGLE_KEY`` by
    default, or ``secret_labels``: two labels for username and key, one for an access token).

    Returns:
        The credentials, or None when there are none anywhere.
    """
    token = os.environ.get(envvars.API_TOKEN)
    if token and (value := _read_token(token)):
        return Credentials(token=value, username=os.environ.get(envvars.USERNAME), source=envvars.API_TOKEN)
    username, key = os.environ.get(envvars.USERNAME), os.environ.get(envvars.KEY)
    if username and key:
        return Credentials(username=username, key=key, source="KAGGLE_USERNAME/KAGGLE_KEY")
    config_file = _config_dir() / "kaggle.json"
    if config_file.is_file():
        try:
            data = read_json(config_file)
        except MalformedFileError as exc:
            raise CredentialError(f"{exc}; it should read " '{"username": "...", "key": "..."}') from None
        if isinstance(data, dict) and data.get("username") and data.get("key"):
            return Credentials(username=str(data["username"]), key=str(data["key"]), source=str(config_file))
    for name in ("access_token", "access_token.txt"):
        token_file = Path("~/.kaggle").expanduser() / name
        if token_file.is_file() and (value := _read_token(str(token_file))):
            return Credentials(token=value, source=str(token_file))
    return _from_secrets(tuple(secret_labels) if secret_labels else DEFAULT_SECRET_LABELS)


def point_client_at(url: str) -> None:
    """Send every Kaggle client built from now on in this process to ``url`` (e.g. ``http://127.0.0.1:8123``)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CredentialError(f"{ENDPOINT_ENV}={url!r} is not an http(s) URL: use e.g. http://127.0.0.1:8123")
    from kagglesdk import kaggle_env

    global _default_endpoints
    if _default_endpoints is None:
        _default_endpoints = dict(kaggle_env._env_to_endpoint)
    base = url.rstrip("/")
    for env in kaggle_env.KaggleEnv:
        kaggle_env._env_to_endpoint[env] = base


def restore_default_endpoints() -> None:
    """Undo :func:`point_client_at`."""
    if _default_endpoints is None:
        return
    from kagglesdk import kaggle_env

    kaggle_env._env_to_endpoint.clear()
    kaggle_env._env_to_endpoint.update(_default_endpoints)


def apply_endpoint_override() -> str | None:
    """Honour ``KAGGLE_KIT_API_ENDPOINT`` if set; returns the URL in force, or None for Kaggle itself."""
    url = os.environ.get(ENDPOINT_ENV)
    if url:
        point_client_at(url)
        return url.rstrip("/")
    return None


def import_kaggle_api() -> type:
    """``KaggleApi``, imported without the side effects of the ``kaggle`` package's own import.

    ``import kaggle`` tries to authenticate from files and the environment; without credentials there it prints
    "Authentication required" and calls ``exit()``, which also closes ``sys.stdin``. The kit hands credentials to
    the client in memory, so that attempt means nothing: it gets a throwaway stdin and its text is swallowed.
    """
    if "kaggle" not in sys.modules:
        stdin = sys.stdin
        sys.stdin = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                import kaggle  # noqa: F401
        finally:
            sys.stdin = stdin
    from kaggle.api.kaggle_api_extended import KaggleApi

    return KaggleApi


def make_api(credentials: Credentials | None = None) -> KaggleApi:
    """A ``KaggleApi`` authenticated in memory with ``credentials`` (found with :func:`find_credentials` if None).

    Raises:
        CredentialError: no credentials anywhere, or an access token the server does not accept.
    """
    creds = credentials or find_credentials()
    if creds is None:
        raise CredentialError(
            "no Kaggle credentials found: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), put kaggle.json "
            "in ~/.kaggle, or inside a notebook add them as Kaggle Secrets (Add-ons > Secrets) labelled "
            "KAGGLE_USERNAME and KAGGLE_KEY"
        )
    apply_endpoint_override()
    KaggleApi = import_kaggle_api()
    api = KaggleApi()
    # An instance dict, so the class-level default is never shared or mutated.
    api.config_values = {}
    if creds.token:
        api.config_values[KaggleApi.CONFIG_NAME_TOKEN] = creds.token
        username = creds.username or api._introspect_token(creds.token)
        if not username:
            raise CredentialError(f"the access token from {creds.source} was refused: create a new one in your "
                                  "Kaggle account settings")
        api.config_values[KaggleApi.CONFIG_NAME_USER] = username
    else:
        api.config_values[KaggleApi.CONFIG_NAME_USER] = creds.username
        api.config_values[KaggleApi.CONFIG_NAME_KEY] = creds.key
    api._authenticated = True
    return api


def describe_http_error(exc: BaseException) -> str:
    """What a failed client call says: the server's status and message when it answered, else the exception."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return f"HTTP {response.status_code}: {response.json().get('message', response.text)}"
        except ValueError:
            return f"HTTP {response.status_code}: {response.text[:200]}"
    return str(exc)


def reply_problems(response: Any, *, tolerated: Sequence[str] = ()) -> list[str]:
    """What a reply reports as wrong (an error field, a status other than ok, invalid tags or sources), each as
    ``"name: value"``; ``tolerated`` sources do not count (a mirror dataset the first run creates)."""
    error = getattr(response, "error", None)
    status = getattr(response, "status", None)
    problems = [f"error: {error}"] if error else []
    if status and str(status).lower() not in ("ok", "", "none"):
        problems.append(f"status: {status}")
    for name in ("invalid_tags", "invalid_dataset_sources", "invalid_competition_sources", "invalid_kernel_sources",
                 "invalid_model_sources"):
        bad = [b for b in getattr(response, name, None) or [] if b not in tolerated]
        if bad:
            problems.append(f"{name.replace('_', ' ')}: {', '.join(map(str, bad))}")
    return problems


def check_reply(response: Any, what: str, *, tolerated: Sequence[str] = ()) -> None:
    """Raise when a reply reports a server-side error (the official CLI would still exit 0).

    ``tolerated`` sources may be reported invalid without failing (a mirror dataset the first run creates).

    Raises:
        KaggleApiError: naming ``what`` and every problem the reply reports.
    """
    if response is None:
        raise KaggleApiError(f"{what}: the server sent no reply")
    problems = reply_problems(response, tolerated=tolerated)
    if problems:
        raise KaggleApiError(f"{what} failed on the server: " + "; ".join(problems))
