"""The CMFD workload's settings: nested dataclasses loaded with `kaggle_kit.config.load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from kaggle_kit.config import load_config, setting
from kaggle_kit.training import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Where pretrained weights are looked for when `BackboneConfig.weights` is "auto": Kaggle Model handles first
# (mounted under either layout), then datasets people commonly attach the original checkpoint with.
DEFAULT_WEIGHT_HANDLES = (
    "metaresearch/dinov2/pyTorch/small",
    "metaresearch/dinov2/pytorch/small",
    "metaresearch/dinov2/transformers/small",
    "metaresearch/dinov2/Transformers/small",
    "metaresearch/dinov2/pyTorch/vits14",
    "metaresearch/dinov2/pytorch/vits14",
)


@dataclass
class BackboneConfig:
    """The DINOv2 ViT; the defaults are ViT-S/14. A tiny shape of the same architecture serves CPU tests.

    ``weights``: ``"auto"`` (search the Kaggle input folder for the handles in ``weight_handles``), a Kaggle Model or
    Dataset handle, a path to a file or folder, or ``"random"`` (explicit random init, logged as a warning).
    """

    name: str = "vit_small_patch14_dinov2"
    weights: str = "auto"
    weight_handles: list[str] = field(default_factory=lambda: list(DEFAULT_WEIGHT_HANDLES))
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 14
    # Final LayerNorm on the features, as the original DINOv2 get_intermediate_layers does (timm defaults to False).
    norm: bool = True
    freeze: bool = True


@dataclass
class CorrelationConfig:
    """Self-correlation of patch descriptors on the ViT feature grid."""

    patch: int = 1
    stride: int = 1
    top_k: int = 5
    exclude_radius: int = 1
    chunk: int = 256
    # Subtract each image's mean descriptor before the cosine, so the similarity measures content, not the shared bias.
    center: bool = True


@dataclass
class DecoderConfig:
    """The light decoder; ``stride`` is the resolution (in pixels) of its logits before the final upsampling."""

    channels: int = 96
    stride: int = 4
    # Matches kept by the fine self-correlation of the decoder's stem features (0 turns it off).
    fine_top_k: int = 3
    # In stem cells; copies closer than this to their source are not looked for at the fine level.
    fine_exclude_radius: int = 2


@dataclass
class LossConfig:
    """Pixel BCE with a positive weight plus soft Dice on forged images (the forged pixels are rare)."""

    pos_weight: float = 3.0
    dice_weight: float = 1.0


@dataclass
class PostprocessConfig:
    """From probabilities to instances; every threshold is a setting to tune on validation."""

    pixel_threshold: float = setting(0.5, ge=0, le=1)
    # The image is authentic unless its highest pixel probability reaches this.
    image_threshold: float = setting(0.6, ge=0, le=1)
    # Components smaller than this fraction of the image are dropped.
    min_area_frac: float = setting(0.0005, ge=0, lt=1)
    # Join the two halves of one copy-move (the source and its copy) into one instance, as the masks count them.
    pair_instances: bool = True


@dataclass
class DataConfig:
    """Training images are letterboxed to ``image_size`` squares; inference keeps the aspect up to ``max_size``."""

    image_size: int = setting(448, ge=1)
    max_size: int = setting(448, ge=1)
    val_fraction: float = setting(0.2, gt=0, lt=1)
    supplemental: bool = False
    seed: int = 0
    # Share of authentic training images forged on the fly by the synthetic generator.
    synthetic_prob: float = setting(0.0, ge=0, le=1)
    # On-the-fly forgeries: the easy kind (large translated copies) instead of the full range of transforms.
    synthetic_easy: bool = False
    # With synthetic_easy: copies on a grid of this many pixels (14 = the ViT's patches, for random-init demos).
    synthetic_align: int = setting(1, ge=1)


@dataclass
class CMFDConfig:
    """Everything the CMFD workload needs."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # The generic training loop's own schema, so this section is handed to `kaggle_kit.training.train` as it is.
    train: TrainConfig = field(default_factory=TrainConfig)


def load_cmfd_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> CMFDConfig:
    """Load a CMFD config; ``path`` None, ``"default"`` or ``"tiny"`` picks a file shipped in the package.

    Raises:
        ConfigError: the file is missing or does not match `CMFDConfig`.
    """
    if path is None or str(path) in ("default", "tiny"):
        path = CONFIG_DIR / f"{path or 'default'}.yaml"
    return load_config(path, CMFDConfig, overrides)
