"""A short CPU training run on synthetic forgeries beats predicting ``authentic`` everywhere on held-out cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from kaggle_kit.cmfd.config import load_cmfd_config
from kaggle_kit.cmfd.data import CMFDDataset, scan_competition, split_cases
from kaggle_kit.cmfd.inference import predict_cases, predict_folder, score_predictions, tune_postprocess
from kaggle_kit.cmfd.losses import CMFDLoss
from kaggle_kit.cmfd.metric import score_files
from kaggle_kit.cmfd.model import build_model
from kaggle_kit.cmfd.rehearsal import make_demo_competition
from kaggle_kit.cmfd.synthetic import make_synthetic_competition

STEPS = 200  # past where it starts to learn (between 100 and 150 steps) with a margin


@pytest.mark.slow
def test_short_training_beats_all_authentic(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        # The rehearsal's easy competition: exact translated copies on the tiny random ViT's patch grid, so that
        # its features (no pretraining) match where the content repeats; everything downstream is the real pipeline.
        root = tmp_path / "comp"
        solution = make_demo_competition(root, 0)
        cfg = load_cmfd_config("tiny")
        train, val = split_cases(scan_competition(root), val_fraction=0.25, seed=0)
        data = CMFDDataset.from_config(train, cfg.data, augment=True)
        model = build_model(cfg)
        loss_fn = CMFDLoss(cfg.loss)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        step, epoch = 0, 0
        while step < STEPS:
            data.set_epoch(epoch)
            epoch += 1
            for images, masks, _ in DataLoader(data, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True):
                loss = loss_fn(model(images), masks)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step >= STEPS:
                    break
        assert torch.isfinite(loss)

        # Thresholds tuned on the training cases, then scored by the competition metric on held-out case ids.
        tuned, _ = tune_postprocess(predict_cases(model, train[::2], cfg), cfg.postprocess)
        held_out = predict_cases(model, val, cfg)
        score = score_predictions(held_out, tuned)
        all_authentic = sum(not c.forged for c in val) / len(val)
        assert score > all_authentic + 0.05, (score, all_authentic)

        # The same model writes a valid submission for the synthetic test set, scored by the real scorer.
        cfg.postprocess = tuned
        out = predict_folder(model, root / "test_images", root / "sample_submission.csv", tmp_path / "sub.csv", cfg)
        assert 0.0 <= score_files(solution, out) <= 1.0
    finally:
        torch.set_num_threads(threads)


def test_entry_points_plug_into_the_generic_training_loop(tmp_path: Path) -> None:
    import functools

    from kaggle_kit.cmfd.data import load_splits
    from kaggle_kit.cmfd.inference import validation_score
    from kaggle_kit.training import ScoreFunction, supervised_loss, train

    root = make_synthetic_competition(tmp_path / "comp", n_cases=6, size=80, seed=1)
    cfg = load_cmfd_config("tiny", ["train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=4"])
    train_cases, val_cases = load_splits(root, cfg.data)
    result = train(
        build_model(cfg),
        CMFDDataset(train_cases, image_size=cfg.data.image_size, augment=True),
        functools.partial(supervised_loss, CMFDLoss(cfg.loss)),
        cfg.train,
        evaluate=ScoreFunction(validation_score, args=(val_cases, cfg)),
        output_dir=tmp_path / "out",
        progress=False,
        plot=False,
    )
    assert result.status == "finished" and result.step == 2
    assert 0.0 <= result.history[-1]["val_score"] <= 1.0


def test_the_cmfd_project_declares_rehearsal_hooks_that_score(tmp_path: Path) -> None:
    from kaggle_kit.project import load_project
    from kaggle_kit.rehearsal import load_hooks

    project = load_project(Path(__file__).resolve().parents[1])
    hooks = load_hooks(project)
    competition = project.notebook("train").competition
    assert competition and hooks.data and hooks.baseline and hooks.score
    solution = hooks.data(tmp_path / competition, 3)
    baseline = hooks.baseline(tmp_path / competition, solution)
    assert baseline == pytest.approx(0.5)  # half the demo's test images are authentic
    assert hooks.score(solution, solution) == pytest.approx(1.0)
