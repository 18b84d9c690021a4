"""Memory smoke test and batch-size search against the simulated device on the CPU (and the real one on a GPU)."""

from __future__ import annotations

import pytest
import torch

from kaggle_kit.errors import AcceleratorError, ConfigError
from kaggle_kit.guard.memory import find_batch_size, measure_step

LIMIT = 1_400_000


def _factory():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))

    def factory(batch: int):
        def step():
            model.zero_grad(set_to_none=True)
            model(torch.randn(batch, 64)).square().mean().backward()

        return step

    return factory


def test_peak_grows_with_batch_and_counts_parameters():
    factory = _factory()
    small = measure_step(factory(8), limit_bytes=10**12).peak_bytes
    large = measure_step(factory(512), limit_bytes=10**12).peak_bytes
    params = (64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10) * 4
    assert small > 2 * params  # parameters plus their gradients
    # 504 more samples keep at least two 256-float activations (the ReLU outputs) each alive for backward.
    assert large - small >= 504 * 2 * 256 * 4


def test_planned_batch_that_fits_is_kept():
    result = find_batch_size(_factory(), planned_batch=64, memory_limit_bytes=LIMIT)
    assert result.fits_planned and (result.batch_size, result.accumulation_steps) == (64, 1)
    assert len(result.probes) == 1 and result.simulated and result.peak_bytes <= LIMIT


def test_search_finds_the_boundary_and_keeps_global_batch():
    factory = _factory()
    result = find_batch_size(factory, planned_batch=300, memory_limit_bytes=LIMIT)
    assert not result.fits_planned and 1 < result.max_batch < 300
    assert measure_step(factory(result.max_batch), limit_bytes=LIMIT).fits
    assert not measure_step(factory(result.max_batch + 1), limit_bytes=LIMIT).fits
    assert result.batch_size <= result.max_batch
    assert result.batch_size * result.accumulation_steps == 300
    assert "accumulation" in result.describe()
    suggested = find_batch_size(factory, planned_batch=300, memory_limit_bytes=LIMIT, on_oom="suggest")
    assert (suggested.batch_size, suggested.accumulation_steps) == (result.max_batch, 1)
    assert "global batch changes" in suggested.describe()


def test_nothing_fits_and_bad_arguments():
    with pytest.raises(AcceleratorError, match="not even a batch of 1"):
        find_batch_size(_factory(), planned_batch=4, memory_limit_bytes=200_000)
    with pytest.raises(ConfigError, match="on_oom"):
        find_batch_size(_factory(), planned_batch=4, memory_limit_bytes=LIMIT, on_oom="pray")
    with pytest.raises(ConfigError, match="planned batch"):
        find_batch_size(_factory(), planned_batch=0, memory_limit_bytes=LIMIT)


def test_cpu_limit_from_simulated_accelerator(monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_SIM_ACCELERATOR", raising=False)
    with pytest.raises(ConfigError, match="memory_limit_bytes"):
        find_batch_size(_factory(), planned_batch=4)
    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4")
    result = find_batch_size(_factory(), planned_batch=4)
    assert result.limit_bytes == 15 * 1024**3 and result.simulated and result.fits_planned


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_cuda_device_measures_peak():
    model = torch.nn.Linear(1024, 1024).cuda()

    def factory(batch: int):
        def step():
            model.zero_grad(set_to_none=True)
            model(torch.randn(batch, 1024, device="cuda")).sum().backward()

        return step

    result = find_batch_size(factory, planned_batch=64, device="cuda:0")
    assert result.fits_planned and not result.simulated and result.peak_bytes > 1024 * 1024 * 4
