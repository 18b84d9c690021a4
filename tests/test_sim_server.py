"""The offline Kaggle API stand-in, driven by the real ``kaggle`` CLI (subprocess) and the real Python client."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from _kaggle_folders import SIM_USER, dataset_folder, kernel_folder



def _ok(proc: Any) -> str:
    """The CLI's stdout, after checking it neither failed nor printed an error (it often exits 0 on errors)."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.lower(), proc.stdout
    return proc.stdout


@pytest.mark.slow
def test_cli_dataset_create_version_files_download_delete(kaggle_cli: Any, sim_server: Any, tmp_path: Path) -> None:
    slug = "cli-lifecycle"
    ds = dataset_folder(tmp_path / "ds", slug, {"data.csv": "a,b\n1,2\n", "sub/inner.txt": "inside v1"})
    out = _ok(kaggle_cli("datasets", "create", "-p", str(ds), "--dir-mode", "zip"))
    assert "being created" in out
    assert _ok(kaggle_cli("datasets", "status", f"{SIM_USER}/{slug}")).strip() == "ready"

    # v2: new content, the sub-folder zipped and unpacked by the server, a new file.
    (ds / "data.csv").write_text("a,b\n3,4\n")
    (ds / "sub" / "inner.txt").write_text("inside v2")
    (ds / "new.txt").write_text("only in v2")
    assert "being created" in _ok(kaggle_cli("datasets", "version", "-p", str(ds), "-m", "second",
                                             "--dir-mode", "zip"))

    v1_files = _ok(kaggle_cli("datasets", "files", f"{SIM_USER}/{slug}/1"))
    assert "sub/inner.txt" in v1_files and "new.txt" not in v1_files
    assert f"{SIM_USER}/{slug}" in _ok(kaggle_cli("datasets", "list", "--mine"))

    _ok(kaggle_cli("datasets", "download", f"{SIM_USER}/{slug}", "-p", str(tmp_path / "all")))
    with zipfile.ZipFile(tmp_path / "all" / f"{slug}.zip") as zf:
        assert sorted(zf.namelist()) == ["data.csv", "new.txt", "sub/inner.txt"]
        assert zf.read("sub/inner.txt") == b"inside v2"
    _ok(kaggle_cli("datasets", "download", f"{SIM_USER}/{slug}/1", "-f", "data.csv", "-p", str(tmp_path / "one")))
    assert (tmp_path / "one" / "data.csv").read_text() == "a,b\n1,2\n"

    _ok(kaggle_cli("datasets", "metadata", f"{SIM_USER}/{slug}", "-p", str(tmp_path / "meta")))
    info = json.loads((tmp_path / "meta" / "dataset-metadata.json").read_text())["info"]
    assert info["title"] == "Offline test data" and info["licenses"] == [{"name": "CC0-1.0"}]

    _ok(kaggle_cli("datasets", "delete", f"{SIM_USER}/{slug}", "-y"))
    gone = kaggle_cli("datasets", "status", f"{SIM_USER}/{slug}")
    assert "not found" in gone.stdout + gone.stderr


@pytest.mark.slow
def test_cli_kernels_push_status_pull_list_and_quota(kaggle_cli: Any, sim_server: Any, tmp_path: Path) -> None:
    slug = "cli-kernel-basics"
    folder = kernel_folder(tmp_path / "k", slug, ["x = 1"], dataset_sources=[f"{SIM_USER}/does-not-exist"])
    out = _ok(kaggle_cli("kernels", "push", "-p", str(folder), "--no-run"))
    assert "Kernel version 1 successfully saved" in out
    assert f"{SIM_USER}/does-not-exist" in out  # reported as an invalid source
    assert "NEW_SCRIPT" in _ok(kaggle_cli("kernels", "status", f"{SIM_USER}/{slug}"))

    kernel_folder(folder, slug, ["x = 2"])
    assert "Kernel version 2" in _ok(kaggle_cli("kernels", "push", "-p", str(folder), "--no-run"))
    _ok(kaggle_cli("kernels", "pull", f"{SIM_USER}/{slug}/1", "-p", str(tmp_path / "pull1"), "-m"))
    source = json.loads((tmp_path / "pull1" / f"{slug}.ipynb").read_text())
    assert source["cells"][0]["source"] == "x = 1"
    meta = json.loads((tmp_path / "pull1" / "kernel-metadata.json").read_text())
    assert meta["id"] == f"{SIM_USER}/{slug}" and meta["enable_internet"] is False
    assert f"{SIM_USER}/{slug}" in _ok(kaggle_cli("kernels", "list", "--mine"))

    before = sim_server.quota_used_s
    sim_server.record_gpu_use(5400.0, kernel="test")
    quota = _ok(kaggle_cli("quota"))
    gpu_row = next(line for line in quota.splitlines() if line.startswith("GPU"))
    assert f"{(before + 5400) / 3600:.2f}h" in gpu_row and "30.00h" in gpu_row


@pytest.mark.slow
def test_cli_push_runs_in_sandbox_and_output_downloads(kaggle_cli: Any, sim_server: Any, tmp_path: Path) -> None:
    """The issue's end-to-end: a pushed notebook reads a dataset from /kaggle/input and its output downloads."""
    if sim_server.sandbox is None:
        pytest.skip("kaggle_kit.sim.sandbox is not importable")
    ds_slug, slug = "e2e-input-data", "e2e-reader"
    _ok(kaggle_cli("datasets", "create", "-p", str(dataset_folder(tmp_path / "ds", ds_slug, {"n.txt": "41"}))))
    cells = [
        f"import os\nn = int(open('/kaggle/input/datasets/{SIM_USER}/{ds_slug}/n.txt').read())",
        f"assert not os.path.exists('/kaggle/input/{ds_slug}')",  # one input layout per session: the current one
        "import os\nos.makedirs('/kaggle/working/sub', exist_ok=True)\n"
        "open('/kaggle/working/sub/answer.txt', 'w').write(str(n + 1))\n"
        "print('gpu', os.environ['KAGGLE_KIT_SIM_ACCELERATOR'])",
    ]
    folder = kernel_folder(tmp_path / "k", slug, cells, dataset_sources=[f"{SIM_USER}/{ds_slug}"], enable_gpu=True)
    quota_before = sim_server.quota_used_s
    _ok(kaggle_cli("kernels", "push", "-p", str(folder)))
    assert sim_server.wait_for_sessions(timeout=240)
    status = _ok(kaggle_cli("kernels", "status", f"{SIM_USER}/{slug}"))
    assert "COMPLETE" in status, status
    _ok(kaggle_cli("kernels", "output", f"{SIM_USER}/{slug}", "-p", str(tmp_path / "out")))
    assert (tmp_path / "out" / "sub" / "answer.txt").read_text() == "42"
    assert "gpu T4x2" in (tmp_path / "out" / f"{slug}.log").read_text()
    assert sim_server.quota_used_s > quota_before

    # A second kernel reads the first one's output and a competition's files, then fails: ERROR, output kept.
    competition = sim_server.competitions_dir / "offline-comp"
    competition.mkdir(parents=True, exist_ok=True)
    (competition / "train.csv").write_text("id\n7\n")
    cells = [
        f"a = open('/kaggle/input/notebooks/{SIM_USER}/{slug}/sub/answer.txt').read()",
        "b = open('/kaggle/input/competitions/offline-comp/train.csv').read().split()[1]",
        "open('/kaggle/working/combined.txt', 'w').write(a + b)",
        "raise ValueError('boom')",
    ]
    second = kernel_folder(tmp_path / "k2", "e2e-follower", cells, kernel_sources=[f"{SIM_USER}/{slug}"],
                            competition_sources=["offline-comp"])
    _ok(kaggle_cli("kernels", "push", "-p", str(second)))
    assert sim_server.wait_for_sessions(timeout=240)
    status = kaggle_cli("kernels", "status", f"{SIM_USER}/e2e-follower").stdout
    assert "ERROR" in status and "boom" in status
    _ok(kaggle_cli("kernels", "output", f"{SIM_USER}/e2e-follower", "-p", str(tmp_path / "out2")))
    assert (tmp_path / "out2" / "combined.txt").read_text() == "427"


def test_python_client_datasets_and_kernels(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    slug = "py-client-data"
    ds = dataset_folder(tmp_path / "ds", slug, {"a.txt": "one"})
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    assert "already in use" in api.dataset_create_new(str(ds), quiet=True).error
    (ds / "a.txt").write_text("two")
    assert api.dataset_create_version(str(ds), "v2", quiet=True).status == "ok"
    assert api.dataset_status(f"{SIM_USER}/{slug}") == "ready"
    got = api.dataset_status(f"{SIM_USER}/{slug}", format="json(current_version_number)")
    assert json.loads(got) == {"current_version_number": 2}
    names = [f.name for f in api.dataset_list_files(f"{SIM_USER}/{slug}/1").files]
    assert names == ["a.txt"]
    assert f"{SIM_USER}/{slug}" in [d.ref for d in api.dataset_list(mine=True)]
    api.dataset_download_file(f"{SIM_USER}/{slug}/1", "a.txt", path=str(tmp_path / "v1"), quiet=True)
    api.dataset_download_file(f"{SIM_USER}/{slug}", "a.txt", path=str(tmp_path / "v2"), quiet=True)
    assert (tmp_path / "v1" / "a.txt").read_text() == "one"
    assert (tmp_path / "v2" / "a.txt").read_text() == "two"
    api.dataset_download_files(f"{SIM_USER}/{slug}", path=str(tmp_path / "all"), quiet=True, unzip=True)
    assert (tmp_path / "all" / "a.txt").read_text() == "two"

    kslug = "py-client-kernel"
    folder = kernel_folder(tmp_path / "k", kslug, ["print('hi')"])
    reply = api.kernels_push(str(folder), no_run=True)
    assert reply.version_number == 1 and not reply.error
    assert api.kernels_status(f"{SIM_USER}/{kslug}").status.name == "NEW_SCRIPT"
    kernel_folder(folder, kslug, ["print('again')"])
    assert api.kernels_push(str(folder), no_run=True).version_number == 2
    assert "print('again')" in Path(api.kernels_pull(f"{SIM_USER}/{kslug}", str(tmp_path / "v2"))).read_text()
    assert "print('hi')" in Path(api.kernels_pull(f"{SIM_USER}/{kslug}/1", str(tmp_path / "v1"))).read_text()
    assert f"{SIM_USER}/{kslug}" in [k.ref for k in api.kernels_list(mine=True)]
    quota = api.quota_view()
    assert quota.gpu_quota.total_time_allowed.total_seconds() == 30 * 3600


def test_dataset_version_while_processing_is_refused(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api, point_client_at, Credentials
    from kaggle_kit.sim.server import SimServer
    from requests import HTTPError

    with SimServer(tmp_path / "state", username=SIM_USER, key="k" * 32, processing_seconds=3600) as server:
        point_client_at(server.url)
        api = make_api(Credentials(username=SIM_USER, key="k" * 32, token=None, source="test"))
        ds = dataset_folder(tmp_path / "ds", "slow-processing", {"a.txt": "one"})
        assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
        assert api.dataset_status(f"{SIM_USER}/slow-processing") == "blobs_received"
        with pytest.raises(HTTPError) as refused:
            api.dataset_create_version(str(ds), "too soon", quiet=True)
        assert refused.value.response.status_code == 403
        # Processing ends: the version goes through.
        for version in server.store.data["datasets"][f"{SIM_USER}/slow-processing"]["versions"]:
            version["ready_at"] = 0.0
        assert api.dataset_status(f"{SIM_USER}/slow-processing") == "ready"
        assert api.dataset_create_version(str(ds), "now", quiet=True).status == "ok"


def test_push_without_sandbox_stays_queued_and_state_survives_restart(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import Credentials, make_api, point_client_at
    from kaggle_kit.sim.server import SimServer

    creds = Credentials(username=SIM_USER, key="k" * 32, token=None, source="test")
    state = tmp_path / "state"
    with SimServer(state, username=SIM_USER, key="k" * 32) as server:
        point_client_at(server.url)
        api = make_api(creds)
        assert api.dataset_create_new(str(dataset_folder(tmp_path / "ds", "kept-data", {"a.txt": "1"})),
                                      quiet=True).status == "ok"
        api.kernels_push(str(kernel_folder(tmp_path / "k", "kept-kernel", ["1"])))
        assert api.kernels_status(f"{SIM_USER}/kept-kernel").status.name == "QUEUED"
        api.kernels_push(str(kernel_folder(tmp_path / "k2", "cut-off-kernel", ["1"])))
        with server.store.lock:  # as if the server died while this session ran
            server.store.data["kernels"][f"{SIM_USER}/cut-off-kernel"]["versions"][-1]["status"] = "RUNNING"
            server.store.save()
        server.record_gpu_use(120.0)
    with SimServer(state, username=SIM_USER, key="k" * 32) as server:
        point_client_at(server.url)
        api = make_api(creds)
        assert api.dataset_status(f"{SIM_USER}/kept-data") == "ready"
        assert [f.name for f in api.dataset_list_files(f"{SIM_USER}/kept-data").files] == ["a.txt"]
        assert api.kernels_status(f"{SIM_USER}/kept-kernel").status.name == "QUEUED"
        lost = api.kernels_status(f"{SIM_USER}/cut-off-kernel")
        assert lost.status.name == "ERROR" and "lost" in lost.failure_message
        assert server.quota_used_s == pytest.approx(120.0)


def _basic(server: Any) -> tuple[str, str]:
    return (server.username, server._key)


def test_auth_refusal_bearer_and_introspection(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.sim.server import SimServer

    with SimServer(tmp_path / "state", username=SIM_USER, key="k" * 32, token="tok-123") as server:
        url = f"{server.url}/api/v1/datasets.DatasetApiService/ListDatasets"
        for auth in (None, (SIM_USER, "wrong"), ("mallory", "k" * 32)):
            reply = requests.post(url, json={}, auth=auth)
            assert reply.status_code == 401 and reply.json()["code"] == 401
        assert requests.post(url, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert requests.post(url, json={}, headers={"Authorization": "Bearer tok-123"}).status_code == 200
        assert requests.post(url, json={}, auth=(SIM_USER, "k" * 32)).status_code == 200
        introspect = f"{server.url}/v1/security.OAuthService/IntrospectToken"
        assert requests.post(introspect, json={"token": "tok-123"}).json() == {
            "active": True, "username": SIM_USER, "clientId": "kaggle-kit-sim", "userId": 1}
        assert requests.post(introspect, json={"token": "nope"}).json() == {"active": False}
        missing = requests.post(f"{server.url}/v1/datasets.DatasetApiService/Nope", json={}, auth=(SIM_USER, "k" * 32))
        assert missing.status_code == 404 and "Nope" in missing.json()["message"]
        # The real CLI with an access token: introspected, then sent as Bearer.
        env = server.client_env()
        del env["KAGGLE_USERNAME"], env["KAGGLE_KEY"]
        env["KAGGLE_API_TOKEN"] = "tok-123"
        proc = subprocess.run([sys.executable, "-m", "kaggle", "datasets", "list", "--mine"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert "No datasets found" in proc.stdout, proc.stdout + proc.stderr
        assert [p for _, p, s in server.request_log][-2:] == ["/v1/security.OAuthService/IntrospectToken",
                                                               "/v1/datasets.DatasetApiService/ListDatasets"]


def test_rpcs_come_from_the_areas_each_declared_once(kaggle_isolation: Path, tmp_path: Path) -> None:
    from kaggle_kit.sim.rpc import rpc, rpc_table
    from kaggle_kit.sim.server import SimServer

    class Shadow:
        @rpc("datasets.DatasetApiService/GetDataset")
        def get_dataset(self, body: dict[str, Any], user: str) -> dict[str, Any]:
            return {"shadow": user}

    with SimServer(tmp_path / "state", username=SIM_USER, key="k" * 32) as server:
        assert len(server.rpc_names) == 26
        assert {"blobs.BlobApiService/StartBlobUpload", "datasets.DatasetApiService/CreateDataset",
                "kernels.KernelsApiService/SaveKernel", "kernels.KernelsApiService/GetAcceleratorQuotaStatistics",
                "security.OAuthService/IntrospectToken"} <= set(server.rpc_names)
        with pytest.raises(ValueError, match="GetDataset is declared by both Datasets.get_dataset and Shadow"):
            rpc_table(server.datasets, Shadow())
        assert rpc_table(Shadow())["datasets.DatasetApiService/GetDataset"].handler({}, "u") == {"shadow": "u"}
        # Credentials are checked before the method is looked up: an unknown RPC without them is a 401.
        anonymous = requests.post(f"{server.url}/v1/datasets.DatasetApiService/Nope", json={})
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises(ValueError, match="not <package.Service>/<Method>"):
        rpc("GetDataset")


def test_cli_with_wrong_key_is_refused(kaggle_cli: Any) -> None:
    proc = kaggle_cli("datasets", "list", "--mine", env={"KAGGLE_KEY": "0" * 32})
    assert "Authentication required" in proc.stdout + proc.stderr


def test_blobs_honour_range_etag_and_last_modified(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    ds = dataset_folder(tmp_path / "ds", "range-data", {"digits.txt": "0123456789"})
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    redirect = requests.post(f"{sim_server.url}/v1/datasets.DatasetApiService/DownloadDataset",
                             json={"ownerSlug": SIM_USER, "datasetSlug": "range-data", "fileName": "digits.txt"},
                             auth=_basic(sim_server), allow_redirects=False)
    assert redirect.status_code == 302
    blob = redirect.headers["Location"]
    assert urlsplit(blob).path.endswith("/digits.txt")
    full = requests.get(blob)
    assert full.content == b"0123456789" and full.headers["Content-Type"] == "application/octet-stream"
    assert full.headers["Content-Length"] == "10" and full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Last-Modified"].endswith("GMT")
    etag = full.headers["ETag"]
    part = requests.get(blob, headers={"Range": "bytes=3-5"})
    assert part.status_code == 206 and part.content == b"345"
    assert part.headers["Content-Range"] == "bytes 3-5/10"
    assert requests.get(blob, headers={"Range": "bytes=-2"}).content == b"89"
    assert requests.get(blob, headers={"Range": "bytes=4-", "If-Range": etag}).content == b"456789"
    stale = requests.get(blob, headers={"Range": "bytes=4-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == b"0123456789"
    assert requests.get(blob, headers={"Range": "bytes=20-"}).status_code == 416
    assert requests.get(blob, headers={"If-None-Match": etag}).status_code == 304
    head = requests.head(blob)
    assert head.status_code == 200 and head.headers["Content-Length"] == "10" and not head.content


def test_upload_put_semantics_probe_resume_and_expiry(sim_server: Any) -> None:
    auth = _basic(sim_server)
    start = requests.post(f"{sim_server.url}/v1/blobs.BlobApiService/StartBlobUpload", auth=auth,
                          json={"type": "DATASET", "name": "f.bin", "contentLength": 10})
    url = start.json()["createUrl"]
    probe = {"Content-Range": "bytes */10", "Content-Length": "0"}
    first = requests.put(url, data=b"")
    assert first.status_code == 308 and "Range" not in first.headers
    assert requests.put(url, data=b"abcd", headers={"Content-Range": "bytes 0-3/10"}).status_code == 308
    resumed = requests.put(url, headers=probe)
    assert resumed.status_code == 308 and resumed.headers["Range"] == "bytes=0-3"
    assert requests.put(url, data=b"x", headers={"Content-Range": "bytes 7-9/10"}).status_code == 400
    assert requests.put(url, data=b"efghij", headers={"Content-Range": "bytes 4-9/10"}).status_code == 200
    assert requests.put(url, headers=probe).status_code == 200
    token = start.json()["token"]
    assert sim_server.store.blob_path(sim_server.store.data["uploads"][token]["blob"]).read_bytes() == b"abcdefghij"

    expired = requests.post(f"{sim_server.url}/v1/blobs.BlobApiService/StartBlobUpload", auth=auth,
                            json={"type": "DATASET", "name": "g.bin", "contentLength": 4}).json()
    sim_server.store.data["uploads"][expired["token"]]["created"] -= sim_server.upload_ttl_s + 1
    assert requests.put(expired["createUrl"], headers={"Content-Range": "bytes */4"}).status_code == 404
    assert requests.put(expired["createUrl"], data=b"1234").status_code == 404


def test_429_on_start_blob_upload_is_retried_after_retry_after(sim_server: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    # Retry-After carries whole seconds (a fraction would be an invalid header): 0.3 is sent as 1.
    sim_server.inject_fault("429", count=1, match="StartBlobUpload", retry_after=0.3)
    ds = dataset_folder(tmp_path / "ds", "rate-limited", {"a.txt": "1"})
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    assert capsys.readouterr().err.count("Will retry in 1.0 seconds") == 1
    statuses = [s for m, p, s in sim_server.request_log if p.endswith("StartBlobUpload")][-2:]
    assert statuses == [429, 200]


def test_500_surfaces_as_an_error(sim_server: Any, kaggle_cli: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api
    from requests import HTTPError

    api = make_api()
    sim_server.inject_fault("500", match="ListDatasets")
    with pytest.raises(HTTPError) as failed:
        api.dataset_list(mine=True)
    assert failed.value.response.status_code == 500
    sim_server.inject_fault("503", match="GetKernel")
    proc = kaggle_cli("kernels", "pull", f"{SIM_USER}/anything", "-p", str(tmp_path / "p"))
    assert "503" in proc.stdout + proc.stderr or "unavailable" in (proc.stdout + proc.stderr).lower()


def test_dropped_connection_is_retried_on_create_and_surfaces_elsewhere(sim_server: Any, tmp_path: Path) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    sim_server.inject_fault("drop", match="CreateDataset")
    ds = dataset_folder(tmp_path / "ds", "dropped-once", {"a.txt": "1"})
    logged = len(sim_server.request_log)
    assert api.dataset_create_new(str(ds), quiet=True).status == "ok"
    # One dropped, one answered; the server's threads log them in whichever order they finish.
    creates = [s for m, p, s in list(sim_server.request_log)[logged:] if p.endswith("/CreateDataset")]
    assert sorted(creates) == [0, 200]
    sim_server.inject_fault("drop", match="ListDatasetFiles")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.dataset_list_files(f"{SIM_USER}/dropped-once")


def test_slow_reply_still_answers(sim_server: Any) -> None:
    import time

    sim_server.inject_fault("slow", match="ListKernels", delay=0.4)
    began = time.monotonic()
    reply = requests.post(f"{sim_server.url}/v1/kernels.KernelsApiService/ListKernels", json={},
                          auth=_basic(sim_server))
    assert reply.status_code == 200 and "kernels" in reply.json()
    assert time.monotonic() - began >= 0.4


def test_cut_upload_resumes_through_the_308_probe(sim_server: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from kaggle_kit.kaggle_api import make_api

    api = make_api()
    payload = bytes(range(256)) * 400
    ds = dataset_folder(tmp_path / "ds", "cut-upload", {})
    (ds / "big.bin").write_bytes(payload)
    # The first PUT is cut mid-body; urllib3's own retry of it meets a 503, so the client probes and resumes.
    sim_server.inject_fault("cut_upload", match="/_sim/upload/")
    sim_server.inject_fault("503", match="/_sim/upload/")
    logged = len(sim_server.request_log)
    assert api.dataset_create_new(str(ds), quiet=False).status == "ok"
    # The cut PUT is logged when its server thread ends, which may come after the retry's: only the rest is ordered.
    puts = [s for m, p, s in list(sim_server.request_log)[logged:] if m == "PUT"]
    assert sorted(puts) == [0, 200, 308, 503] and [s for s in puts if s] == [503, 308, 200], puts
    half = len(payload) // 2
    assert f"Already uploaded {half - 1} bytes. Will resume upload at {half}." in capsys.readouterr().out
    # Over the zip threshold: the file arrives as big.bin.zip, which the client unwraps when asked.
    api.dataset_download_file(f"{SIM_USER}/cut-upload", "big.bin", path=str(tmp_path / "dl"), quiet=True,
                              unzip=True)
    assert (tmp_path / "dl" / "big.bin").read_bytes() == payload


def test_fault_control_endpoint_needs_credentials(sim_server: Any) -> None:
    url = f"{sim_server.url}/_sim/faults"
    assert requests.post(url, json={"kind": "500"}).status_code == 401
    armed = requests.post(url, json={"kind": "500", "match": "GetDatasetStatus", "count": 2}, auth=_basic(sim_server))
    assert armed.status_code == 200 and armed.json()["faults"][0]["count"] == 2
    assert requests.post(url, json={"kind": "teapot"}, auth=_basic(sim_server)).status_code == 400
    status = f"{sim_server.url}/v1/datasets.DatasetApiService/GetDatasetStatus"
    body = {"ownerSlug": SIM_USER, "datasetSlug": "whatever"}
    assert [requests.post(status, json=body, auth=_basic(sim_server)).status_code for _ in range(3)] == [500, 500, 404]
    assert requests.delete(url, auth=_basic(sim_server)).json() == {"faults": []}


def test_fault_specs_parse_and_reject_bad_input() -> None:
    from kaggle_kit.errors import ConfigError
    from kaggle_kit.sim.faults import parse_fault_spec

    fault = parse_fault_spec("429,count=3,match=StartBlobUpload,retry_after=1.5")
    assert (fault.kind, fault.count, fault.match, fault.retry_after) == ("429", 3, "StartBlobUpload", 1.5)
    for bad in ("418", "500,count=0", "slow,delay=-1", "drop,colour=red", "500,count=many"):
        with pytest.raises(ConfigError):
            parse_fault_spec(bad)


def test_server_refuses_non_loopback_and_bad_credentials(tmp_path: Path) -> None:
    from kaggle_kit.errors import ConfigError
    from kaggle_kit.sim.server import SimServer

    with pytest.raises(ConfigError, match="loopback"):
        SimServer(tmp_path, username=SIM_USER, key="k", host="0.0.0.0")
    with pytest.raises(ConfigError, match="key"):
        SimServer(tmp_path, username=SIM_USER, key="")


def test_serve_command_prints_url_first_serves_and_stops_on_sigterm(kaggle_isolation: Path, tmp_path: Path) -> None:
    import signal

    key = "f" * 32
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaggle_kit", "sim", "serve", "--port", "0", "--state", str(tmp_path / "state"),
         "--user", SIM_USER, "--key", key, "--no-sandbox", "--fault", "500,match=ListDatasets"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
        endpoint = f"{url}/api/v1/datasets.DatasetApiService/ListDatasets"
        assert requests.post(endpoint, json={}, auth=(SIM_USER, key)).status_code == 500  # the --fault
        assert requests.post(endpoint, json={}, auth=(SIM_USER, key)).json() == {"datasets": [], "nextPageToken": ""}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        # Not communicate(): it would skip what readline() already buffered.
        out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 0, err
    assert f"export HTTP_PROXY={url}" in out and "export KAGGLE_API_ENVIRONMENT=LOCALHOST" in out
    assert "ListDatasets 500" in err and key not in err


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    from kaggle_kit.errors import ConfigError
    from kaggle_kit.sim.server import SimServer

    with SimServer(tmp_path / "a", username=SIM_USER, key="k") as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            SimServer(tmp_path / "b", username=SIM_USER, key="k", port=port).start()
