"""CMFD training step on a GPU: fp16 autocast forward and backward, real ViT-S/14 shape, random weights.

Batch 8 at 448 px by default. Prints the card, peak GPU memory (allocated and reserved) and images per second, once
with the backbone frozen (the default config) and once fine-tuning it, and whether the peak leaves room on a 16 GB T4.
One call of about three minutes on a GPU machine:

    python benchmarks/gpu_cmfd.py
    python benchmarks/gpu_cmfd.py --device cpu --batch 1 --size 112 --steps 1   # smoke check without a GPU
"""

from __future__ import annotations

import argparse
import sys
import time

T4_BYTES = 16 * 10**9  # a T4 reports about 15.8 GB usable
T4_HEADROOM = 0.85


def _measure(*, device: str, batch: int, size: int, steps: int, train_backbone: bool) -> dict:
    import torch

    from kaggle_kit.cmfd.config import load_cmfd_config
    from kaggle_kit.cmfd.losses import CMFDLoss
    from kaggle_kit.cmfd.model import build_model

    overrides = ["backbone.weights=random", f"backbone.freeze={'false' if train_backbone else 'true'}"]
    cfg = load_cmfd_config("default", overrides)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    loss_fn = CMFDLoss(cfg.loss)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    cuda = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    images = torch.rand(batch, 3, size, size, device=device)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.95).float()

    def step() -> float:
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=amp_dtype):
            logits = model(images)
        loss = loss_fn(logits, masks)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return float(loss.detach())

    for _ in range(2):  # warm-up: kernels, allocator, cudnn choices
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    out = {"images_per_s": batch * steps / elapsed, "loss_finite": loss == loss and abs(loss) != float("inf")}
    if cuda:
        out["peak_allocated"] = torch.cuda.max_memory_allocated()
        out["peak_reserved"] = torch.cuda.max_memory_reserved()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine, or pass --device cpu for a smoke check", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (smoke check, bf16 autocast)"
    print(f"device: {card}; torch {torch.__version__}")
    amp = "fp16" if args.device.startswith("cuda") else "bf16"
    print(f"ViT-S/14 (embed 384, depth 12), random weights, batch {args.batch} at {args.size} px, {amp} autocast, "
          f"forward + backward + AdamW step, {args.steps} timed steps")
    ok = True
    for train_backbone in (False, True):
        r = _measure(device=args.device, batch=args.batch, size=args.size, steps=args.steps,
                     train_backbone=train_backbone)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the first run's cached blocks must not count in the second's reserve
        mode = "backbone fine-tuned" if train_backbone else "backbone frozen   "
        line = f"{mode}: {r['images_per_s']:.1f} images/s"
        if "peak_allocated" in r:
            fits = r["peak_reserved"] <= T4_HEADROOM * T4_BYTES
            ok &= fits
            line += (f", peak allocated {r['peak_allocated'] / 2**30:.2f} GiB, reserved "
                     f"{r['peak_reserved'] / 2**30:.2f} GiB ({'fits' if fits else 'does NOT fit'} a 16 GB T4 "
                     f"with {100 - T4_HEADROOM * 100:.0f}% headroom)")
        ok &= bool(r["loss_finite"])
        print(line + ("" if r["loss_finite"] else "; LOSS NOT FINITE"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
