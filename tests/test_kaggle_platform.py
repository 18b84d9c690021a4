"""Kaggle's platform facts in one place (kaggle_kit.kaggle_platform)."""

from __future__ import annotations

import pytest

from kaggle_kit.kaggle_platform import (
    MACHINE_SHAPES,
    RETIRED_SHAPES,
    burn_rate,
    machine_for,
    resolve_shape,
)


def test_retired_shapes_map_as_the_official_client_says() -> None:
    # The client's table (kaggle_api_extended._RETIRED_ACCELERATORS) is the source.
    from kaggle.api import kaggle_api_extended as client

    table = client._RETIRED_ACCELERATORS
    assert {k.lower() for k in RETIRED_SHAPES} == set(table)
    for name, instead in RETIRED_SHAPES.items():
        detail = table[name.lower()]
        assert (instead in detail) if instead else ("CPU" in detail)


def test_p100_runs_on_two_t4s_and_tpu_v2_on_cpu() -> None:
    assert machine_for("NvidiaTeslaP100").accelerator == "T4x2"
    assert machine_for("tpuv232").accelerator == "none"
    runs, warning = resolve_shape("NvidiaTeslaP100")
    assert runs == "NvidiaTeslaT4" and "retired" in warning


def test_unknown_shape_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        machine_for("NvidiaTeslaV100")
    for shape in MACHINE_SHAPES:
        assert shape in str(info.value)


def test_defaults_and_quotas() -> None:
    assert machine_for(None, enable_gpu=True).accelerator == "T4x2"
    assert machine_for(None, enable_tpu=True).uses_tpu_quota
    assert not machine_for(None).uses_gpu_quota
    assert burn_rate("T4x2") == 2.0 and burn_rate("none") == 0.0 and burn_rate("TPUv5e8") == 0.0
    assert burn_rate("L4") == 1.0 and burn_rate("L4", {"L4": 1.5}) == 1.5


def test_tpu_time_bills_the_tpu_quota_and_the_cited_limits() -> None:
    from kaggle_kit.kaggle_platform import MAX_CONCURRENT_GPU_SESSIONS, MAX_DATASET_VERSION_FILES, tpu_burn_rate

    assert tpu_burn_rate("TPUv5e8") == 1.0 and tpu_burn_rate("T4x2") == 0.0 and tpu_burn_rate("none") == 0.0
    assert machine_for("TpuV6E8").uses_tpu_quota and burn_rate(machine_for("TpuV6E8").accelerator) == 0.0
    assert MAX_DATASET_VERSION_FILES == 1000 and MAX_CONCURRENT_GPU_SESSIONS == 2
