"""The DINOv2 ViT backbone through timm, with weights read from a local file and never downloaded.

Weights come from the Kaggle input folder (a Kaggle Model under either mount layout, or a Dataset), as the original
DINOv2 ``.pth`` or in Hugging Face format (``config.json`` + safetensors or ``.bin``). Configured weights that cannot
be found stop the run with `WeightsNotFoundError`; random weights only when the config says ``weights: random``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.nn as nn

from kaggle_kit.cmfd.config import BackboneConfig
from kaggle_kit.errors import CheckpointError, InputNotFoundError, WeightsNotFoundError

log = logging.getLogger(__name__)

RANDOM = "random"
AUTO = "auto"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_PREFERRED_NAMES = ("dinov2_vits14_pretrain.pth", "model.safetensors", "pytorch_model.bin")


class DinoBackbone(nn.Module):
    """A ViT returning (B, C, H / patch, W / patch) features of images in [0, 1]."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        import timm

        self.cfg = cfg
        # pretrained=False: timm must never try the network (internet is off on Kaggle); weights load below.
        self.vit = timm.create_model(
            cfg.name,
            pretrained=False,
            num_classes=0,
            dynamic_img_size=True,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            patch_size=cfg.patch_size,
        )
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.cfg.embed_dim

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of the last block.

        Args:
            images: (B, 3, H, W) in [0, 1], H and W multiples of the patch size (see `kaggle_kit.cmfd.padding`).

        Returns:
            (B, C, H / patch, W / patch). timm's ``reshape=True`` already gives this layout: no permute.
        """
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}; pad it first")
        x = (images - self.mean) / self.std
        return self.vit.get_intermediate_layers(x, n=1, reshape=True, norm=self.cfg.norm)[0]


def build_backbone(cfg: BackboneConfig, *, from_checkpoint: bool = False) -> DinoBackbone:
    """Build the backbone and load its weights as configured.

    Args:
        cfg: shape and weights.
        from_checkpoint: the caller restores a trained checkpoint (backbone included) right after, so no pretrained
            weights are needed (inference with the DINOv2 model not attached).

    Raises:
        WeightsNotFoundError: pretrained weights are configured and not found; the message lists every place looked.
        CheckpointError: a weights file was found but does not fit the configured shape.
    """
    model = DinoBackbone(cfg)
    if from_checkpoint:
        log.info("backbone %s: weights left for the checkpoint to restore", cfg.name)
    elif cfg.weights.strip().lower() == RANDOM:
        log.warning(
            "backbone %s (embed %d, depth %d): RANDOM weights, because backbone.weights is 'random'; "
            "this is for tests and demos, not for training a real model",
            cfg.name, cfg.embed_dim, cfg.depth,
        )
    else:
        path = find_weights(cfg)
        load_weights(model.vit, path)
        log.info("backbone %s: weights loaded from %s", cfg.name, path)
    if cfg.freeze:
        model.vit.requires_grad_(False)
    return model


def find_weights(cfg: BackboneConfig) -> Path:
    """Locate the weights file the config names.

    Raises:
        WeightsNotFoundError: listing every path and input handle tried, and how to fix it.
    """
    from kaggle_kit import env

    looked: list[str] = []
    spec = cfg.weights.strip()
    if spec.lower() == AUTO:
        handles = list(cfg.weight_handles)
    else:
        path = Path(spec).expanduser()
        if path.exists():
            return _weights_in(path, looked)
        looked.append(f"{path} (as a path: does not exist)")
        handles = [spec]
    for handle in handles:
        kind = "model" if handle.count("/") >= 3 else None
        try:
            folder = env.find_input(handle, kind=kind)
        except InputNotFoundError as exc:
            seen = _looked_paths(looked)
            looked.extend(
                f"{p} ({kind or 'input'} {handle!r} not attached)" for p in _paths_in(str(exc)) if Path(p) not in seen
            )
            continue
        found = _weights_in(folder, looked)
        if found is not None:
            return found
    if spec.lower() == AUTO:
        # A DINOv2 checkpoint attached under another name (a dataset, say) still counts.
        for attached in env.attached_inputs():
            if "dinov2" in attached.handle.lower() and attached.path not in _looked_paths(looked):
                found = _weights_in(attached.path, looked)
                if found is not None:
                    return found
    raise WeightsNotFoundError(
        f"backbone weights {spec!r} not found (input folder {env.input_dir()}); looked in:\n  "
        + "\n  ".join(dict.fromkeys(looked))
        + "\nAttach the DINOv2 ViT-S/14 Kaggle Model (metaresearch/dinov2) or a dataset holding "
        "dinov2_vits14_pretrain.pth, or set backbone.weights to the file's path. "
        "Use backbone.weights=random only for tests: it trains from random init."
    )


def _looked_paths(looked: list[str]) -> set[Path]:
    return {Path(entry.split(" (", 1)[0]) for entry in looked}


def _paths_in(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if line.strip().startswith("/")] or [message]


def _weights_in(path: Path, looked: list[str]) -> Path | None:
    if path.is_file():
        return path
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
    for name in _PREFERRED_NAMES:
        for f in files:
            if f.name == name:
                return f
    plain = [f for f in files if "reg" not in f.name and "linear" not in f.name]
    if len(plain) == 1:
        return plain[0]
    if not files:
        looked.append(f"{path} (no {', '.join(_SUFFIXES)} file inside)")
    else:
        looked.append(f"{path} (several candidates, none preferred: {', '.join(f.name for f in files)})")
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch checkpoint into a flat state dict (tensors only, never arbitrary objects)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: name it instead of a deep traceback
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


_HF_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def convert_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map Hugging Face ``Dinov2Model`` keys to timm's ViT keys (query/key/value fused into qkv)."""
    state = {k.removeprefix("dinov2."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "embeddings.cls_token":
            out["cls_token"] = value
        elif key == "embeddings.position_embeddings":
            out["pos_embed"] = value
        elif key.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif m := re.match(r"encoder\.layer\.(\d+)\.(.+)$", key):
            block, rest = int(m.group(1)), m.group(2)
            if a := re.match(r"attention\.attention\.(query|key|value)\.(weight|bias)$", rest):
                qkv.setdefault((block, a.group(2)), {})[a.group(1)] = value
                continue
            for hf, timm_name in _HF_BLOCK.items():
                if rest.startswith(hf + ".") or rest == hf:
                    out[f"blocks.{block}.{timm_name}{rest[len(hf):]}"] = value
                    break
            else:
                out[key] = value  # left for the strict load to report
        elif key != "embeddings.mask_token":
            out[key] = value
    for (block, kind), parts in qkv.items():
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def load_weights(vit: nn.Module, path: Path) -> None:
    """Load original DINOv2, timm or Hugging Face weights into a timm ViT, strictly.

    Raises:
        CheckpointError: unreadable file, or keys and shapes that do not fit the configured ViT.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = read_state_dict(path)
    if any(k.startswith(("embeddings.", "dinov2.embeddings.")) for k in state):
        state = convert_hf_state_dict(state)
    if "register_tokens" in state:
        raise CheckpointError(
            f"{path} is a DINOv2 checkpoint with register tokens; use dinov2_vits14_pretrain.pth (no registers)"
        )
    # Converts original DINOv2 keys (drops mask_token) and resamples the position embedding to the model's grid.
    state = checkpoint_filter_fn(state, vit)
    try:
        vit.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights in {path} do not fit backbone {type(vit).__name__} "
            f"(embed {getattr(vit, 'embed_dim', '?')}, depth {len(getattr(vit, 'blocks', []))}): {exc}"
        ) from None
