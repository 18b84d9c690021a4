"""The mirror's retry policy: one classifier decides, by type, what is transient; the client retries only that."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import requests

from kaggle_kit.errors import MirrorError, MirrorStopped, TransientApiError
from kaggle_kit.mirror.client import ApiClient, MirrorSettings, classify_api_error, response_status


class _Response:
    def __init__(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.text = text
        self.headers = headers or {}


def _http(status: int, text: str = "", headers: dict[str, str] | None = None) -> requests.HTTPError:
    return requests.HTTPError(f"{status} error", response=_Response(status, text, headers))  # type: ignore[arg-type]


def _client(**overrides: Any) -> ApiClient:
    settings: dict[str, Any] = dict(handle="alice/run-ckpts", title="run ckpts", staging_root="/nonexistent",
                    verify_timeout_s=60.0, poll_interval_s=0.0, backoff_s=0.0, max_backoff_s=0.0, max_attempts=4,
                    run_type=None, accelerator="none")
    settings.update(overrides)
    return ApiClient(MirrorSettings(**settings), None)


@pytest.mark.parametrize("exc", [
    _http(429), _http(500), _http(503), requests.ConnectionError("reset"), requests.Timeout("slow"),
    ConnectionResetError("reset"), ValueError("Upload unsuccessful: step-0000000001.pt"),
])
def test_transient_failures_are_typed_transient(exc: BaseException) -> None:
    error = classify_api_error(exc, "adding a version")
    assert isinstance(error, TransientApiError), error
    assert "adding a version" in str(error)


@pytest.mark.parametrize("exc,status", [
    (_http(401), 401), (_http(404), 404), (_http(403, "forbidden"), 403), (_http(400, "bad slug"), 400),
    (ValueError("something else"), None), (KeyError("x"), None),
])
def test_permanent_failures_are_mirror_errors_with_their_status(exc: BaseException, status: int | None) -> None:
    error = classify_api_error(exc, "reading alice/run-ckpts")
    assert isinstance(error, MirrorError) and not isinstance(error, TransientApiError)
    try:
        raise error from exc
    except MirrorError as raised:
        assert response_status(raised) == status


def test_429_honours_retry_after_and_403_processing_waits() -> None:
    limited = classify_api_error(_http(429, headers={"Retry-After": "7"}), "x")
    assert isinstance(limited, TransientApiError) and limited.retry_after_s == 7.0 and limited.status == 429
    processing = classify_api_error(_http(403, "The previous version is still processing"), "x")
    assert isinstance(processing, TransientApiError) and processing.still_processing


def test_call_retries_transient_failures_then_succeeds() -> None:
    client = _client()
    failures = [_http(503), requests.ConnectionError("reset")]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert client.call("listing files", flaky) == "ok"
    assert client.retries == 2


def test_call_raises_a_permanent_failure_at_once() -> None:
    client = _client()
    calls = []

    def refused() -> None:
        calls.append(1)
        raise _http(401)

    with pytest.raises(MirrorError, match="refused the credentials"):
        client.call("reading alice/run-ckpts", refused)
    assert calls == [1] and client.retries == 0


def test_call_gives_up_after_max_attempts() -> None:
    client = _client(max_attempts=3)
    calls = []

    def down() -> None:
        calls.append(1)
        raise _http(502)

    with pytest.raises(MirrorError, match="still failing after 3 attempts") as failed:
        client.call("reading alice/run-ckpts", down)
    assert len(calls) == 3 and not isinstance(failed.value, TransientApiError)
    assert response_status(failed.value) == 502


def test_a_stopped_client_abandons_its_wait() -> None:
    client = _client(backoff_s=60.0, max_backoff_s=60.0)
    client.stop.set()
    with pytest.raises(MirrorStopped):
        client.call("reading", lambda: (_ for _ in ()).throw(_http(503)))


def test_the_old_loud_warning_path_still_works_and_warns() -> None:
    import kaggle_kit.mirror
    from kaggle_kit.notify import loud_warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moved = kaggle_kit.mirror.loud_warning
    assert moved is loud_warning
    assert any(issubclass(w.category, DeprecationWarning) and "kaggle_kit.notify" in str(w.message) for w in caught)
