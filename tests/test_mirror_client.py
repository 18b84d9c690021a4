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
    for status in (403, 404, 409):
        processing = classify_api_error(_http(status, "undocumented body"), "x", fresh_version=True)
        assert isinstance(processing, TransientApiError) and processing.still_processing, status


@pytest.mark.parametrize("status", [403, 404, 409])
def test_a_version_refusal_is_judged_by_status_not_body_text(status: int) -> None:
    # Only a version this client just created is waited for; the words in the body decide nothing.
    for body in ("The previous version is still processing", ""):
        error = classify_api_error(_http(status, body), "adding a version")
        assert isinstance(error, MirrorError) and not isinstance(error, TransientApiError)
    if status == 403:
        assert "not found or not yours" in str(classify_api_error(_http(403), "reading bob/other-data"))


def test_refusals_are_waited_out_only_within_the_window_after_this_client_created_a_version() -> None:
    client = _client(verify_timeout_s=60.0)
    refusals = [_http(409), _http(404), _http(403)]

    def listing() -> str:
        if refusals:
            raise refusals.pop(0)
        return "listed"

    with pytest.raises(MirrorError):
        client.call("listing alice/run-ckpts/2", lambda: (_ for _ in ()).throw(_http(404)))
    client.note_created()
    assert client.call("listing alice/run-ckpts/2", listing) == "listed" and not refusals
    closed = _client(verify_timeout_s=0.0)
    closed.note_created()
    with pytest.raises(MirrorError, match="404"):
        closed.call("listing alice/run-ckpts/2", lambda: (_ for _ in ()).throw(_http(404)))


def test_a_lying_retry_after_is_capped_at_the_longest_backoff() -> None:
    client = _client(max_backoff_s=2.0, backoff_s=1.0)
    for header, expected in (("3600", 2.0), ("1", 1.0)):
        error = classify_api_error(_http(429, headers={"Retry-After": header}), "x")
        assert isinstance(error, TransientApiError)
        assert client.retry_delay(error, 0) == expected
    waited: list[float] = []
    client.wait = waited.append  # type: ignore[method-assign]
    failures = [_http(429, headers={"Retry-After": "86400"})]

    def limited() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert client.call("adding a version", limited) == "ok" and waited == [2.0]


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
