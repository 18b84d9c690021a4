"""Prediction at any image size, encoding to annotations, a folder to submission.csv, and validation scoring."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kaggle_kit.cmfd import metric, rle
from kaggle_kit.cmfd.config import CMFDConfig, PostprocessConfig
from kaggle_kit.cmfd.data import IMAGE_SUFFIX, Case, read_image, read_masks
from kaggle_kit.cmfd.model import CMFDNet
from kaggle_kit.cmfd.postprocess import instances_from_probs
from kaggle_kit.cmfd.submission import read_sample_ids, write_submission
from kaggle_kit.errors import InputNotFoundError


@dataclasses.dataclass
class Prediction:
    """A model's raw output for one image at its original resolution."""

    prob: np.ndarray  # (H, W) float32
    offsets: np.ndarray  # (2, H, W) best-match (dy, dx) in pixels


@torch.no_grad()
def predict_image(model: CMFDNet, image: np.ndarray, *, max_size: int, device: torch.device | str = "cpu") -> Prediction:
    """Run the model on one (H, W, 3) uint8 image; the output is exactly H x W whatever the size.

    The image is resized so its long side is ``max_size`` (as training letterboxes it), padded inside the model to
    its size multiple, and the probabilities are resized back to H x W.
    """
    h, w = image.shape[:2]
    scale = max_size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    was_training = model.training
    model.eval()
    try:
        logits, _, offsets = model.forward_with_matches(x)
    finally:
        model.train(was_training)
    prob = torch.sigmoid(logits.float())
    prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    # Offsets are fractions of the correlation grid, which spans the padded input; to original pixels.
    multiple = model.multiple
    ph, pw = -(-nh // multiple) * multiple, -(-nw // multiple) * multiple
    off = offsets.float()[0] * torch.tensor([ph / scale, pw / scale], device=offsets.device).view(2, 1, 1)
    off = F.interpolate(off[None], size=(ph, pw), mode="nearest")[0, :, :nh, :nw]
    off = F.interpolate(off[None], size=(h, w), mode="nearest")[0]
    return Prediction(prob.cpu().numpy().astype(np.float32), off.cpu().numpy().astype(np.float32))


def encode_prediction(pred: Prediction, cfg: PostprocessConfig) -> str:
    """Post-process a prediction into an annotation (``authentic`` or RLE instances)."""
    return rle.encode_annotation(instances_from_probs(pred.prob, cfg, offsets=pred.offsets))


def predict_annotation(
    model: CMFDNet, image: np.ndarray, cfg: CMFDConfig, *, device: torch.device | str = "cpu"
) -> str:
    """The predict-and-encode entry point: one image in, one annotation out."""
    return encode_prediction(predict_image(model, image, max_size=cfg.data.max_size, device=device), cfg.postprocess)


def predict_folder(
    model: CMFDNet,
    images_dir: Path,
    sample_submission: Path,
    out: Path,
    cfg: CMFDConfig,
    *,
    device: torch.device | str = "cpu",
) -> Path:
    """Predict every image sample_submission lists and write a validated submission.csv at ``out``.

    Raises:
        InputNotFoundError: an image the sample lists is not in ``images_dir``.
    """
    annotations: dict[str, str] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for case_id in read_sample_ids(sample_submission):
        path = Path(images_dir) / f"{case_id}{IMAGE_SUFFIX}"
        if not path.is_file():
            raise InputNotFoundError(f"test image {path} listed in {sample_submission} is missing")
        image = read_image(path)
        shapes[case_id] = image.shape[:2]
        annotations[case_id] = predict_annotation(model, image, cfg, device=device)
    return write_submission(annotations, sample_submission, out, shapes=shapes)


def label_annotation(case: Case, shape: tuple[int, int]) -> str:
    """The true annotation of a training case, encoded as a solution row would be."""
    if case.masks is None:
        return rle.AUTHENTIC
    return rle.encode_annotation(read_masks(case.masks, shape))


def predict_cases(
    model: CMFDNet, cases: Sequence[Case], cfg: CMFDConfig, *, device: torch.device | str = "cpu"
) -> list[tuple[Prediction, str, tuple[int, int]]]:
    """Raw predictions with their labels, to score once or to tune thresholds over."""
    out = []
    for case in cases:
        image = read_image(case.image)
        shape = image.shape[:2]
        out.append((predict_image(model, image, max_size=cfg.data.max_size, device=device),
                    label_annotation(case, shape), shape))
    return out


def score_predictions(preds: Iterable[tuple[Prediction, str, tuple[int, int]]], cfg: PostprocessConfig) -> float:
    """Mean competition score of predictions under one post-processing setting."""
    scores = [metric.image_score(label, encode_prediction(p, cfg), shape) for p, label, shape in preds]
    return float(np.mean(scores)) if scores else 0.0


def validation_score(
    model: CMFDNet, cases: Sequence[Case], cfg: CMFDConfig, *, device: torch.device | str = "cpu"
) -> float:
    """The validation scoring function: the competition metric on held-out cases."""
    return score_predictions(predict_cases(model, cases, cfg, device=device), cfg.postprocess)


def tune_postprocess(
    preds: Sequence[tuple[Prediction, str, tuple[int, int]]],
    base: PostprocessConfig,
    *,
    image_thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    pixel_thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6),
) -> tuple[PostprocessConfig, float]:
    """Grid-search the thresholds on validation predictions; returns the best setting and its score."""
    best, best_score = base, -1.0
    for it in image_thresholds:
        for pt in pixel_thresholds:
            cfg = dataclasses.replace(base, image_threshold=it, pixel_threshold=min(pt, it))
            s = score_predictions(preds, cfg)
            if s > best_score:
                best, best_score = cfg, s
    return best, best_score
