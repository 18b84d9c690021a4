"""The weekly GPU quota: the sandbox's figure, the run ledger with burn rates, and the API fallback order."""

from __future__ import annotations

import json
import time

import pytest

from kaggle_kit.errors import ConfigError
from kaggle_kit.guard.quota import burn_rate, current_quota, quota_from_ledger


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_KIT_SIM_QUOTA_LEFT_S"):
        monkeypatch.delenv(name, raising=False)


def _ledger(tmp_path, sessions):
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(sessions))
    return path


def test_burn_rates_default_and_override():
    assert burn_rate("T4x2") == 2.0
    assert burn_rate("T4") == 1.0
    assert burn_rate("none") == 0.0
    assert burn_rate("TPU v5e-8") == 0.0
    assert burn_rate("T4x2", {"T4x2": 1.0}) == 1.0


def test_ledger_charges_two_t4_sessions_double(tmp_path):
    now = time.time()
    path = _ledger(tmp_path, [
        {"accelerator": "T4x2", "seconds": 3600, "ended": now - 100},
        {"accelerator": "T4", "seconds": 1800, "ended": now - 50},
        {"accelerator": "none", "seconds": 7200, "ended": now - 10},
        {"accelerator": "T4", "seconds": 9999, "ended": now - 8 * 24 * 3600},  # last week: not counted
    ])
    status = quota_from_ledger(path, allowed_s=30 * 3600, entered_used_s=600)
    assert status.source == "ledger"
    assert status.used_s == pytest.approx(600 + 7200 + 1800)
    assert status.left_s == pytest.approx(30 * 3600 - 9600)
    assert "unverified" in status.notes[0]
    assert status.wall_seconds_left("T4x2") == pytest.approx(status.left_s / 2)
    assert status.wall_seconds_left("none") is None
    overridden = quota_from_ledger(path, allowed_s=30 * 3600, burn_rates={"T4x2": 1.0})
    assert overridden.used_s == pytest.approx(3600 + 1800)


def test_bad_ledgers_name_the_file_and_entry(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        quota_from_ledger(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json"):
        quota_from_ledger(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="entry 1"):
        quota_from_ledger(_ledger(tmp_path, [{"accelerator": "T4", "seconds": 1}, {"accelerator": "T4"}]))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="deep.json nests deeper than 64 levels"):
        quota_from_ledger(tmp_path / "deep.json")


def test_reads_the_checkpoint_mirrors_ledger(tmp_path):
    from datetime import datetime, timedelta, timezone

    end = datetime.now(timezone.utc)
    iso = lambda t: t.isoformat(timespec="seconds")  # noqa: E731
    path = _ledger(tmp_path, {"format": "kaggle-kit-ledger/1", "dataset": "alice/ckpt", "sessions": [
        {"id": "a", "started": iso(end - timedelta(hours=3)), "ended": iso(end - timedelta(hours=2)),
         "run_type": "Batch", "accelerator": "T4x2 x2", "first_step": 0, "last_step": 90, "versions": 3},
        {"id": "b", "started": iso(end - timedelta(hours=1)), "ended": iso(end), "run_type": "Batch",
         "accelerator": "T4", "first_step": 90, "last_step": 150, "versions": 2},
        {"id": "c", "started": iso(end - timedelta(days=9)), "ended": iso(end - timedelta(days=8)),
         "accelerator": "T4 x2"},
    ]})
    status = quota_from_ledger(path, allowed_s=30 * 3600)
    assert status.used_s == pytest.approx(2 * 3600 + 3600)  # the two-T4 hour counts double; last week's not at all
    assert quota_from_ledger(path, since=0).used_s == pytest.approx(3 * 3600 + 2 * 24 * 3600)


def test_source_order_sandbox_then_ledger(tmp_path, monkeypatch):
    assert current_quota() is None  # no credentials, no ledger, not in the sandbox
    path = _ledger(tmp_path, {"sessions": [{"accelerator": "T4", "wall_s": 3600}]})
    status = current_quota(ledger_path=path, allowed_s=7200)
    assert status.source == "ledger" and status.left_s == pytest.approx(3600)
    assert any("no Kaggle credentials" in n for n in status.notes)
    monkeypatch.setenv("KAGGLE_KIT_SIM_QUOTA_LEFT_S", "1234.5")
    sim = current_quota(ledger_path=path)
    assert sim.source == "simulated" and sim.left_s == 1234.5
    monkeypatch.setenv("KAGGLE_KIT_SIM_QUOTA_LEFT_S", "lots")
    with pytest.raises(ConfigError, match="KAGGLE_KIT_SIM_QUOTA_LEFT_S"):
        current_quota()


def test_quota_from_the_stand_ins_rpc(sim_server):
    from kaggle_kit.guard.quota import quota_from_api

    before = current_quota().used_s
    sim_server.record_gpu_use(1800.0, kernel="alice/quota-test")
    status = current_quota(ledger_path="/nonexistent/ledger.json")  # the API wins; the ledger is never read
    assert status.source == "api"
    assert status.allowed_s == pytest.approx(sim_server.gpu_quota_s)
    assert status.used_s == pytest.approx(before + 1800.0)
    assert status.left_s == pytest.approx(sim_server.gpu_quota_s - sim_server.quota_used_s)
    assert status.refresh_time is not None
    assert quota_from_api().left_s == pytest.approx(status.left_s)


def test_api_failure_falls_back_to_ledger(sim_server, tmp_path):
    sim_server.inject_fault("500", match="GetAcceleratorQuotaStatistics", count=1)
    path = _ledger(tmp_path, [{"accelerator": "T4", "seconds": 60}])
    status = current_quota(ledger_path=path, allowed_s=3600)
    assert status.source == "ledger" and status.left_s == pytest.approx(3540)
    assert any("API quota unavailable" in n for n in status.notes)
