"""Reading the competition's layout: images as RGB, masks as (N, H, W), splits grouped by case_id."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kaggle_kit.cmfd.config import DataConfig
from kaggle_kit.cmfd.synthetic import CopyMoveSettings, copy_move
from kaggle_kit.errors import InputNotFoundError

IMAGE_SUFFIX = ".png"


@dataclass(frozen=True)
class Case:
    """One training image: the forged and authentic versions of a case_id are two Cases in one group."""

    case_id: str
    image: Path
    masks: Path | None  # None for authentic images
    source: str = "train"  # "train" or "supplemental"

    @property
    def forged(self) -> bool:
        return self.masks is not None

    @property
    def group(self) -> str:
        return f"{self.source}/{self.case_id}"


def read_image(path: Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB; RGBA is composited on white, single-channel and 16-bit are expanded."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            span = max(float(arr.max() - arr.min()), 1.0)
            img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
        if img.mode == "P":
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        return np.asarray(img.convert("RGB")).copy()


def read_masks(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read instance masks as (N, H, W) uint8 in {0, 1}.

    Raises:
        InputNotFoundError: the file is missing, is not (N, H, W) or (H, W), or does not match ``shape``.
    """
    try:
        masks = np.load(path)
    except FileNotFoundError:
        raise InputNotFoundError(f"mask file {path} not found; forged images need train_masks/<case_id>.npy") from None
    except ValueError as exc:
        raise InputNotFoundError(f"mask file {path} is not a plain .npy array: {exc}") from None
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise InputNotFoundError(f"mask file {path} has shape {masks.shape}; expected (N, H, W)")
    if shape is not None and masks.shape[1:] != tuple(shape):
        raise InputNotFoundError(f"mask file {path} is {masks.shape[1:]} but its image is {tuple(shape)}")
    return (masks > 0).astype(np.uint8)


def scan_competition(root: Path, *, supplemental: bool = False) -> list[Case]:
    """List the training cases of a competition folder (authentic and forged, optionally the supplemental set).

    Raises:
        InputNotFoundError: ``train_images`` is missing, or a forged image has no mask file.
    """
    root = Path(root)
    images = root / "train_images"
    if not images.is_dir():
        raise InputNotFoundError(f"{images} not found; pass the competition folder (the one holding train_images)")
    cases = [Case(p.stem, p, None) for p in sorted((images / "authentic").glob(f"*{IMAGE_SUFFIX}"))]
    for p in sorted((images / "forged").glob(f"*{IMAGE_SUFFIX}")):
        mask = root / "train_masks" / f"{p.stem}.npy"
        if not mask.is_file():
            raise InputNotFoundError(f"forged image {p} has no mask {mask}")
        cases.append(Case(p.stem, p, mask))
    if supplemental and (root / "supplemental_images").is_dir():
        for p in sorted((root / "supplemental_images").glob(f"*{IMAGE_SUFFIX}")):
            mask = root / "supplemental_masks" / f"{p.stem}.npy"
            cases.append(Case(p.stem, p, mask if mask.is_file() else None, source="supplemental"))
    return cases


def split_cases(cases: list[Case], *, val_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Split into train and validation by case_id group, so a forged image and its authentic twin never straddle."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups = sorted({c.group for c in cases})
    random.Random(seed).shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction))
    val_groups = set(groups[:n_val])
    return [c for c in cases if c.group not in val_groups], [c for c in cases if c.group in val_groups]


def load_splits(root: Path, cfg: DataConfig) -> tuple[list[Case], list[Case]]:
    """Scan a competition folder and split it as ``cfg`` says (supplemental data, validation fraction, seed)."""
    cases = scan_competition(root, supplemental=cfg.supplemental)
    return split_cases(cases, val_fraction=cfg.val_fraction, seed=cfg.seed)


def letterbox(image: np.ndarray, mask: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize so the long side is ``size`` (keeping the aspect) and pad at the bottom and right to a square."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    out[:nh, :nw] = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    if mask is None:
        return out, None
    m = np.zeros((size, size), np.uint8)
    m[:nh, :nw] = np.asarray(Image.fromarray(mask * 255).resize((nw, nh), Image.NEAREST)) > 127
    return out, m


class CMFDDataset(Dataset):
    """Training samples: ``(image (3, S, S) float in [0, 1], mask (1, S, S) float, case_id)``.

    The mask is the union of the image's instances (the loss is per pixel; instances come back in post-processing).
    With ``synthetic_prob`` > 0 an authentic image is, that often, forged on the fly by `copy_move`.
    """

    def __init__(
        self,
        cases: list[Case],
        *,
        image_size: int,
        augment: bool = False,
        synthetic_prob: float = 0.0,
        synthetic: CopyMoveSettings | None = None,
        seed: int = 0,
    ) -> None:
        self.cases = list(cases)
        self.image_size = image_size
        self.augment = augment
        self.synthetic_prob = synthetic_prob
        self.synthetic = synthetic
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_config(cls, cases: list[Case], cfg: DataConfig, *, augment: bool) -> "CMFDDataset":
        """The dataset ``cfg`` describes: its image size, seed and on-the-fly synthetic forgeries."""
        synthetic = CopyMoveSettings.easy(align=cfg.synthetic_align) if cfg.synthetic_easy else CopyMoveSettings()
        return cls(cases, image_size=cfg.image_size, augment=augment, synthetic_prob=cfg.synthetic_prob,
                   synthetic=synthetic, seed=cfg.seed)

    def set_epoch(self, epoch: int) -> None:
        """Vary augmentation per epoch while staying reproducible."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        case = self.cases[index]
        image = read_image(case.image)
        if case.masks is not None:
            mask = read_masks(case.masks, image.shape[:2]).max(axis=0)
        else:
            mask = np.zeros(image.shape[:2], np.uint8)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if case.masks is None and self.synthetic_prob > 0 and rng.random() < self.synthetic_prob:
            image, masks = copy_move(image, rng, settings=self.synthetic)
            mask = masks.max(axis=0)
        image, mask = letterbox(image, mask, self.image_size)
        if self.augment:
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                image, mask = image[::-1], mask[::-1]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
        y = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        return x, y, case.case_id
