"""DatasetMirror against the offline Kaggle stand-in, through the real kaggle client."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.errors import CredentialError, MirrorError
from kaggle_kit.mirror import DatasetMirror


def _mirror(handle: str, **kwargs: object) -> DatasetMirror:
    options = {"poll_interval_s": 0.05, "backoff_s": 0.05, "max_backoff_s": 0.5, **kwargs}
    return DatasetMirror(handle, **options)  # type: ignore[arg-type]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _api() -> object:
    from kaggle_kit.kaggle_api import make_api

    return make_api()


def _files(handle: str, version: int | None = None) -> dict[str, int]:
    ref = f"{handle}/{version}" if version else handle
    response = _api().dataset_list_files(ref, page_size=100)
    return {f.name: int(f.total_bytes) for f in response.dataset_files}


def _dataset(handle: str) -> object:
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    owner, slug = handle.split("/")
    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    with _api().build_kaggle_client() as kaggle:
        return kaggle.datasets.dataset_api_client.get_dataset(request)


def test_without_credentials_mirroring_is_reported_off_at_construction(
    kaggle_isolation: Path, kaggle_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(RuntimeWarning, match=r"mirroring to the Kaggle Dataset alice/run-ckpts is OFF: no Kaggle "):
        mirror = _mirror("alice/run-ckpts")
    assert "Batch run" in capsys.readouterr().err
    assert not mirror.enabled
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror)
    ck.save(step=1, model=_model())
    assert ck.flush(timeout=1) and len(ck.checkpoints()) == 1


def test_without_internet_mirroring_is_reported_off(
    kaggle_isolation: Path, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", secrets.token_hex(16))
    monkeypatch.setenv("KAGGLE_KIT_API_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.warns(RuntimeWarning, match=r"OFF: no internet: cannot reach 127\.0\.0\.1:9"):
        mirror = _mirror("alice/run-ckpts")
    assert not mirror.enabled and mirror.remote_pointer() is None


def test_a_kaggle_json_under_the_working_folder_is_refused(
    kaggle_isolation: Path, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kaggle_root / "working" / ".kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "alice", "key": secrets.token_hex(16)}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    with pytest.raises(CredentialError, match="inside .*working"):
        _mirror("alice/run-ckpts", check_connection=False)


def test_bad_handle_and_foreign_owner_are_refused(sim_server: object, kaggle_root: Path) -> None:
    with pytest.raises(MirrorError, match="Kaggle allows 6 to 50"):
        _mirror("alice/ckpt")
    with pytest.raises(MirrorError, match="form owner/slug"):
        _mirror("alice-run-checkpoints")
    with pytest.raises(MirrorError, match="belongs to bob"):
        _mirror("bob/run-checkpoints")


def test_key_in_the_state_is_never_written(sim_server: object, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    import os

    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=_mirror("alice/leak-check"))
    with pytest.raises(CredentialError, match="API key"):
        ck.save(step=1, extra={"note": os.environ["KAGGLE_KEY"]})
    assert ck.checkpoints() == []


def test_versions_carry_latest_best_pointer_and_ledger(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-basic"
    mirror = _mirror(handle)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror, keep=1, monitor="val", mode="max")
    model = _model()
    for step, val in [(10, 0.5), (20, 0.9), (30, 0.7)]:
        ck.save(step=step, epoch=step // 10, model=model, metrics={"val": val})
        assert ck.flush(timeout=60), mirror.status()
    dataset = _dataset(handle)
    assert dataset.is_private and dataset.current_version_number == 3
    # Each version holds all a resume needs, so the ones before it are deleted as it is created.
    assert [v.version_number for v in dataset.versions] == [3]
    assert dataset.versions[0].version_notes == "step 30 epoch 3 val 0.7"
    files = _files(handle)
    assert set(files) == {
        "latest.json", "ledger.json",
        *(f"step-00000000{s}{ext}" for s in (20, 30) for ext in (".pt", ".json", ".manifest.json")),
    }
    local = {p.name: p.stat().st_size for p in (kaggle_root / "working" / "ck").iterdir()}
    assert all(files[name] == size for name, size in local.items())
    pointer = mirror.remote_pointer()
    assert pointer["latest"] == "step-0000000030" and pointer["best"] == "step-0000000020"
    assert pointer["version"] == 3 and pointer["run_id"] == "dataset:alice/mirror-basic" == ck.run_id
    assert pointer["checkpoints"] == ["step-0000000030", "step-0000000020"]
    (session,) = mirror.ledger()
    assert session["first_step"] == 10 and session["last_step"] == 30 and session["versions"] == 3
    # Nothing staged is left behind, and nothing was staged under the working folder.
    assert not any((kaggle_root / "temp" / "kaggle-kit-mirror").rglob("*.pt"))


def test_local_checkpoints_go_only_after_the_upload_is_confirmed(sim_server: object, kaggle_root: Path) -> None:
    # Uploads are refused (and retried) until the test lifts the fault: step 1 stays in flight however slow the test.
    sim_server.inject_fault("429", match="StartBlobUpload", for_s=3600)  # type: ignore[attr-defined]
    mirror = _mirror("alice/mirror-retention", max_attempts=200)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror, keep=1)
    model = _model()
    ck.save(step=1, model=model)
    ck.save(step=2, model=model)
    # keep=1, but step 1 is not in the dataset yet (its upload is in flight): it must stay.
    assert [i.step for i in ck.checkpoints()] == [2, 1]
    sim_server.clear_faults()  # type: ignore[attr-defined]
    assert ck.flush(timeout=60)
    assert [i.step for i in ck.checkpoints()] == [2]


def test_a_newer_checkpoint_replaces_a_waiting_one(sim_server: object, kaggle_root: Path) -> None:
    # The first upload is held (refused and retried) until every save is done, however slow the machine.
    sim_server.inject_fault("429", match="StartBlobUpload", for_s=3600)  # type: ignore[attr-defined]
    handle = "alice/mirror-coalesce"
    mirror = _mirror(handle, max_attempts=200)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror, keep=5)
    model = _model()
    for step in range(1, 6):
        ck.save(step=step, model=model)
    sim_server.clear_faults()  # type: ignore[attr-defined]
    assert ck.flush(timeout=60)
    status = mirror.status()
    assert status["skipped"] >= 2 and status["uploads"] <= 3
    assert _dataset(handle).current_version_number == status["uploads"]
    assert mirror.confirmed().latest_step == 5 and "step-0000000005.pt" in _files(handle)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("429", "CreateDatasetVersion"),
        ("500", "StartBlobUpload"),
        ("503", "GetDataset"),
        ("drop", "/_sim/upload/"),
        ("drop", "ListDatasetFiles"),
        ("cut_upload", None),
    ],
)
def test_api_faults_are_retried_and_the_mirror_catches_up(
    kind: str, match: str | None, sim_server: object, kaggle_root: Path
) -> None:
    handle = "alice/" + re.sub(r"[^a-z0-9]+", "-", f"faults-{kind}-{match or 'any'}".lower()).strip("-")[:50]
    mirror = _mirror(handle)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror)
    model = _model()
    ck.save(step=1, model=model)
    assert ck.flush(timeout=60)
    sim_server.inject_fault(kind, count=2, match=match, retry_after=0.2)  # type: ignore[attr-defined]
    ck.save(step=2, model=model)  # returns at once: training never waits on the network
    assert ck.flush(timeout=120), mirror.status()
    assert not sim_server.pending_faults, "the fault never fired"  # type: ignore[attr-defined]
    assert mirror.confirmed().latest_step == 2 and "step-0000000002.pt" in _files(handle)


def _until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("mode", "retry_after"),
    [("a Retry-After that lies by an hour", 3600), ("a Retry-After that lies by a little", 1),
     ("no Retry-After at all", "none")],
)
def test_persistent_429s_leave_training_alone_and_the_mirror_catches_up(
    mode: str, retry_after: object, sim_server: object, kaggle_root: Path
) -> None:
    handle = "alice/rate-limited-" + re.sub(r"[^a-z]+", "-", mode)[:30].strip("-")
    mirror = _mirror(handle, max_attempts=200)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror)
    model = _model()
    ck.save(step=1, model=model)
    assert ck.flush(timeout=60)
    log = sim_server.request_log  # type: ignore[attr-defined]
    seen = len(log)
    # Kaggle's rate limit, persisting whatever the Retry-After promised, until the test lifts it.
    sim_server.inject_fault("429", match="GetDataset", retry_after=retry_after, for_s=3600)  # type: ignore[attr-defined]
    ck.save(step=2, model=model)
    assert sim_server.pending_faults, "save waited for the network"  # type: ignore[attr-defined]
    _until(lambda: sum(1 for _, path, code in list(log)[seen:] if code == 429) >= 3, f"three 429s ({mode})")
    sim_server.clear_faults()  # type: ignore[attr-defined]
    assert ck.flush(timeout=60), mirror.status()
    assert mirror.confirmed().latest_step == 2 and "step-0000000002.pt" in _files(handle)


@pytest.mark.parametrize("refusal", [409, 404])
def test_a_new_version_refused_while_it_processes_is_waited_out_by_status(
    refusal: int, sim_server: object, kaggle_root: Path
) -> None:
    handle = f"alice/processing-window-{refusal}"
    log = sim_server.request_log  # type: ignore[attr-defined]
    seen = len(log)
    # The files of a new version are refused for a while after it is READY (users report 404 for seconds); here
    # until the mirror has met the refusal, however long that takes on this machine.
    with sim_server.configured(files_delay_s=3600, files_refusal_status=refusal):  # type: ignore[attr-defined]
        mirror = _mirror(handle, max_attempts=200)
        ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror)
        ck.save(step=1, model=_model())
        _until(lambda: any(code == refusal for _, path, code in list(log)[seen:] if path.endswith("/ListDatasetFiles")),
               f"the stand-in to refuse the listing with {refusal}")
    assert ck.flush(timeout=60), mirror.status()
    assert mirror.confirmed().latest_step == 1 and mirror.status()["last_error"] is None


def test_403_while_the_previous_version_processes_is_waited_out(
    kaggle_isolation: Path, kaggle_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kaggle_kit.kaggle_api import point_client_at
    from kaggle_kit.sim.server import SimServer

    key = secrets.token_hex(16)
    with SimServer(tmp_path / "state", username="alice", key=key, processing_seconds=1.5) as server:
        monkeypatch.setenv("KAGGLE_USERNAME", "alice")
        monkeypatch.setenv("KAGGLE_KEY", key)
        monkeypatch.setenv("KAGGLE_KIT_API_ENDPOINT", server.url)
        point_client_at(server.url)
        handle = "alice/processing-wait"
        mirror = _mirror(handle)
        ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror)
        ck.save(step=1, model=_model())
        assert ck.flush(timeout=60)
        # Another writer adds a version; ours comes while that one is still processing.
        other = tmp_path / "other"
        other.mkdir()
        (other / "note.txt").write_text("from another session")
        (other / "dataset-metadata.json").write_text(json.dumps({"id": handle, "title": "x", "licenses": []}))
        _api().dataset_create_version(str(other), "other writer", quiet=True, convert_to_csv=False)
        ck.save(step=2, model=_model())
        assert ck.flush(timeout=60), mirror.status()
        refused = [entry for entry in server.request_log if "CreateDatasetVersion" in entry[1] and entry[2] == 403]
        assert refused, "the stand-in never answered 403: the test did not exercise the wait"
        assert mirror.confirmed().latest_step == 2


def test_resume_from_the_mirror_after_the_working_folder_is_wiped(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-resume"
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    work = kaggle_root / "working" / "ck"
    ck = Checkpointer(work, mirror=_mirror(handle), monitor="val")
    ck.save(step=5, model=model, optimizer=opt, metrics={"val": 0.1}, data_state={"position": 3})
    ck.save(step=6, model=model, optimizer=opt, metrics={"val": 0.2}, data_state={"position": 4})
    assert ck.flush(timeout=60)
    shutil.rmtree(work)

    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    mirror = _mirror(handle)
    restored = Checkpointer(work, mirror=mirror, monitor="val").restore(model=fresh, optimizer=fresh_opt)
    assert restored is not None and restored.source == "mirror" and restored.step == 6
    assert restored.data_state == {"position": 4} and restored.best_metric == 0.1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    # The restored checkpoint and the best are local again, and the earlier session is in the ledger.
    assert sorted(p.name for p in work.glob("*.manifest.json")) == [
        "step-0000000005.manifest.json", "step-0000000006.manifest.json"]
    assert len(mirror.ledger()) == 1


def test_resume_prefers_the_attached_dataset_and_skips_a_corrupt_mirror_copy(
    sim_server: object, kaggle_root: Path, tmp_path: Path
) -> None:
    handle = "alice/mirror-corrupt"
    work = kaggle_root / "working" / "ck"
    ck = Checkpointer(work, mirror=_mirror(handle), monitor="val")
    model = _model()
    ck.save(step=1, model=model, metrics={"val": 0.1})
    ck.save(step=2, model=model, metrics={"val": 0.5})
    assert ck.flush(timeout=60)
    # A version whose newest checkpoint is truncated but whose manifest still claims the full size.
    version = tmp_path / "tampered"
    shutil.copytree(work, version)
    pt = version / "step-0000000002.pt"
    pt.write_bytes(pt.read_bytes()[:200])
    for name in ("latest.json", "ledger.json"):
        (version / name).write_text(json.dumps({"format": "x", "latest": "step-0000000002",
                                                 "best": "step-0000000001", "step": 2, "sessions": []}))
    (version / "dataset-metadata.json").write_text(json.dumps({"id": handle, "title": "x", "licenses": []}))
    _api().dataset_create_version(str(version), "tampered", quiet=True, convert_to_csv=False)
    shutil.rmtree(work)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = Checkpointer(work, mirror=_mirror(handle), monitor="val").restore(model=_model())
    assert restored is not None and restored.step == 1 and restored.source == "mirror"
    assert any("step-0000000002" in str(w.message) and "bytes" in str(w.message) for w in caught)
    # Attached as input (the version the notebook was saved with): no download needed.
    attached = kaggle_root / "input" / "datasets" / "alice" / "mirror-corrupt"
    shutil.copytree(version, attached)
    shutil.rmtree(work)
    with pytest.warns(UserWarning, match=r"step-0000000002\.pt: 200 bytes"):
        restored = Checkpointer(work, mirror=_mirror(handle), monitor="val").restore(model=_model())
    assert restored is not None and restored.step == 1 and restored.source == "input"


def _version_bytes(handle: str) -> int:
    return sum(_files(handle).values())


def test_the_dataset_keeps_one_version_with_the_newest_k_and_the_best(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-bounded"
    mirror = _mirror(handle, keep=2)
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=mirror, keep=3, monitor="val", mode="max")
    model = _model()
    sizes = []
    for step, val in [(1, 0.1), (2, 0.9), (3, 0.2), (4, 0.3), (5, 0.4), (6, 0.5)]:
        ck.save(step=step, model=model, metrics={"val": val})
        assert ck.flush(timeout=60), mirror.status()
        sizes.append(_version_bytes(handle))
    dataset = _dataset(handle)
    assert dataset.current_version_number == 6 and len(dataset.versions) == 1, "old versions must be deleted"
    names = {n for n in _files(handle) if n.endswith(".manifest.json")}
    assert names == {f"step-000000000{s}.manifest.json" for s in (6, 5, 2)}, "the newest two and the best"
    # From step 4 on a version holds three checkpoints (two newest, the best), and stays that size.
    assert max(sizes[3:]) - min(sizes[3:]) <= 64, f"a version's size must not grow with the run: {sizes}"


def test_without_deleting_old_versions_every_version_stays(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-keep-all"
    ck = Checkpointer(kaggle_root / "working" / "ck", mirror=_mirror(handle, delete_old_versions=False))
    for step in (1, 2, 3):
        ck.save(step=step, model=_model())
        assert ck.flush(timeout=60)
    assert len(_dataset(handle).versions) == 3


def test_restore_waits_for_the_only_version_while_it_processes(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-processing"
    work = kaggle_root / "working" / "ck"
    ck = Checkpointer(work, mirror=_mirror(handle))
    ck.save(step=1, model=_model())
    assert ck.flush(timeout=60)
    sim_server.datasets.processing_seconds = 1.5  # type: ignore[attr-defined]
    try:
        ck.save(step=2, model=_model())  # uploaded with deleteOldVersions: the dataset's only version processes
        deadline = time.monotonic() + 30
        while _dataset(handle).current_version_number < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert str(_api().dataset_status(handle)).lower() != "ready", "the test must catch the version processing"
        shutil.rmtree(work)
        restored = Checkpointer(work, mirror=_mirror(handle)).restore(model=_model())
    finally:
        sim_server.datasets.processing_seconds = 0.0  # type: ignore[attr-defined]
    assert restored is not None and restored.step == 2 and restored.source == "mirror"


@pytest.mark.parametrize("how", ["deep", "missing"])
def test_a_broken_pointer_falls_back_to_the_version_file_list(
    how: str, sim_server: object, kaggle_root: Path, tmp_path: Path
) -> None:
    handle = f"alice/mirror-pointer-{how}"
    work = kaggle_root / "working" / "ck"
    ck = Checkpointer(work, mirror=_mirror(handle), monitor="val")
    ck.save(step=1, model=_model(), metrics={"val": 0.2})
    ck.save(step=2, model=_model(), metrics={"val": 0.1})
    assert ck.flush(timeout=60)
    version = tmp_path / "tampered"
    shutil.copytree(work, version)
    deep = "[" * 100_000 + "]" * 100_000
    for name in ("latest.json", "ledger.json"):
        if how == "deep":
            (version / name).write_text(deep)
        else:
            (version / name).unlink(missing_ok=True)
    (version / "dataset-metadata.json").write_text(json.dumps({"id": handle, "title": "x", "licenses": []}))
    _api().dataset_create_version(str(version), "tampered", quiet=True, convert_to_csv=False)
    shutil.rmtree(work)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = Checkpointer(work, mirror=_mirror(handle), monitor="val").restore(model=_model())
    assert restored is not None and restored.step == 2 and restored.source == "mirror"
    assert any("latest.json" in str(w.message) and "file list" in str(w.message) for w in caught), [
        str(w.message) for w in caught]
    if how == "deep":
        assert any("ledger.json" in str(w.message) and "64 levels" in str(w.message) for w in caught)


def test_a_dataset_holding_another_run_is_never_written_over(sim_server: object, kaggle_root: Path) -> None:
    handle = "alice/mirror-two-runs"
    first = Checkpointer(kaggle_root / "working" / "a", mirror=_mirror(handle), run_name="first")
    first.save(step=7, model=_model())
    assert first.flush(timeout=60)
    second = Checkpointer(kaggle_root / "working" / "b", mirror=_mirror(handle), run_name="second")
    with pytest.warns(RuntimeWarning, match=r"run 'dataset:alice/mirror-two-runs run:first', step 7, in "):
        assert second.restore(model=_model()) is None
    second.save(step=1, model=_model())
    with pytest.warns(RuntimeWarning, match=r"holds the checkpoints of run 'dataset:alice/mirror-two-runs run:first'"):
        assert not second.flush(timeout=60)
    pointer = _mirror(handle).remote_pointer()
    assert pointer["run_id"] == "dataset:alice/mirror-two-runs run:first" and pointer["step"] == 7
    assert _dataset(handle).current_version_number == 1
