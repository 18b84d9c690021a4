"""Synthetic copy-move forgeries on procedural "scientific" images; nothing is downloaded.

A region of an image is copied elsewhere in the same image, optionally rotated, scaled and flipped, pasted with a
soft or hard edge, and the whole image may then get noise and a JPEG round trip.

How instances are marked: the competition stores one channel per forged instance, usually 1 to 3 per image
(``competition.md``). Had source and copy been separate channels, images with one instance would be rare; had only the
copy been marked, a self-correlation detector (which sees both halves symmetrically, with nothing telling which one
is the original) could not score above 0.5 on any image. So by default one copy-move is ONE instance whose mask covers
BOTH the source region and the pasted copy (``marking="pair"``), and post-processing joins the two halves of a
match into one instance (`PostprocessConfig.pair_instances`). ``marking="target"`` (copy only) and
``"separate"`` (source and copy as two instances) are there to test the other readings against real masks.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kaggle_kit.cmfd import rle

Marking = Literal["pair", "target", "separate"]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    img = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for cell in (32, 12, 5, 2):
        out += amp * _smooth_noise(rng, h, w, cell)
        total += amp
        amp *= 0.6
    out /= total
    return (out - out.min()) / max(float(np.ptp(out)), 1e-6)


def _blobs(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sy, sx = rng.uniform(2, max(3, h / 10)), rng.uniform(2, max(3, w / 10))
        out += rng.uniform(0.4, 1.0) * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    return np.clip(out, 0, 1)


def procedural_figure(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured image in one of four styles (fluorescence, blot, tissue, micrograph) as (H, W, 3) uint8."""
    style = rng.integers(4)
    tex = _texture(rng, h, w)
    if style == 0:  # fluorescence: dark background, coloured cells with texture inside
        rgb = np.zeros((h, w, 3), np.float32)
        for _ in range(rng.integers(1, 4)):
            colour = rng.uniform(0.2, 1.0, 3) * (rng.random(3) < 0.6)
            rgb += _blobs(rng, h, w, int(rng.integers(8, 30)))[..., None] * colour
        rgb = rgb * (0.5 + 0.5 * tex[..., None]) + 0.05 * tex[..., None]
    elif style == 1:  # blot: light background, dark bands in vertical lanes
        base = 0.85 + 0.1 * tex
        lanes = int(rng.integers(3, 10))
        lane_w = w / lanes
        bands = np.zeros((h, w), np.float32)
        yy = np.arange(h, dtype=np.float32)[:, None]
        for lane in range(lanes):
            x0, x1 = int(lane * lane_w + lane_w * 0.15), int((lane + 1) * lane_w - lane_w * 0.15)
            for _ in range(rng.integers(1, 6)):
                cy, sy = rng.uniform(0, h), rng.uniform(1.5, max(2.0, h / 30))
                bands[:, x0:x1] += rng.uniform(0.3, 0.9) * np.exp(-(((yy - cy) / sy) ** 2))
        grey = base - np.clip(bands, 0, 0.8) * (0.7 + 0.3 * tex)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    elif style == 2:  # tissue: pink and purple stain texture
        t2 = _texture(rng, h, w)
        rgb = np.stack([0.85 - 0.3 * t2, 0.55 - 0.4 * tex, 0.75 - 0.2 * t2 + 0.1 * tex], axis=2)
    else:  # micrograph: grey texture with particles
        grey = 0.6 * tex + 0.4 * _blobs(rng, h, w, int(rng.integers(10, 40)))
        rgb = np.repeat(grey[..., None], 3, axis=2)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@dataclass(frozen=True)
class CopyMoveSettings:
    """Ranges of the forgery; the defaults are moderate, `easy` keeps only translation."""

    instances: tuple[int, int] = (1, 2)
    region_frac: tuple[float, float] = (0.12, 0.28)
    rotate_prob: float = 0.3
    max_angle: float = 25.0
    scale: tuple[float, float] = (0.85, 1.2)
    scale_prob: float = 0.3
    flip_prob: float = 0.2
    soft_edge_prob: float = 0.3
    noise_prob: float = 0.3
    noise_std: float = 3.0
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (70, 95)
    # Source and copy corners on a grid of this many pixels (14 puts copies on the ViT's patch grid).
    align: int = 1

    @classmethod
    def easy(cls, *, align: int = 1) -> "CopyMoveSettings":
        """Large translated copies, hard edges, no degradation; ``align`` snaps source and copy to a pixel grid."""
        return cls(
            region_frac=(0.25, 0.33), rotate_prob=0.0, scale_prob=0.0, flip_prob=0.0, soft_edge_prob=0.0,
            noise_prob=0.0, jpeg_prob=0.0, align=align,
        )


def _region_mask(rng: np.random.Generator, rh: int, rw: int) -> Image.Image:
    mask = Image.new("L", (rw, rh), 0)
    draw = ImageDraw.Draw(mask)
    shape = rng.integers(3)
    if shape == 0:
        draw.rectangle((0, 0, rw - 1, rh - 1), fill=255)
    elif shape == 1:
        draw.ellipse((0, 0, rw - 1, rh - 1), fill=255)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
        radii = rng.uniform(0.6, 1.0, len(angles))
        pts = [((1 + r * np.cos(a)) * (rw - 1) / 2, (1 + r * np.sin(a)) * (rh - 1) / 2) for a, r in zip(angles, radii)]
        draw.polygon(pts, fill=255)
    return mask


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def copy_move(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    settings: CopyMoveSettings | None = None,
    marking: Marking = "pair",
) -> tuple[np.ndarray, np.ndarray]:
    """Forge an image by copying regions within it.

    Args:
        image: (H, W, 3) uint8.
        rng: randomness source.
        settings: ranges of the transforms and degradations.
        marking: ``"pair"`` (one instance = source + copy), ``"target"`` (copy only) or ``"separate"``.

    Returns:
        The forged image (H, W, 3) uint8 and instance masks (N, H, W) uint8 (N >= 1).
    """
    s = settings or CopyMoveSettings()
    h, w = image.shape[:2]
    if min(h, w) < 48:
        raise ValueError(f"image of {h}x{w} is too small to forge; copy_move needs at least 48 px a side")
    canvas = Image.fromarray(image)
    source_img = Image.fromarray(image)
    taken: list[tuple[int, int, int, int]] = []
    masks: list[np.ndarray] = []
    n_wanted = int(rng.integers(s.instances[0], s.instances[1] + 1))
    margin = max(2, min(h, w) // 40)
    for _ in range(n_wanted):
        for _attempt in range(60):
            rh = max(8, int(min(h, w) * rng.uniform(*s.region_frac)))
            rw = max(8, int(rh * rng.uniform(0.6, 1.6)))
            rw = min(rw, w // 3)
            rh = min(rh, h // 3)
            a = max(1, s.align)
            sy, sx = a * int(rng.integers(0, (h - rh) // a + 1)), a * int(rng.integers(0, (w - rw) // a + 1))
            src_box = (sx, sy, sx + rw, sy + rh)
            source_region = _region_mask(rng, rh, rw)
            flip, scale, rotate = (rng.random() < p for p in (s.flip_prob, s.scale_prob, s.rotate_prob))
            # Resampling reads pixels around the region: crop some real context so no black fill bleeds in.
            ctx = 4 if (scale or rotate) else 0
            x0, y0 = max(0, sx - ctx), max(0, sy - ctx)
            x1, y1 = min(w, sx + rw + ctx), min(h, sy + rh + ctx)
            patch = source_img.crop((x0, y0, x1, y1))
            region = Image.new("L", patch.size, 0)
            region.paste(source_region, (sx - x0, sy - y0))
            if flip:
                patch, region = patch.transpose(Image.FLIP_LEFT_RIGHT), region.transpose(Image.FLIP_LEFT_RIGHT)
            if scale:
                f = rng.uniform(*s.scale)
                size = (max(4, int(patch.width * f)), max(4, int(patch.height * f)))
                patch, region = patch.resize(size, Image.BICUBIC), region.resize(size, Image.NEAREST)
            if rotate:
                angle = float(rng.uniform(-s.max_angle, s.max_angle))
                patch = patch.rotate(angle, Image.BICUBIC, expand=True)
                region = region.rotate(angle, Image.NEAREST, expand=True)
            pw, ph = patch.size
            if pw >= w or ph >= h:
                continue
            ty, tx = a * int(rng.integers(0, (h - ph) // a + 1)), a * int(rng.integers(0, (w - pw) // a + 1))
            dst_box = (tx, ty, tx + pw, ty + ph)
            if _boxes_overlap(src_box, dst_box, margin) or any(_boxes_overlap(dst_box, b, margin) for b in taken):
                continue
            if any(_boxes_overlap(src_box, b, margin) for b in taken):
                continue
            alpha = region
            if rng.random() < s.soft_edge_prob:
                alpha = region.filter(ImageFilter.GaussianBlur(1.5))
            canvas.paste(patch, (tx, ty), alpha)
            target = np.zeros((h, w), np.uint8)
            target[ty : ty + ph, tx : tx + pw] = np.asarray(region) > 127
            source = np.zeros((h, w), np.uint8)
            source[sy : sy + rh, sx : sx + rw] = np.asarray(source_region) > 127
            if marking == "pair":
                masks.append(np.maximum(source, target))
            elif marking == "target":
                masks.append(target)
            else:
                masks.extend([source, target])
            taken.extend([src_box, dst_box])
            break
    out = np.asarray(canvas).copy()
    if not masks:  # image too small for any placement: a plain shift of a small block always fits
        return copy_move(image, rng, settings=CopyMoveSettings.easy(), marking=marking)
    if rng.random() < s.noise_prob:
        out = np.clip(out.astype(np.float32) + rng.normal(0, s.noise_std, out.shape), 0, 255).astype(np.uint8)
    if rng.random() < s.jpeg_prob:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(*s.jpeg_quality)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    return out, np.stack(masks).astype(np.uint8)


def _random_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    # Varied, often odd sizes and aspects around ``size``, never below the competition's smallest (64 px).
    h = max(64, int(size * rng.uniform(0.75, 1.25)))
    w = max(64, int(h * rng.uniform(0.7, 1.4)))
    return h, w


def solution_path(dest: Path) -> Path:
    """Where `make_synthetic_competition` writes the test labels: beside the folder, so mounting it leaks nothing."""
    dest = Path(dest)
    return dest.parent / f"{dest.name}-solution.csv"


def make_synthetic_competition(
    dest: Path,
    *,
    n_cases: int,
    size: int,
    seed: int,
    n_test: int | None = None,
    settings: CopyMoveSettings | None = None,
    marking: Marking = "pair",
    fixed_size: bool = False,
) -> Path:
    """Write a synthetic copy of the competition's layout.

    ``dest`` gets ``train_images/{authentic,forged}/<id>.png`` (the same id in both), ``train_masks/<id>.npy``
    ((N, H, W) uint8), ``test_images/<id>.png`` (half forged) and ``sample_submission.csv``; the test labels go to
    `solution_path` (columns ``case_id,annotation,shape``) for ``kaggle-kit cmfd score``.

    Args:
        dest: the competition folder to create (must not hold files already).
        n_cases: training case ids (each gives one authentic and one forged image).
        size: typical image side in pixels; each image varies around it.
        seed: makes the whole folder reproducible.
        n_test: test images (default ``max(2, n_cases // 4)``).
        settings: forgery ranges (default `CopyMoveSettings`).
        marking: how instances are marked (see the module docstring).
        fixed_size: every image exactly ``size x size`` instead of varied sizes and aspects.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty; pick a new folder for the synthetic competition")
    rng = np.random.default_rng(seed)
    n_test = max(2, n_cases // 4) if n_test is None else n_test
    ids = [str(i) for i in rng.choice(np.arange(10_000, 99_999), size=n_cases + n_test, replace=False)]
    for sub in ("train_images/authentic", "train_images/forged", "train_masks", "test_images"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    def shape() -> tuple[int, int]:
        return (size, size) if fixed_size else _random_size(rng, size)

    for case_id in ids[:n_cases]:
        image = procedural_figure(rng, *shape())
        forged, masks = copy_move(image, rng, settings=settings, marking=marking)
        Image.fromarray(image).save(dest / "train_images" / "authentic" / f"{case_id}.png")
        Image.fromarray(forged).save(dest / "train_images" / "forged" / f"{case_id}.png")
        np.save(dest / "train_masks" / f"{case_id}.npy", masks)
    solution_rows = []
    for i, case_id in enumerate(ids[n_cases:]):
        image = procedural_figure(rng, *shape())
        annotation = rle.AUTHENTIC
        if i % 2 == 0:
            image, masks = copy_move(image, rng, settings=settings, marking=marking)
            annotation = rle.encode_annotation(masks)
        Image.fromarray(image).save(dest / "test_images" / f"{case_id}.png")
        solution_rows.append((case_id, annotation, json.dumps(list(image.shape[:2]))))
    with open(dest / "sample_submission.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "annotation"])
        writer.writerows((case_id, rle.AUTHENTIC) for case_id, _, _ in solution_rows)
    with open(solution_path(dest), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "annotation", "shape"])
        writer.writerows(solution_rows)
    return dest
