"""Accelerator detection and the device plan, for every simulated accelerator the sandbox offers."""

from __future__ import annotations

import pytest

from kaggle_kit.errors import AcceleratorError, ConfigError
from kaggle_kit.guard.accelerator import detect_accelerator, plan_devices


@pytest.fixture
def sim(monkeypatch):
    def _set(value: str):
        monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", value)
        return detect_accelerator()

    return _set


def test_none_refuses_gpu_plan_and_names_setting(sim):
    info = sim("none")
    assert (info.count, info.kind, info.source) == (0, "none", "simulated")
    with pytest.raises(AcceleratorError, match="GPU T4 x2") as exc:
        plan_devices("gpu", info)
    assert "machine_shape" in str(exc.value)
    assert plan_devices("auto", info).device_type == "cpu"
    assert plan_devices("cpu", info).world_size == 1


def test_one_t4_single_process(sim):
    info = sim("T4")
    assert info.count == 1 and info.names == ("Tesla T4",) and info.memory_bytes == (15 * 1024**3,)
    plan = plan_devices("gpu", info)
    assert plan.world_size == 1 and not plan.distributed
    # No CUDA here: the simulated T4 runs on the CPU with gloo.
    assert (plan.backend, plan.device_type) == ("gloo", "cpu")
    assert any("simulated" in note for note in plan.notes)


def test_two_t4_ddp_by_default_or_refused_on_request(sim):
    info = sim("T4x2")
    assert info.kind == "T4x2" and info.count == 2
    plan = plan_devices("gpu", info)
    assert plan.world_size == 2 and plan.distributed and plan.backend == "gloo"
    with pytest.raises(AcceleratorError, match="on_two_gpus") as exc:
        plan_devices("gpu", info, on_two_gpus="refuse")
    assert "Accelerator" in str(exc.value)


def test_p100_refused_even_on_auto(sim):
    info = sim("P100")
    assert info.kind == "P100"
    for plan in ("gpu", "auto"):
        with pytest.raises(AcceleratorError, match="P100.*GPU T4 x2"):
            plan_devices(plan, info)
    assert plan_devices("cpu", info).notes  # a CPU plan on a GPU session is flagged as quota spent


def test_bad_values_are_config_errors(sim):
    with pytest.raises(ConfigError, match="KAGGLE_KIT_SIM_ACCELERATOR='V9000'"):
        sim("V9000")
    info = sim("L4x4")
    assert info.count == 4 and info.kind == "L4x4"
    with pytest.raises(ConfigError, match="device plan"):
        plan_devices("tpu", info)
    with pytest.raises(ConfigError, match="on_two_gpus"):
        plan_devices("gpu", info, on_two_gpus="maybe")


def test_real_detection_without_sim_variable(monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_SIM_ACCELERATOR", raising=False)
    info = detect_accelerator()
    import torch

    if torch.cuda.is_available():
        assert info.source == "torch" and info.count == torch.cuda.device_count()
    else:
        assert info.source in ("none", "nvidia-smi")
        assert not info.cuda_usable
