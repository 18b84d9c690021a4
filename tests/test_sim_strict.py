"""The offline Kaggle is as strict as the real one (issue 14): every case here passed on the kinder stand-in of before
and would have failed on Kaggle. Driven by the real ``kaggle`` CLI and Python client where a client is involved."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import requests
from _kaggle_folders import SIM_USER, dataset_folder, kernel_folder

KEY = "k" * 32


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.lower(), proc.stdout
    return proc.stdout


def _auth(server: Any) -> tuple[str, str]:
    return (server.username, server.client_env({})["KAGGLE_KEY"])


def _rpc(server: Any, method: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}/v1/{method}", json=body, auth=_auth(server), **kwargs)


def _until(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it is truthy (a deadline, never a fixed wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _needs_sandbox(server: Any) -> None:
    if server.sandbox is None:
        pytest.skip("kaggle_kit.sim.sandbox is not importable")


def _raw(server: Any, data: bytes, *, read_s: float = 30.0) -> bytes:
    """Send ``data`` on a fresh connection and read the reply until the server closes or the headers and body
    declared are in."""
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    with socket.create_connection((host, port), timeout=read_s) as conn:
        conn.sendall(data)
        reply = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            reply += chunk
            head, sep, body = reply.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if sep and length is not None and len(body) >= length:
                break
    return reply


def _status_and_json(reply: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


# --- item 1 and item 7: a stop is CANCEL_ACKNOWLEDGED with its output kept; quota moves while a session runs ---


def test_a_session_stopped_at_its_limit_ends_as_kaggle_reports_it(kaggle_cli: Any, sim_server: Any,
                                                                  tmp_path: Path) -> None:
    _needs_sandbox(sim_server)
    slug = "stopped-at-limit"
    folder = kernel_folder(tmp_path / "k", slug, ["import time\nwhile True:\n    time.sleep(0.05)"])
    # The limit pushed with the version ends it, however long the kernel took to start.
    _ok(kaggle_cli("kernels", "push", "-p", str(folder), "--timeout", "3"))
    assert sim_server.wait_for_sessions(timeout=240)
    status = _ok(kaggle_cli("kernels", "status", f"{SIM_USER}/{slug}"))
    assert "CANCEL_ACKNOWLEDGED" in status and "ERROR" not in status
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit", "status", f"{SIM_USER}/{slug}"],
                          env=sim_server.client_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "CANCEL_ACKNOWLEDGED (killed: stopped before it finished" in proc.stdout, (
        proc.stdout + proc.stderr)


def test_a_session_stopped_mid_run_keeps_its_output_and_bills_its_quota_as_kaggle_does(
        kaggle_cli: Any, sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    _needs_sandbox(sim_server)
    slug = "stopped-mid-run"
    # The session holds at a point the test chooses (it waits for a byte from this socket), then its training
    # reaches step 1 and the stand-in stops it there: no second counts, so a slow machine stops it at the same point.
    gate = socket.create_server(("127.0.0.1", 0))
    cells = ["open('/kaggle/working/partial.txt', 'w').write('written before the stop')",
             "import json, os, socket, time\n"
             f"socket.create_connection(('127.0.0.1', {gate.getsockname()[1]})).recv(1)\n"
             "json.dump({'step': 1}, open('/kaggle/working/progress.tmp', 'w'))\n"
             "os.replace('/kaggle/working/progress.tmp', '/kaggle/working/progress.json')\n"
             "while True:\n    time.sleep(0.05)",
             "open('/kaggle/working/after.txt', 'w').close()"]
    folder = kernel_folder(tmp_path / "k", slug, cells, enable_gpu=True, enable_internet=True)
    sim_server.sessions.kill_at_step(f"{SIM_USER}/{slug}", 1)
    api = make_api()
    try:
        _ok(kaggle_cli("kernels", "push", "-p", str(folder)))
        gate.settimeout(300)
        held, _ = gate.accept()
        with held:
            assert api.kernels_status(f"{SIM_USER}/{slug}").status.name == "RUNNING"
            # The GPU quota counts while the session runs, as Kaggle's does (before: only once it had ended).
            first = api.quota_view().gpu_quota.time_used.total_seconds()
            _until(lambda: api.quota_view().gpu_quota.time_used.total_seconds() > first, "the quota to move", 60)
            assert api.kernels_status(f"{SIM_USER}/{slug}").status.name == "RUNNING"
            during = api.quota_view().gpu_quota.time_used.total_seconds()
            held.sendall(b"1")
            assert sim_server.wait_for_sessions(timeout=240)
    finally:
        gate.close()
    assert api.quota_view().gpu_quota.time_used.total_seconds() >= during

    status = _ok(kaggle_cli("kernels", "status", f"{SIM_USER}/{slug}"))
    assert "CANCEL_ACKNOWLEDGED" in status and "ERROR" not in status
    _ok(kaggle_cli("kernels", "output", f"{SIM_USER}/{slug}", "-p", str(tmp_path / "out")))
    assert (tmp_path / "out" / "partial.txt").read_text() == "written before the stop"
    assert not (tmp_path / "out" / "after.txt").exists()

    # The kit reads it as a stop from the status and the evidence, in the one classifier every command uses.
    proc = subprocess.run([sys.executable, "-m", "kaggle_kit", "status", f"{SIM_USER}/{slug}"],
                          env=sim_server.client_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CANCEL_ACKNOWLEDGED (killed: stopped before it finished" in proc.stdout
    assert "2 output file(s) kept" in proc.stdout, proc.stdout

    # Outputs download only through the signed URL the API handed out: a guessed one is refused.
    guessed = f"{sim_server.url}/_sim/outputs/{SIM_USER}/{slug}/1/partial.txt"
    assert requests.get(guessed).status_code == 401
    assert requests.get(guessed + "?expires=99999999999&signature=" + "0" * 64).status_code == 403


@pytest.mark.parametrize(("kernel", "step", "message"), [
    ("no-owner", 1, "owner/slug"), (f"{SIM_USER}/some-kernel", -1, "whole number"),
    (f"{SIM_USER}/some-kernel", 1.5, "whole number")])
def test_a_kill_at_step_for_no_kernel_or_no_step_is_refused(sim_server: Any, kernel: str, step: Any,
                                                          message: str) -> None:
    from kaggle_kit.errors import KaggleKitError

    with pytest.raises(KaggleKitError, match=message):
        sim_server.sessions.kill_at_step(kernel, step)


def test_tpu_time_is_billed_to_the_tpu_quota(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    _needs_sandbox(sim_server)
    api = make_api()
    folder = kernel_folder(tmp_path / "k", "tpu-billing", ["print('on a TPU')"], machine_shape="TpuV5E8")
    before = api.quota_view()
    assert not api.kernels_push(str(folder)).error
    assert sim_server.wait_for_sessions(timeout=240)
    assert api.kernels_status(f"{SIM_USER}/tpu-billing").status.name == "COMPLETE"
    after = api.quota_view()
    assert after.tpu_quota.time_used > before.tpu_quota.time_used
    assert after.gpu_quota.time_used == before.gpu_quota.time_used
    assert after.tpu_quota.total_time_allowed.total_seconds() == 20 * 3600


# --- item 6: machine shapes ---


def test_retired_shapes_run_as_kaggle_maps_them_and_unknown_ones_are_refused(kaggle_cli: Any, sim_server: Any,
                                                                              tmp_path: Path) -> None:
    _needs_sandbox(sim_server)
    cells = ["import os\nprint('accelerator', os.environ['KAGGLE_KIT_SIM_ACCELERATOR'])"]
    folder = kernel_folder(tmp_path / "k", "retired-shape", cells)
    pushed = kaggle_cli("kernels", "push", "-p", str(folder), "--accelerator", "NvidiaTeslaP100")
    assert "retired" in pushed.stderr and "successfully" in pushed.stdout
    assert sim_server.wait_for_sessions(timeout=240)
    _ok(kaggle_cli("kernels", "output", f"{SIM_USER}/retired-shape", "-p", str(tmp_path / "out")))
    assert "accelerator T4x2" in (tmp_path / "out" / "retired-shape.log").read_text()

    unknown = kernel_folder(tmp_path / "u", "unknown-shape", ["1"])
    refused = kaggle_cli("kernels", "push", "-p", str(unknown), "--accelerator", "NvidiaTeslaV100")
    assert "Kernel push error: unknown machine shape 'NvidiaTeslaV100'" in refused.stdout, refused.stdout
    assert "NvidiaTeslaT4" in refused.stdout and "TpuV5E8" in refused.stdout
    # Refused means no version was created.
    missing = kaggle_cli("kernels", "status", f"{SIM_USER}/unknown-shape")
    assert "Permission 'kernels.get' was denied" in missing.stdout + missing.stderr


# --- item 8: limits ---


def test_a_batch_output_over_the_working_folder_limit_fails_the_session(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_platform import WORKING_DIR_LIMIT_BYTES
    from kaggle_kit.sim.settings import SimSettings

    from kaggle_kit.kaggle_api import make_api

    _needs_sandbox(sim_server)
    assert SimSettings().working_dir_limit_bytes == WORKING_DIR_LIMIT_BYTES == 20 * 10**9
    api = make_api()
    cells = ["open('/kaggle/working/big.bin', 'wb').write(b'x' * 5000)"]
    folder = kernel_folder(tmp_path / "k", "too-much-output", cells)
    with sim_server.configured(working_dir_limit_bytes=4096):
        assert not api.kernels_push(str(folder)).error
        assert sim_server.wait_for_sessions(timeout=240)
    status = api.kernels_status(f"{SIM_USER}/too-much-output")
    assert status.status.name == "ERROR" and "4096 bytes" in status.failure_message
    files, _ = api.kernels_output(f"{SIM_USER}/too-much-output", str(tmp_path / "out"), quiet=True)
    assert [Path(f).name for f in files] == ["too-much-output.log"]
    assert "more than the 4096 bytes" in (tmp_path / "out" / "too-much-output.log").read_text()


def test_a_dataset_version_with_too_many_files_is_refused(kaggle_cli: Any, sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_platform import MAX_DATASET_VERSION_FILES
    from kaggle_kit.sim.settings import SimSettings

    from kaggle_kit.kaggle_api import make_api

    assert SimSettings().max_dataset_files == MAX_DATASET_VERSION_FILES == 1000
    api = make_api()
    ds = dataset_folder(tmp_path / "ds", "many-files", {"a.txt": "1", "b.txt": "2", "c.txt": "3"})
    with sim_server.configured(max_dataset_files=2):
        out = kaggle_cli("datasets", "create", "-p", str(ds)).stdout
        assert "The file count exceeds the maximum of 2" in out, out
        with pytest.raises(requests.HTTPError):
            api.dataset_status(f"{SIM_USER}/many-files")
        (ds / "c.txt").unlink()
        assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
        (ds / "c.txt").write_text("3")
        refused = api.dataset_create_version(str(ds), "three", quiet=True)
        assert refused.error == "The file count exceeds the maximum of 2"


def test_a_third_gpu_batch_session_is_refused_with_kaggles_words(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
    from kaggle_kit.sim.server import SimServer

    with SimServer(tmp_path / "state", username=SIM_USER, key=KEY) as server:  # no sandbox: pushes stay QUEUED
        point_client_at(server.url)
        api = make_api(Credentials(username=SIM_USER, key=KEY, source="test"))
        for index in (1, 2):
            reply = api.kernels_push(str(kernel_folder(tmp_path / f"g{index}", f"gpu-run-{index}", ["1"],
                                                        enable_gpu=True)))
            assert not reply.error and reply.version_number == 1
        third = kernel_folder(tmp_path / "g3", "gpu-run-three", ["1"], enable_gpu=True)
        env = server.client_env()
        proc = subprocess.run([sys.executable, "-m", "kaggle", "kernels", "push", "-p", str(third)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert "Kernel push error: Maximum batch GPU session count of 2 reached." in proc.stdout, proc.stdout
        # A CPU session is not counted; a quick save does not run; a larger setting lets the third in.
        assert not api.kernels_push(str(kernel_folder(tmp_path / "c", "cpu-run-one", ["1"]))).error
        assert not api.kernels_push(str(third), no_run=True).error
        with server.configured(max_gpu_sessions=3):
            assert api.kernels_push(str(third)).version_number == 2


# --- item 4 and item 5: permission errors; slugs and titles as Kaggle checks them ---


def test_unknown_and_foreign_kernels_are_a_permission_error(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
    from kaggle_kit.sim.server import SimServer

    state = tmp_path / "state"
    with SimServer(state, username="bob", key=KEY) as server:
        point_client_at(server.url)
        bob = make_api(Credentials(username="bob", key=KEY, source="test"))
        meta = {"id": "bob/bobs-private-kernel", "is_private": True}
        assert not bob.kernels_push(str(kernel_folder(tmp_path / "b", "bobs-private-kernel", ["1"], **meta))).error
    with SimServer(state, username=SIM_USER, key=KEY) as server:
        point_client_at(server.url)
        alice = make_api(Credentials(username=SIM_USER, key=KEY, source="test"))
        for ref in (f"{SIM_USER}/no-such-kernel", "bob/bobs-private-kernel"):
            for call in (lambda: alice.kernels_status(ref), lambda: alice.kernels_output(ref, str(tmp_path / "o"))):
                with pytest.raises(ValueError, match="Permission 'kernels.get' was denied"):
                    call()
        env = server.client_env()
        cli = subprocess.run([sys.executable, "-m", "kaggle", "kernels", "status", "bob/bobs-private-kernel"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert "Permission 'kernels.get' was denied" in cli.stdout + cli.stderr, cli.stdout + cli.stderr
        kit = subprocess.run([sys.executable, "-m", "kaggle_kit", "status", f"{SIM_USER}/no-such-kernel"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert kit.returncode == 2 and "not found or not yours" in kit.stderr, kit.stdout + kit.stderr


def test_slugs_and_titles_are_checked_with_kaggles_rules(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    for bad in ("my_kernel", "-leading-dash", "two--dashes"):
        reply = api.kernels_push(str(kernel_folder(tmp_path / bad, "placeholder", ["1"], id=f"{SIM_USER}/{bad}",
                                                    title="A good title")), no_run=True)
        assert "not valid on Kaggle" in reply.error and not reply.version_number, reply
    # What a client that checks less would send: a slug Kaggle finds too short.
    short = _rpc(sim_server, "kernels.KernelsApiService/SaveKernel",
                 {"slug": f"{SIM_USER}/abc", "newTitle": "A good title", "text": "1"}).json()
    assert "Kaggle allows 5 to 50" in short["error"] and "versionNumber" not in short
    # Uppercase is lowered, as Kaggle treats handles: the ref is the one Kaggle would return.
    upper = api.kernels_push(str(kernel_folder(tmp_path / "u", "x", ["1"], id=f"{SIM_USER}/Mixed-Case-Kernel",
                                                title="Mixed Case Kernel")), no_run=True)
    assert not upper.error and upper.ref == f"{SIM_USER}/mixed-case-kernel"
    assert api.kernels_status(f"{SIM_USER}/mixed-case-kernel").status.name == "NEW_SCRIPT"
    short_title = _rpc(sim_server, "kernels.KernelsApiService/SaveKernel",
                       {"slug": f"{SIM_USER}/short-title-kernel", "newTitle": "abc", "text": "1"}).json()
    assert "at least five characters" in short_title["error"] and "versionNumber" not in short_title
    bad_dataset = _rpc(sim_server, "datasets.DatasetApiService/CreateDataset",
                       {"ownerSlug": SIM_USER, "slug": "Bad_Slug_Data", "title": "A fine title"}).json()
    assert bad_dataset["status"] == "error" and "not valid on Kaggle" in bad_dataset["error"]
    assert _rpc(sim_server, "datasets.DatasetApiService/GetDataset",
                {"ownerSlug": SIM_USER, "datasetSlug": "../../etc"}).status_code == 400


def test_a_dot_dot_kernel_slug_never_reaches_the_file_system(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    assert not api.kernels_push(str(kernel_folder(tmp_path / "k", "innocent-kernel", ["1"])), no_run=True).error
    kernels_root = sim_server.store.root / "kernels"
    assert (kernels_root / SIM_USER / "innocent-kernel").is_dir()
    for slug in ("..", ".", "a/../../b"):
        saved = _rpc(sim_server, "kernels.KernelsApiService/SaveKernel",
                     {"slug": f"{SIM_USER}/{slug}", "newTitle": "a title here", "text": "1"})
        assert saved.status_code in (200, 400) and "versionNumber" not in saved.json(), saved.text
        deleted = _rpc(sim_server, "kernels.KernelsApiService/DeleteKernel",
                       {"userName": SIM_USER, "kernelSlug": slug})
        assert deleted.status_code == 400, deleted.text
    assert (kernels_root / SIM_USER / "innocent-kernel").is_dir()
    assert api.kernels_status(f"{SIM_USER}/innocent-kernel").status.name == "NEW_SCRIPT"


# --- holes: names, archives, session failures, signed URLs ---


def test_an_upload_name_with_a_nul_byte_or_a_path_is_refused(sim_server: Any) -> None:
    for name in ("a\x00b.txt", "../escape.txt", "..", "sub/inner.txt", "tab\there.txt", ""):
        started = _rpc(sim_server, "blobs.BlobApiService/StartBlobUpload",
                       {"type": "DATASET", "name": name, "contentLength": 1})
        assert started.status_code == 400 and started.json()["code"] == 400, (name, started.text)


def test_an_archive_named_dot_dot_zip_stays_inside_its_version(sim_server: Any) -> None:
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("escaped.txt", "should stay inside")
        archive.writestr("../../climbed.txt", "should be dropped")
    data = payload.getvalue()
    started = _rpc(sim_server, "blobs.BlobApiService/StartBlobUpload",
                   {"type": "DATASET", "name": "...zip", "contentLength": len(data)}).json()
    assert requests.put(started["createUrl"], data=data).status_code == 200
    created = _rpc(sim_server, "datasets.DatasetApiService/CreateDataset",
                   {"ownerSlug": SIM_USER, "slug": "dot-dot-archive", "title": "Dot dot archive",
                    "files": [{"token": started["token"]}]}).json()
    assert created["status"] == "ok", created
    folder = sim_server.dataset_version_dir(SIM_USER, "dot-dot-archive")
    assert sorted(p.name for p in folder.iterdir()) == ["...zip"]
    mounts = sim_server.store.root / "mounts"
    assert not list(mounts.rglob("escaped.txt")) and not list(sim_server.store.root.parent.rglob("climbed.txt"))
    # A real archive: members that climb out are dropped, the rest unpacks into the stem's folder.
    started = _rpc(sim_server, "blobs.BlobApiService/StartBlobUpload",
                   {"type": "DATASET", "name": "bundle.zip", "contentLength": len(data)}).json()
    requests.put(started["createUrl"], data=data)
    _rpc(sim_server, "datasets.DatasetApiService/CreateDataset",
         {"ownerSlug": SIM_USER, "slug": "real-bundle-archive", "title": "Real bundle",
          "files": [{"token": started["token"]}]})
    listed = _rpc(sim_server, "datasets.DatasetApiService/ListDatasetFiles",
                  {"ownerSlug": SIM_USER, "datasetSlug": "real-bundle-archive"}).json()
    assert [f["name"] for f in listed["datasetFiles"]] == ["bundle/escaped.txt"]


def test_any_failure_of_a_session_ends_it_as_error_with_the_reason_in_its_log(sim_server: Any, tmp_path: Path
                                                                              ) -> None:
    from kaggle_kit.kaggle_api import make_api

    _needs_sandbox(sim_server)
    api = make_api()
    ds = dataset_folder(tmp_path / "ds", "vanishing-blob", {"only.txt": "content unique to this test 5d1f"})
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    # The stored blob disappears (a damaged state folder): mounting the dataset fails with an OSError.
    with sim_server.store.lock:
        entry = sim_server.store.data["datasets"][f"{SIM_USER}/vanishing-blob"]["versions"][-1]["files"][0]
    sim_server.store.blob_path(entry["blob"]).unlink()
    folder = kernel_folder(tmp_path / "k", "broken-mount", ["print('never runs')"],
                            dataset_sources=[f"{SIM_USER}/vanishing-blob"])
    assert not api.kernels_push(str(folder)).error
    assert sim_server.wait_for_sessions(timeout=120)
    status = api.kernels_status(f"{SIM_USER}/broken-mount")
    assert status.status.name == "ERROR" and "FileNotFoundError" in status.failure_message, status
    api.kernels_output(f"{SIM_USER}/broken-mount", str(tmp_path / "out"), quiet=True)
    assert "FileNotFoundError" in (tmp_path / "out" / "broken-mount.log").read_text()


def test_downloads_need_a_signed_unexpired_url_or_credentials(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    ds = dataset_folder(tmp_path / "ds", "private-bytes", {"secret.txt": "private content"})
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    redirect = _rpc(sim_server, "datasets.DatasetApiService/DownloadDataset",
                    {"ownerSlug": SIM_USER, "datasetSlug": "private-bytes", "fileName": "secret.txt"},
                    allow_redirects=False)
    signed = redirect.headers["Location"]
    assert requests.get(signed).content == b"private content"
    bare = signed.split("?")[0]
    assert requests.get(bare).status_code == 401
    assert requests.get(bare, auth=_auth(sim_server)).content == b"private content"
    assert requests.get(signed.replace("signature=", "signature=0")).status_code == 403
    other_blob = bare.replace("/secret.txt", "/other-name.txt") + "?" + signed.split("?")[1]
    assert requests.get(other_blob).status_code == 403
    path = urlsplit(bare).path
    expired = sim_server.signer.url(sim_server.url, path, now=time.time() - 2 * sim_server.settings.signed_url_ttl_s)
    refused = requests.get(expired)
    assert refused.status_code == 403 and "expired" in refused.json()["message"]
    # Anything else without credentials is refused too (the health probe is the one exception).
    assert requests.get(f"{sim_server.url}/").status_code == 401
    assert requests.get(f"{sim_server.url}/_sim/health").json() == {"status": "ok"}


# --- item 3: a large single file arrives as <name>.zip, and the kit's downloads handle it ---


def test_a_large_single_file_arrives_zipped_and_the_kits_download_unwraps_it(kaggle_cli: Any, sim_server: Any,
                                                                            tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api
    from kaggle_kit.mirror.client import ApiClient, MirrorSettings

    big = bytes(range(256)) * 16
    ds = dataset_folder(tmp_path / "ds", "large-single", {"big.bin": big, "small.txt": "tiny"})
    _ok(kaggle_cli("datasets", "create", "-p", str(ds)))
    assert sim_server.settings.zip_single_files_over_bytes < len(big)
    _ok(kaggle_cli("datasets", "download", f"{SIM_USER}/large-single", "-f", "big.bin", "-p", str(tmp_path / "cli")))
    with zipfile.ZipFile(tmp_path / "cli" / "big.bin.zip") as archive:
        assert archive.namelist() == ["big.bin"] and archive.read("big.bin") == big
    _ok(kaggle_cli("datasets", "download", f"{SIM_USER}/large-single", "-f", "small.txt", "-p", str(tmp_path / "cli")))
    assert (tmp_path / "cli" / "small.txt").read_text() == "tiny"

    class Kaggle220:
        """The real client as kaggle 2.2.0 (allowed by the kit's requirements) offers it: no ``unzip``."""

        def __init__(self, api: Any) -> None:
            self.api = api

        def dataset_download_file(self, dataset: str, file_name: str, path: str | None = None, force: bool = False,
                                  quiet: bool = True, licenses: list[str] | None = None) -> bool:
            return self.api.dataset_download_file(dataset, file_name, path=path, force=force, quiet=quiet)

    settings = MirrorSettings(handle=f"{SIM_USER}/large-single", title="large single", staging_root=str(tmp_path),
                              verify_timeout_s=60, poll_interval_s=0.05, backoff_s=0.05, max_backoff_s=0.5,
                              max_attempts=3, run_type=None, accelerator="none")
    client = ApiClient(settings, None)
    for name, content in (("big.bin", big), ("small.txt", b"tiny")):
        dest = tmp_path / "kit" / name.replace(".", "-")
        client.download_file(Kaggle220(make_api()), f"{SIM_USER}/large-single/1", name, str(dest))
        assert (dest / name).read_bytes() == content and sorted(p.name for p in dest.iterdir()) == [name]


# --- item 9: rate limits as Kaggle shows them ---


def test_429s_carry_whole_second_retry_after_or_none_and_can_persist(sim_server: Any) -> None:
    url = f"{sim_server.url}/v1/kernels.KernelsApiService/ListKernels"
    sim_server.inject_fault("429", match="ListKernels", retry_after=0.3)
    limited = requests.post(url, json={}, auth=_auth(sim_server))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"code": 429, "message": "Too many requests"}
    sim_server.inject_fault("429", match="ListKernels", retry_after="none")
    assert "Retry-After" not in requests.post(url, json={}, auth=_auth(sim_server)).headers
    # A Retry-After that lies: it promises 1 s, the 429s persist past any number of requests.
    sim_server.inject_fault("429", match="ListKernels", retry_after=1, for_s=3600)
    assert [requests.post(url, json={}, auth=_auth(sim_server)).status_code for _ in range(5)] == [429] * 5
    sim_server.clear_faults()
    assert requests.post(url, json={}, auth=_auth(sim_server)).status_code == 200


# --- holes: whatever arrives gets an HTTP answer ---


def test_malformed_requests_get_an_http_error_never_silence(sim_server: Any) -> None:
    status, body = _status_and_json(_raw(sim_server, b"\x00\x01garbage\r\n\r\n"))
    assert status == 400 and body["code"] == 400
    status, _ = _status_and_json(_raw(sim_server, b"GET / HTTP/7.0\r\n\r\n"))
    assert status in (400, 505)
    chunked = (b"POST /v1/kernels.KernelsApiService/ListKernels HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    status, body = _status_and_json(_raw(sim_server, chunked))
    assert status == 400 and "chunk" in body["message"]
    deep = b"[" * 100000 + b"]" * 100000
    request = (b"POST /v1/kernels.KernelsApiService/ListKernels HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % len(deep))
    status, body = _status_and_json(_raw(sim_server, request + deep))
    assert status == 400 and "deeper" in body["message"]
    bad_length = b"POST /v1/kernels.KernelsApiService/ListKernels HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
    assert _status_and_json(_raw(sim_server, bad_length))[0] == 400


def test_an_oversize_body_is_refused_from_its_header(sim_server: Any) -> None:
    # 400 MB announced, nothing sent: the answer comes at once, before any of the body is read.
    header = (b"POST /v1/kernels.KernelsApiService/ListKernels HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 400000000\r\n\r\n")
    status, body = _status_and_json(_raw(sim_server, header))
    assert status == 413 and "400000000" in body["message"]
    with sim_server.configured(max_rpc_body_bytes=1000):
        chunk = b"x" * 600
        chunked = (b"POST /v1/kernels.KernelsApiService/ListKernels HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
        assert _status_and_json(_raw(sim_server, chunked))[0] == 413
        # A client that sends the body anyway still reads the refusal, not a reset connection.
        sent = requests.post(f"{sim_server.url}/v1/kernels.KernelsApiService/ListKernels", data=b"{" + b" " * 5000000,
                             auth=_auth(sim_server), headers={"Content-Type": "application/json"})
        assert sent.status_code == 413
    started = _rpc(sim_server, "blobs.BlobApiService/StartBlobUpload",
                   {"type": "DATASET", "name": "four.bin", "contentLength": 4}).json()
    put = (f"PUT {urlsplit(started['createUrl']).path} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
           .encode())
    assert _status_and_json(_raw(sim_server, put))[0] == 413


# --- issue 12: the serve command never prints a key it took from the environment ---


def test_serve_never_prints_a_key_from_the_environment(kaggle_isolation: Path, tmp_path: Path) -> None:
    key = "e" * 32
    env = {**os.environ, "KAGGLE_KEY": key, "KAGGLE_USERNAME": SIM_USER}
    proc = subprocess.Popen([sys.executable, "-m", "kaggle_kit", "sim", "serve", "--port", "0", "--state",
                             str(tmp_path / "state"), "--no-sandbox", "--setting", "max_gpu_sessions=3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("unset NO_PROXY"):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "sim serve ended before printing its exports"
            lines.append(line.strip())
        url = lines[0]
        # The key from the environment is the one it serves with.
        reply = requests.post(f"{url}/v1/kernels.KernelsApiService/ListKernels", json={}, auth=(SIM_USER, key))
        assert reply.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        rest_out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    out = "\n".join(lines) + rest_out
    assert proc.returncode == 0, err
    assert key not in out and key not in err
    assert "KAGGLE_KEY" in out and "not printed" in out
