"""The preflight table: every row's ok/warn/fail with its fix, text and HTML, and stopping the run on failure."""

from __future__ import annotations

import time

import pytest

from kaggle_kit.errors import PreflightError
from kaggle_kit.guard.clock import SessionClock
from kaggle_kit.guard.fit import assess_fit
from kaggle_kit.guard.memory import BatchSizeResult
from kaggle_kit.guard.preflight import run_preflight
from kaggle_kit.guard.quota import QuotaStatus


@pytest.fixture
def project(tmp_path, monkeypatch, kaggle_isolation):
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "setup.cfg").write_text("")
    kaggle = tmp_path / "kaggle"
    (kaggle / "input" / "datasets" / "alice" / "cmfd-data").mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(kaggle))
    monkeypatch.setenv("KAGGLE_KIT_ROOT", str(root))
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4x2")
    monkeypatch.delenv("KAGGLE_KIT_SIM_QUOTA_LEFT_S", raising=False)
    monkeypatch.chdir(root)
    return root


def test_two_t4_offline_run_passes_with_ddp_plan(project, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_QUOTA_LEFT_S", "36000")
    report = run_preflight(inputs=["alice/cmfd-data"], data_paths=[project / "data"], check_network=False)
    assert report.ok, report.to_text()
    assert report.device_plan.world_size == 2 and report.device_plan.backend == "gloo"
    assert report.row("project root").detail.startswith(str(project))
    assert "alice/cmfd-data ->" in report.row("data paths").detail
    assert "10.00 h left (simulated)" in report.row("quota vs estimate").detail
    assert "2x (unverified)" in report.row("quota vs estimate").detail
    measured = run_preflight(burn_rates={"T4x2": 1.5}, check_network=False).row("quota vs estimate")
    assert "1.5x (unverified)" in measured.detail
    assert report.row("credentials").status == "warn"
    assert "torch" in report.row("versions").detail
    report.raise_if_failed()


def test_p100_and_missing_data_stop_the_run(project, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "P100")
    report = run_preflight(inputs=["alice/absent"], data_paths=[project / "nope.csv"], check_network=False)
    assert {r.name for r in report.failed} == {"accelerator vs plan", "data paths"}
    accel = report.row("accelerator vs plan")
    assert "P100" in accel.detail and "GPU T4 x2" in accel.fix
    assert "alice/absent" in report.row("data paths").detail and "nope.csv" in report.row("data paths").detail
    with pytest.raises(PreflightError, match="accelerator vs plan") as exc:
        report.raise_if_failed()
    assert "data paths" in str(exc.value)
    report.raise_if_failed(override=True)
    assert "overridden" in capsys.readouterr().err


def test_no_gpu_and_refused_second_gpu(project, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "none")
    assert run_preflight(check_network=False).row("accelerator vs plan").status == "fail"
    assert run_preflight(plan="cpu", check_network=False).row("accelerator vs plan").status == "ok"
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4x2")
    refused = run_preflight(on_two_gpus="refuse", check_network=False).row("accelerator vs plan")
    assert refused.status == "fail" and "Accelerator" in refused.fix
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4")
    assert run_preflight(check_network=False).device_plan.world_size == 1


def test_quota_fit_and_memory_rows(project):
    quota = QuotaStatus(left_s=3600, used_s=None, allowed_s=None, source="simulated")
    verdict = assess_fit(1.0, steps_per_epoch=1000, epochs=3, clock=SessionClock(time.time(), 43200), quota=quota,
                         accelerator="T4x2", upload_margin_s=0)
    memory = BatchSizeResult(planned_batch=32, max_batch=12, batch_size=8, accumulation_steps=4, limit_bytes=2**30,
                             peak_bytes=2**29, device="cpu", simulated=True)
    report = run_preflight(quota=quota, fit=verdict, memory=memory, check_network=False)
    row = report.row("quota vs estimate")
    assert row.status == "warn" and "train 1 epoch(s) instead of 3" in row.fix
    assert report.row("memory test").status == "warn" and "batch to 8 with 4" in report.row("memory test").fix
    empty = QuotaStatus(left_s=0, used_s=108000, allowed_s=108000, source="api")
    assert run_preflight(quota=empty, check_network=False).row("quota vs estimate").status == "fail"


def test_html_escapes_and_text_lists_fixes(project, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "none")
    report = run_preflight(data_paths=["<script>"], check_network=False)
    page = report.to_html()
    assert page.startswith("<table>") and "&lt;script&gt;" in page and "<script>" not in page
    assert report._repr_html_() == page
    text = report.to_text()
    assert "FAIL  accelerator vs plan" in text and "-> " in text


def test_online_rows_against_the_stand_in(project, sim_server):
    own = f"{sim_server.username}/ckpt-mirror"
    report = run_preflight(mirror_dataset=own, check_network=True)
    assert report.row("internet").status == "ok"
    creds = report.row("credentials")
    assert creds.status == "ok" and sim_server.username in creds.detail
    key = sim_server.client_env({})["KAGGLE_KEY"]
    assert key not in report.to_text() and key not in report.to_html()
    assert report.row("mirror dataset").status == "ok", report.row("mirror dataset")
    assert "(api)" in report.row("quota vs estimate").detail
    other = run_preflight(mirror_dataset="bob/not-mine", check_network=True).row("mirror dataset")
    assert other.status == "fail" and "collaborator" in other.fix


def test_offline_mirroring_fails(project, monkeypatch):
    monkeypatch.setenv("KAGGLE_KIT_API_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    report = run_preflight(mirror_dataset="alice/ckpt")
    assert report.row("internet").status == "fail" and "Internet" in report.row("internet").fix
    assert report.row("mirror dataset").status == "fail"
