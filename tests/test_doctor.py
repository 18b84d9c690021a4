"""`kaggle-kit doctor`: environment, inputs by layout, GPUs, credentials without values, API, preflight."""

from __future__ import annotations

import pytest

from kaggle_kit.cli import main


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch, kaggle_isolation):
    kaggle = tmp_path / "kaggle"
    (kaggle / "input" / "datasets" / "alice" / "cmfd-data").mkdir(parents=True)
    (kaggle / "input" / "competitions" / "recodai-luc-scientific-image-forgery-detection").mkdir(parents=True)
    (kaggle / "input" / "dinov2").mkdir(parents=True)
    (kaggle / "working").mkdir()
    root = tmp_path / "proj"
    root.mkdir()
    (root / "setup.cfg").write_text("")
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(kaggle))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4x2")
    monkeypatch.setenv("KAGGLE_KIT_SIM_QUOTA_LEFT_S", "7200")
    monkeypatch.chdir(root)
    return root


def test_doctor_reports_environment_and_preflight(fake_kaggle, sim_server, capsys):
    rc = main(["doctor", "--input", "alice/cmfd-data", "--mirror-dataset", f"{sim_server.username}/ckpt-mirror"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "inside Kaggle    yes" in out and "run type         Batch" in out
    assert "working dir" in out and "(writable)" in out and "temp dir" in out and "(missing)" in out
    assert "input (current)  dataset alice/cmfd-data" in out
    assert "input (current)  competition recodai-luc-scientific-image-forgery-detection" in out
    assert "input (legacy)   ? dinov2" in out
    assert "GPUs             T4x2: Tesla T4 15.0 GiB, Tesla T4 15.0 GiB (simulated)" in out
    assert f"credentials      present for {sim_server.username}" in out
    assert sim_server.client_env({})["KAGGLE_KEY"] not in out
    assert "authenticated call answered" in out
    assert f"OK    project root         {fake_kaggle}" in out
    assert "2 process(es)" in out and "OK    mirror dataset" in out


def test_doctor_fails_on_p100_with_the_fix(fake_kaggle, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "P100")
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    rc = main(["doctor", "--offline", "--plan", "gpu"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "inside Kaggle    no" in out and "not checked: --offline" in out
    assert "FAIL  accelerator vs plan" in out and "GPU T4 x2" in out and "1 check(s) failed" in out


def test_doctor_names_a_mirror_dataset_kaggle_refuses(fake_kaggle, sim_server, capsys):
    rc = main(["doctor", "--mirror-dataset", f"{sim_server.username}/ckpt"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "mirror dataset slug 'ckpt'" in out and "Kaggle allows 6 to 50" in out, out
