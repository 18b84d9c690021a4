"""The generic training loop on the CPU: exact resume, accumulation, history, the deadline stop, DDP."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from _stop_after import StopAfter
from kaggle_kit.checkpoint import Checkpointer
from kaggle_kit.errors import CheckpointError, ConfigError
from kaggle_kit.training import FIGURE_FILE, HISTORY_FILE, PROGRESS_FILE, TrainConfig, seed_everything, train

CONFIG = TrainConfig(epochs=3, batch_size=4, grad_accum_steps=2, precision="fp32", lr=0.05, warmup_steps=2)


class NoisyRegression(torch.utils.data.Dataset):
    """40 samples with a random augmentation (noise drawn at load time), so resuming must reproduce it."""

    def __init__(self, n: int = 40) -> None:
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 4, generator=gen)
        self.y = self.x.sum(dim=1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def first_feature_error(model: nn.Module) -> dict[str, float]:
    x = torch.eye(4)
    return {"score": -float((model(x) - 1).abs().mean())}


def make_model(*, dropout: float = 0.3, seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(dropout), nn.ReLU(), nn.Linear(16, 1))



def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def run(tmp: Path, *, stop_after: int | None = None, seed: int = 0, **kwargs) -> tuple[nn.Module, object]:
    model = make_model(seed=seed)
    ckpt = Checkpointer(tmp / "ckpt", every_minutes=60, monitor="score", mode="max")
    result = train(model, NoisyRegression(), mse, CONFIG, evaluate=first_feature_error, checkpointer=ckpt,
                   clock=StopAfter(stop_after), output_dir=tmp / "out", progress=False, **kwargs)
    return model, result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], object, Path]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    model, result = run(tmp)
    return weights(model), result, tmp


@pytest.mark.parametrize("stop_after", [7, 10])  # mid-epoch; last step of epoch 2, before its validation
def test_deadline_stop_saves_and_resume_is_bit_identical(tmp_path, uninterrupted, stop_after):
    final, reference, _ = uninterrupted
    model, stopped = run(tmp_path, stop_after=stop_after)
    assert stopped.status == "stopped" and stopped.step == stop_after
    assert [c.step for c in Checkpointer(tmp_path / "ckpt").checkpoints()][0] == stop_after
    progress = json.loads((tmp_path / "out" / PROGRESS_FILE).read_text())
    assert progress["status"] == "stopped" and progress["step"] == progress["last_checkpoint_step"] == stop_after

    # Another initialisation and another global random state: only the checkpoint can make them match.
    torch.manual_seed(99)
    model, resumed = run(tmp_path, seed=5)
    assert resumed.status == "finished" and resumed.resumed_from_step == stop_after
    assert resumed.steps_this_session == reference.step - stop_after
    assert resumed.history == reference.history
    assert_identical(weights(model), final)


def test_killed_run_resumes_from_last_periodic_checkpoint(tmp_path, uninterrupted):
    final, reference, _ = uninterrupted
    calls = {"n": 0}

    def dies_at_batch_19(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 19:
            raise KeyboardInterrupt("session killed")
        return mse(model, batch)

    ckpt = Checkpointer(tmp_path / "ckpt", every_seconds=1e-9, monitor="score", mode="max")
    with pytest.raises(KeyboardInterrupt):
        train(make_model(), NoisyRegression(), dies_at_batch_19, CONFIG, evaluate=first_feature_error,
              checkpointer=ckpt, clock=StopAfter(None), output_dir=tmp_path / "out", progress=False)
    assert Checkpointer(tmp_path / "ckpt").checkpoints()[0].step == 9  # 18 micro-batches = 9 steps completed
    progress = json.loads((tmp_path / "out" / PROGRESS_FILE).read_text())
    assert (progress["status"], progress["step"], progress["last_checkpoint_step"]) == ("running", 9, 9)

    model, resumed = run(tmp_path, seed=3)
    assert resumed.resumed_from_step == 9
    assert resumed.history == reference.history
    assert_identical(weights(model), final)


def test_history_json_and_figure(uninterrupted):
    _, reference, tmp = uninterrupted
    saved = json.loads((tmp / "out" / HISTORY_FILE).read_text())
    assert [r["epoch"] for r in saved["history"]] == [1, 2, 3]
    assert saved["history"] == reference.history
    assert all({"train_loss", "val_score", "lr", "step"} <= set(r) for r in saved["history"])
    assert saved["best"]["score"] == max(r["val_score"] for r in saved["history"])
    assert (tmp / "out" / FIGURE_FILE).stat().st_size > 1000
    # The checkpointer kept the best epoch by the monitored score.
    best = Checkpointer(tmp / "ckpt", monitor="score", mode="max").best
    assert best is not None and best.step == saved["best"]["step"]


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=0.05)

    results = []
    for batch_size, accum in ((8, 1), (4, 2), (2, 4)):
        model = make_model(dropout=0.0)
        cfg = TrainConfig(epochs=2, batch_size=batch_size, grad_accum_steps=accum, precision="fp32",
                          scheduler="none", grad_clip_norm=None)
        result = train(model, NoisyRegression(), mse, cfg, optimizer_factory=sgd, clock=StopAfter(None),
                       progress=False)
        assert result.step == 10
        results.append((weights(model), [r["train_loss"] for r in result.history]))
    for other, losses in results[1:]:
        for key, value in results[0][0].items():
            torch.testing.assert_close(other[key], value, rtol=1e-5, atol=1e-6)
        assert losses == pytest.approx(results[0][1], rel=1e-5)
    # A different micro-batch size without accumulation trains differently: the comparison can fail.
    model = make_model(dropout=0.0)
    train(model, NoisyRegression(), mse, TrainConfig(epochs=2, batch_size=4, precision="fp32", scheduler="none",
                                                     grad_clip_norm=None),
          optimizer_factory=sgd, clock=StopAfter(None), progress=False)
    assert not torch.allclose(weights(model)["0.weight"], results[0][0]["0.weight"], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_changed_data_order(tmp_path):
    run(tmp_path, stop_after=3)
    ckpt = Checkpointer(tmp_path / "ckpt")
    changed = TrainConfig(epochs=3, batch_size=8, grad_accum_steps=1, precision="fp32")
    with pytest.raises(CheckpointError, match="batch_size was 4 and is now 8"):
        train(make_model(), NoisyRegression(), mse, changed, checkpointer=ckpt, clock=StopAfter(None), progress=False)


def test_bad_config_and_tiny_dataset_are_refused():
    with pytest.raises(ConfigError, match="train.precision"):
        train(make_model(), NoisyRegression(), mse, TrainConfig(precision="fp8"), clock=StopAfter(None))
    with pytest.raises(ConfigError, match="40 samples, fewer than train.batch_size = 64"):
        train(make_model(), NoisyRegression(), mse, TrainConfig(batch_size=64), clock=StopAfter(None))


class TenSecondSteps:
    """A session of ``limit_s`` seconds in which every optimizer step takes ten seconds."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s, self.steps, self.margins = limit_s, 0, []

    def time_left(self) -> float:
        return max(0.0, self.limit_s - 10.0 * self.steps)

    def should_stop(self, margin_s: float) -> bool:
        self.steps += 1
        self.margins.append(margin_s)
        return self.time_left() <= margin_s


def test_default_deadline_margin_scales_with_a_short_session(tmp_path, capsys):
    # 200 s: the margin is 5 % of it (10 s) plus the measured save and step times, so the run trains until 10 s
    # are left (step 19 of 20 leaves 10 s); the fixed 600 s of the past stopped it after its first step.
    clock = TenSecondSteps(200.0)
    ckpt = Checkpointer(tmp_path / "ckpt", every_minutes=60)
    config = TrainConfig(epochs=4, batch_size=4, grad_accum_steps=2, precision="fp32", lr=0.05)
    result = train(make_model(), NoisyRegression(), mse, config, checkpointer=ckpt, clock=clock, progress=False,
                   plot=False)
    assert result.status == "stopped" and result.step == 19
    assert all(10.0 <= margin < 15.0 for margin in clock.margins)
    out = capsys.readouterr().out
    assert "deadline margin 10 s" in out and "train.deadline_margin_s fixes it" in out
    # A margin in the config is kept as it is.
    fixed = TenSecondSteps(200.0)
    train(make_model(), NoisyRegression(), mse, dataclasses.replace(config, deadline_margin_s=50.0), clock=fixed,
          progress=False, plot=False)
    assert set(fixed.margins) == {50.0} and fixed.steps == 15


def test_a_five_minute_session_trains_to_the_end(tmp_path):
    from kaggle_kit.guard.clock import SessionClock

    config = TrainConfig(epochs=2, batch_size=4, precision="fp32", lr=0.05)
    result = train(make_model(), NoisyRegression(), mse, config, clock=SessionClock(start=time.time(), limit_s=300),
                   checkpointer=Checkpointer(tmp_path / "ckpt", every_minutes=60), progress=False, plot=False)
    assert result.status == "finished" and result.step == 20


def rank_checkpointer(rank: int, directory: str) -> Checkpointer:
    return Checkpointer(Path(directory), every_minutes=60)


@pytest.mark.slow
def test_ddp_on_two_cpu_ranks_matches_one_process_and_hands_back_the_weights(tmp_path, monkeypatch):
    from functools import partial

    from kaggle_kit.guard.accelerator import detect_accelerator, plan_devices
    from kaggle_kit.training import train_with_plan

    monkeypatch.setenv("KAGGLE_KIT_SIM_ACCELERATOR", "T4x2")
    plan = plan_devices("gpu", detect_accelerator())
    assert plan.world_size == 2
    cfg = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=2, precision="fp32", scheduler="none", lr=0.05)
    initial = weights(make_model(dropout=0.0))
    results = {}
    for name, world in (("ddp", plan), ("single", plan_devices("cpu", detect_accelerator()))):
        model = make_model(dropout=0.0)
        result = train_with_plan(world, model=model, dataset=NoisyRegression(), loss_fn=mse,
                                 config=cfg, checkpointer=partial(rank_checkpointer, directory=str(tmp_path / name)),
                                 clock=StopAfter(None), output_dir=tmp_path / f"out-{name}", progress=False)
        assert result.status == "finished" and result.step == 10
        # The caller's model holds the final weights, the same as the last checkpoint's.
        restored_model = make_model(dropout=0.0, seed=7)
        restored = Checkpointer(tmp_path / name).restore(model=restored_model)
        assert restored is not None and restored.step == 10
        assert_identical(weights(model), weights(restored_model))
        assert not torch.equal(weights(model)["0.weight"], initial["0.weight"])
        results[name] = (weights(model), [r["train_loss"] for r in result.history])
    for key, value in results["single"][0].items():
        torch.testing.assert_close(results["ddp"][0][key], value, rtol=1e-5, atol=1e-6)
    assert results["ddp"][1] == pytest.approx(results["single"][1], rel=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda_trains_and_resumes(tmp_path, precision):
    cfg = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=2, precision=precision, lr=0.01)
    model = make_model()
    ckpt = Checkpointer(tmp_path / "ckpt", every_minutes=60)
    stopped = train(model, NoisyRegression(), mse, cfg, checkpointer=ckpt, clock=StopAfter(3), progress=False)
    assert stopped.status == "stopped" and next(model.parameters()).is_cuda
    saved = json.loads(next((tmp_path / "ckpt").glob("step-*[0-9].json")).read_text())
    assert (saved["scaler"] is not None) == (precision == "fp16")  # GradScaler only for fp16
    resumed = train(make_model(seed=4), NoisyRegression(), mse, cfg, checkpointer=Checkpointer(tmp_path / "ckpt"),
                    clock=StopAfter(None), progress=False)
    assert resumed.resumed_from_step == 3 and resumed.step == 10
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in resumed.history)


def test_step_counts_are_the_loops(tmp_path):
    from kaggle_kit.training import micro_batches_per_epoch, steps_per_epoch, total_steps

    # 40 samples in batches of 4 are 10 micro-batches: 3 steps of accumulation 4 (the last one takes 2), not 40 // 16.
    cfg = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=4, precision="fp32")
    assert (micro_batches_per_epoch(40, cfg), steps_per_epoch(40, cfg), total_steps(40, cfg)) == (10, 3, 6)
    capped = TrainConfig(epochs=2, batch_size=4, grad_accum_steps=4, max_steps_per_epoch=2, precision="fp32")
    assert (micro_batches_per_epoch(40, capped), steps_per_epoch(40, capped)) == (8, 2)
    for config in (cfg, capped, TrainConfig(epochs=1, batch_size=6, grad_accum_steps=3, precision="fp32")):
        result = train(make_model(), NoisyRegression(), mse, config, clock=StopAfter(None), output_dir=tmp_path,
                       progress=False, plot=False)
        progress = json.loads((tmp_path / PROGRESS_FILE).read_text())
        assert result.step == progress["total_steps"] == total_steps(40, config)
        assert progress["steps_per_epoch"] == steps_per_epoch(40, config)
    with pytest.raises(ConfigError, match="does not divide among 3 DDP ranks"):
        steps_per_epoch(40, cfg, world_size=3)
    with pytest.raises(ConfigError, match="fewer than train.batch_size"):
        steps_per_epoch(3, cfg)
    with pytest.raises(ConfigError, match="train.grad_accum_steps"):
        steps_per_epoch(40, TrainConfig(grad_accum_steps=0))


def test_old_import_paths_and_lazy_exports():
    import subprocess
    import sys

    import kaggle_kit.training as training

    old_names = ["TrainConfig", "TrainResult", "train", "seed_everything", "plot_history", "make_optimizer",
                 "make_scheduler", "train_on_ranks", "train_with_plan", "supervised_loss", "ScoreFunction",
                 "checkpointer_for_rank", "epoch_order", "HISTORY_FILE", "PROGRESS_FILE", "FIGURE_FILE"]
    assert set(old_names) <= set(training.__all__)
    assert all(getattr(training, name) is not None for name in training.__all__)
    # The config alone (what a workload's YAML schema needs) and the top-level package do not pull in torch.
    code = ("import sys; import kaggle_kit; from kaggle_kit.training import TrainConfig, steps_per_epoch; "
            "assert 'torch' not in sys.modules, 'torch imported'; from kaggle_kit import train, plan_budget; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
