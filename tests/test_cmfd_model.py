"""Backbone layout and norm, weight loading and refusals, padding, the model at odd sizes and under autocast."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from kaggle_kit.cmfd.backbone import DinoBackbone, build_backbone
from kaggle_kit.cmfd.config import BackboneConfig, load_cmfd_config
from kaggle_kit.cmfd.model import build_model
from kaggle_kit.cmfd.padding import crop_to, pad_multiple, pad_to_multiple
from kaggle_kit.errors import CheckpointError, ConfigError, WeightsNotFoundError

TINY = dict(embed_dim=64, depth=2, num_heads=2)


def _tiny(**kw: object) -> BackboneConfig:
    return BackboneConfig(**{**TINY, "weights": "random", "freeze": False, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def backbone() -> DinoBackbone:
    torch.manual_seed(0)
    return build_backbone(_tiny()).eval()


def _tokens(backbone: DinoBackbone, images: torch.Tensor) -> torch.Tensor:
    vit = backbone.vit
    x = vit.patch_embed((images - backbone.mean) / backbone.std)
    x = vit.norm_pre(vit._pos_embed(x))
    for block in vit.blocks:
        x = block(x)
    return x[:, vit.num_prefix_tokens :]  # (B, h*w, C), row-major over the patch grid


@torch.no_grad()
def test_feature_layout_is_token_grid_without_permute(backbone: DinoBackbone) -> None:
    images = torch.rand(2, 3, 56, 84)
    feats = backbone(images)
    assert feats.shape == (2, 64, 4, 6)
    tokens = backbone.vit.norm(_tokens(backbone, images))
    by_hand = tokens.reshape(2, 4, 6, 64).permute(0, 3, 1, 2)
    torch.testing.assert_close(feats, by_hand)
    # Location (row 2, column 5) is token 2 * 6 + 5.
    torch.testing.assert_close(feats[:, :, 2, 5], tokens[:, 17])


@torch.no_grad()
def test_norm_choice_applies_the_final_layernorm(backbone: DinoBackbone) -> None:
    assert BackboneConfig().norm is True  # as the original DINOv2 get_intermediate_layers (timm defaults to False)
    images = torch.rand(1, 3, 42, 42)
    raw = _tokens(backbone, images)
    normed = backbone(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(normed, backbone.vit.norm(raw))
    backbone.cfg.norm = False
    try:
        torch.testing.assert_close(backbone(images).flatten(2).transpose(1, 2), raw)
    finally:
        backbone.cfg.norm = True


def test_backbone_refuses_unpadded_sizes(backbone: DinoBackbone) -> None:
    with pytest.raises(ValueError, match="multiple of the patch size"):
        backbone(torch.rand(1, 3, 50, 56))


def test_missing_weights_error_lists_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        build_backbone(BackboneConfig(**TINY))
    message = str(err.value)
    for handle in BackboneConfig().weight_handles:  # the current layout of every handle, and the legacy one
        assert str(tmp_path.joinpath("input", "models", *handle.split("/"))) in message
    assert str(tmp_path / "input" / "dinov2") in message and "backbone.weights" in message
    (tmp_path / "input" / "dinov2").mkdir(parents=True)  # attached, but holds no weights
    with pytest.raises(WeightsNotFoundError, match="no .safetensors"):
        build_backbone(BackboneConfig(**TINY))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_backbone(BackboneConfig(**TINY, weights=str(tmp_path / "nope.pth")))


def test_random_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kaggle_kit.cmfd.backbone"):
        build_backbone(_tiny())
    assert "RANDOM weights" in caplog.text


@torch.no_grad()
def test_original_dinov2_checkpoint_under_model_layout(
    backbone: DinoBackbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {k: v.clone() for k, v in backbone.vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, 64)  # present in the original checkpoints, unused by timm
    folder = tmp_path / "input" / "models" / "metaresearch" / "dinov2" / "pyTorch" / "small" / "1"
    folder.mkdir(parents=True)
    torch.save(state, folder / "dinov2_vits14_pretrain.pth")
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path))
    loaded = build_backbone(BackboneConfig(**TINY)).eval()
    images = torch.rand(1, 3, 42, 56)
    torch.testing.assert_close(loaded(images), backbone(images))
    assert not any(p.requires_grad for p in loaded.vit.parameters())  # freeze is the default


def _to_hf(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    out = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": torch.zeros(1, state["cls_token"].shape[-1]),
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    names = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense", "mlp.fc1": "mlp.fc1",
             "mlp.fc2": "mlp.fc2"}
    for i in range(depth):
        p, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[p + f"attn.qkv.{kind}"].chunk(3, dim=0)
            out[h + f"attention.attention.query.{kind}"] = q
            out[h + f"attention.attention.key.{kind}"] = k
            out[h + f"attention.attention.value.{kind}"] = v
            for timm_name, hf_name in names.items():
                out[h + f"{hf_name}.{kind}"] = state[p + f"{timm_name}.{kind}"]
        out[h + "layer_scale1.lambda1"] = state[p + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = state[p + "ls2.gamma"]
    return {k: v.contiguous() for k, v in out.items()}


@torch.no_grad()
def test_hugging_face_checkpoint_under_legacy_layout(
    backbone: DinoBackbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "input" / "dinov2"
    folder.mkdir(parents=True)
    save_file(_to_hf(backbone.vit.state_dict(), 2), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov2", "hidden_size": 64}))
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path))
    loaded = build_backbone(BackboneConfig(**TINY)).eval()
    images = torch.rand(2, 3, 28, 42)
    torch.testing.assert_close(loaded(images), backbone(images))


def test_weights_of_another_shape_are_refused(backbone: DinoBackbone, tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(backbone.vit.state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit"):
        build_backbone(BackboneConfig(embed_dim=64, depth=3, num_heads=2, weights=str(path)))


def test_pad_multiple_is_the_lcm() -> None:
    assert pad_multiple(14, 32) == 224  # the first attempt padded to 32, which 14 does not divide
    assert pad_multiple(14, 4) == 28
    x = torch.rand(1, 3, 65, 97)
    padded, size = pad_to_multiple(x, 28)
    assert padded.shape[-2:] == (84, 112)
    assert torch.equal(crop_to(padded, size), x)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_cmfd_config("tiny"))


@pytest.mark.parametrize("size", [(64, 64), (65, 97), (99, 141), (141, 64), (113, 113)])
def test_output_is_exactly_input_size(tiny_model: torch.nn.Module, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = tiny_model(torch.rand(1, 3, *size))
    assert out.shape == (1, 1, *size)


def test_bf16_autocast_forward_backward_has_no_overflow(tiny_model: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 70, 90)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = tiny_model(x)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    logits.float().mean().backward()
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    tiny_model.zero_grad()


def test_fp16_autocast_forward_has_no_overflow(tiny_model: torch.nn.Module) -> None:
    x = torch.rand(1, 3, 64, 80)
    try:
        with torch.autocast("cpu", dtype=torch.float16), torch.no_grad():
            logits = tiny_model(x)
    except RuntimeError as exc:  # some CPU builds lack float16 kernels
        pytest.skip(f"float16 autocast not supported on this CPU build: {exc}")
    assert torch.isfinite(logits).all()


def test_config_numbers_are_typed() -> None:
    cfg = load_cmfd_config("default")
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.backbone.embed_dim == 384 and cfg.backbone.patch_size == 14 and cfg.backbone.weights == "auto"
    tiny = load_cmfd_config("tiny", ["train.lr=1e-3"])
    assert tiny.train.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="lr"):
        load_cmfd_config("tiny", ["train.lr=fast"])


def test_predicted_offsets_point_from_copy_to_source_in_original_pixels(tiny_model: torch.nn.Module) -> None:
    import numpy as np

    from kaggle_kit.cmfd.inference import predict_image

    rng = np.random.default_rng(0)
    image = (rng.random((224, 252, 3)) * 255).astype(np.uint8)
    image[112:168, 140:196] = image[0:56, 28:84]  # a copy 112 rows down, 112 columns right
    # Resized by 0.5 to 112 x 126, the copy sits on the ViT's 14-pixel grid, so its tokens repeat the source's.
    pred = predict_image(tiny_model, image, max_size=126)
    assert pred.prob.shape == (224, 252) and pred.offsets.shape == (2, 224, 252)
    dy, dx = pred.offsets[:, 140, 168]  # the centre of the copy
    assert (round(float(dy)), round(float(dx))) == (-112, -112)


def test_from_checkpoint_needs_no_pretrained_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_KIT_KAGGLE_ROOT", str(tmp_path))  # nothing attached
    cfg = load_cmfd_config("tiny", ["backbone.weights=auto"])
    with pytest.raises(WeightsNotFoundError):
        build_model(cfg)
    assert build_model(cfg, from_checkpoint=True).multiple == 28
