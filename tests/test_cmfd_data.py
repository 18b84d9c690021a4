"""Reading the competition layout, the synthetic generator, post-processing, and the submission writer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kaggle_kit.cmfd import rle
from kaggle_kit.cmfd.config import PostprocessConfig
from kaggle_kit.cmfd.data import CMFDDataset, read_image, read_masks, scan_competition, split_cases
from kaggle_kit.cmfd.metric import read_solution
from kaggle_kit.cmfd.postprocess import instances_from_probs
from kaggle_kit.cmfd.submission import write_submission
from kaggle_kit.cmfd.synthetic import CopyMoveSettings, copy_move, make_synthetic_competition, solution_path
from kaggle_kit.errors import InputNotFoundError, SubmissionError


def test_read_image_converts_every_mode_to_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(tmp_path / "l.png")
    Image.fromarray(np.full((5, 6), 4000, np.uint16)).save(tmp_path / "i16.png")
    a = read_image(tmp_path / "a.png")
    assert a.shape == (5, 6, 3) and a.dtype == np.uint8
    assert tuple(a[0, 0]) == (200, 0, 0) and tuple(a[0, 5]) == (255, 255, 255)  # transparent -> white
    assert tuple(read_image(tmp_path / "l.png")[2, 2]) == (77, 77, 77)
    assert read_image(tmp_path / "i16.png").shape == (5, 6, 3)


def test_read_masks_shapes_and_refusals(tmp_path: Path) -> None:
    np.save(tmp_path / "m2.npy", np.ones((4, 5), np.uint8))
    np.save(tmp_path / "m3.npy", np.ones((2, 4, 5), np.uint8) * 255)
    assert read_masks(tmp_path / "m2.npy", (4, 5)).shape == (1, 4, 5)
    masks = read_masks(tmp_path / "m3.npy", (4, 5))
    assert masks.shape == (2, 4, 5) and masks.max() == 1
    with pytest.raises(InputNotFoundError, match="but its image is"):
        read_masks(tmp_path / "m3.npy", (5, 4))
    with pytest.raises(InputNotFoundError, match="not found"):
        read_masks(tmp_path / "missing.npy")


@pytest.fixture(scope="module")
def competition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_competition(tmp_path_factory.mktemp("synth") / "comp", n_cases=8, size=80, seed=3)


def test_synthetic_competition_layout(competition: Path) -> None:
    authentic = sorted(p.stem for p in (competition / "train_images" / "authentic").glob("*.png"))
    forged = sorted(p.stem for p in (competition / "train_images" / "forged").glob("*.png"))
    assert authentic == forged and len(forged) == 8
    for case_id in forged:
        image = read_image(competition / "train_images" / "forged" / f"{case_id}.png")
        masks = np.load(competition / "train_masks" / f"{case_id}.npy")
        assert masks.ndim == 3 and masks.shape[1:] == image.shape[:2] and masks.dtype == np.uint8
        assert min(image.shape[:2]) >= 64
    with open(competition / "sample_submission.csv") as fh:
        sample = list(csv.DictReader(fh))
    test_ids = sorted(p.stem for p in (competition / "test_images").glob("*.png"))
    assert sorted(r["case_id"] for r in sample) == test_ids
    assert not (competition / "solution.csv").exists()  # labels stay outside the folder a notebook mounts
    solution = read_solution(solution_path(competition))
    assert {r.case_id for r in solution} == set(test_ids)
    assert any(r.annotation != "authentic" for r in solution) and any(r.annotation == "authentic" for r in solution)


def test_copy_move_marks_source_and_copy_as_one_instance() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((96, 96, 3)) * 255).astype(np.uint8)  # noise: every block is unique
    forged, masks = copy_move(image, np.random.default_rng(1), settings=CopyMoveSettings.easy(), marking="pair")
    assert masks.shape[0] >= 1
    changed = np.any(forged != image, axis=2)
    for m in masks.astype(bool):
        # Both halves: the unchanged source and the pasted copy, which share their pixels exactly.
        assert (m & ~changed).sum() > 0 and (m & changed).sum() > 0
        assert abs(int((m & ~changed).sum()) - int((m & changed).sum())) < 0.2 * m.sum()
    _, separate = copy_move(image, np.random.default_rng(1), settings=CopyMoveSettings.easy(), marking="separate")
    assert separate.shape[0] == 2 * masks.shape[0]


def test_split_is_grouped_by_case_id(competition: Path) -> None:
    cases = scan_competition(competition)
    assert len(cases) == 16 and sum(c.forged for c in cases) == 8
    train, val = split_cases(cases, val_fraction=0.25, seed=0)
    assert {c.case_id for c in train}.isdisjoint({c.case_id for c in val})
    assert len(val) == 4  # two case ids, each with its authentic and forged image


def test_dataset_items(competition: Path) -> None:
    cases = scan_competition(competition)
    ds = CMFDDataset(cases, image_size=112, augment=True)
    for i in (0, len(ds) - 1):
        image, mask, case_id = ds[i]
        assert image.shape == (3, 112, 112) and mask.shape == (1, 112, 112)
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert case_id == cases[i].case_id
        assert (mask.sum() > 0) == cases[i].forged
    forged_on_the_fly = CMFDDataset([c for c in cases if not c.forged], image_size=112, synthetic_prob=1.0)
    assert forged_on_the_fly[0][1].sum() > 0


def test_missing_train_images_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="train_images"):
        scan_competition(tmp_path)


def _blob(mask: np.ndarray, y: int, x: int, r: int) -> None:
    mask[y - r : y + r, x - r : x + r] = True


def test_postprocess_splits_components_and_drops_small_ones() -> None:
    prob = np.zeros((100, 100), np.float32)
    a, b, tiny = (np.zeros_like(prob, dtype=bool) for _ in range(3))
    _blob(a, 20, 20, 8)
    _blob(b, 70, 70, 10)
    tiny[50, 5] = True
    prob[a | b | tiny] = 0.9
    cfg = PostprocessConfig(pixel_threshold=0.5, image_threshold=0.6, min_area_frac=0.001, pair_instances=False)
    masks = instances_from_probs(prob, cfg)
    assert len(masks) == 2 and np.array_equal(masks[0], b) and np.array_equal(masks[1], a)
    assert instances_from_probs(prob * 0.6, cfg) == []  # below the image threshold: authentic


def test_postprocess_pairs_a_source_with_its_copy() -> None:
    prob = np.zeros((100, 100), np.float32)
    src, dst, other = (np.zeros_like(prob, dtype=bool) for _ in range(3))
    _blob(src, 20, 20, 6)
    _blob(dst, 20, 70, 6)
    _blob(other, 80, 40, 6)
    prob[src | dst | other] = 0.9
    offsets = np.zeros((2, 100, 100), np.float32)
    offsets[1][src] = 50  # source pixels match 50 columns to the right
    offsets[1][dst] = -50
    offsets[0][other] = -60  # points at empty background
    cfg = PostprocessConfig(pixel_threshold=0.5, image_threshold=0.6, min_area_frac=0.001, pair_instances=True)
    masks = instances_from_probs(prob, cfg, offsets=offsets)
    assert len(masks) == 2
    assert np.array_equal(masks[0], src | dst) and np.array_equal(masks[1], other)


def test_submission_writer_keeps_order_and_validates(tmp_path: Path) -> None:
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("case_id,annotation\n30,authentic\n10,authentic\n20,authentic\n")
    mask = np.zeros((2, 8, 9), bool)
    mask[0, 1:3, 1:3] = True
    mask[1, 5:7, 5:8] = True
    annotations = {"10": rle.encode_annotation(mask), "20": "authentic", "30": "[1, 4]"}
    shapes = {"10": (8, 9), "20": (8, 9), "30": (2, 2)}
    out = write_submission(annotations, sample, tmp_path / "submission.csv", shapes=shapes)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["case_id", "annotation"]
    assert [r[0] for r in rows[1:]] == ["30", "10", "20"]
    assert json.loads(rows[2][1].split(";")[0]) == rle.encode(mask[0])
    assert '"' in out.read_text()  # instances with commas are quoted

    bad = tmp_path / "bad.csv"
    with pytest.raises(SubmissionError, match="case_id 30: runs overlap"):
        write_submission({**annotations, "30": "[1, 3, 2, 1]"}, sample, bad, shapes=shapes)
    with pytest.raises(SubmissionError, match="annotation is empty"):
        write_submission({**annotations, "20": ""}, sample, bad, shapes=shapes)
    with pytest.raises(SubmissionError, match="case_id 20 .* has no prediction"):
        write_submission({"10": "authentic", "30": "authentic"}, sample, bad, shapes=shapes)
    assert not bad.exists() and not list(tmp_path.glob(".submission-*"))


def test_synth_command_writes_a_scorable_competition(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kaggle_kit.cli import main

    dest = tmp_path / "comp"
    assert main(["cmfd", "synth", str(dest), "--n-cases", "2", "--n-test", "2", "--size", "64"]) == 0
    assert (dest / "sample_submission.csv").is_file() and solution_path(dest).is_file()
    assert main(["cmfd", "score", "--solution", str(solution_path(dest)),
                 "--submission", str(dest / "sample_submission.csv")]) == 0
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx(0.5)  # one of two is forged
    with pytest.raises(SystemExit):
        main(["cmfd", "synth", str(dest)])  # refuses to write into a non-empty folder
    assert "not empty" in capsys.readouterr().err
