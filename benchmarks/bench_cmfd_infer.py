"""CMFD inference throughput on CPU: images per second through the whole predict-and-encode path.

Images come from `make_synthetic_competition` (the offline demo's data, ``kaggle-kit cmfd synth`` default size 256);
each is resized to the config's ``data.max_size``, run through the model, post-processed and RLE-encoded. The
tiny config is the demo's; ``--config default`` measures the real ViT-S/14 shape (random weights: speed only).

    python benchmarks/bench_cmfd_infer.py                       # tiny config, demo size
    python benchmarks/bench_cmfd_infer.py --config default      # ViT-S/14 at 448
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", help="tiny (default), default, or a YAML path")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="typical side of the synthetic test images")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from kaggle_kit.cmfd.config import load_cmfd_config
    from kaggle_kit.cmfd.data import read_image
    from kaggle_kit.cmfd.inference import predict_annotation
    from kaggle_kit.cmfd.model import build_model
    from kaggle_kit.cmfd.synthetic import make_synthetic_competition

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_cmfd_config(args.config, ["backbone.weights=random"])
    model = build_model(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_competition(Path(tmp) / "comp", n_cases=1, size=args.size, seed=0, n_test=args.images)
        images = [read_image(p) for p in sorted((root / "test_images").glob("*.png"))]
    predict_annotation(model, images[0], cfg)  # warm-up
    t0 = time.perf_counter()
    for image in images:
        predict_annotation(model, image, cfg)
    elapsed = time.perf_counter() - t0
    sizes = sorted(img.shape[0] * img.shape[1] for img in images)
    print(f"torch {torch.__version__}, {args.threads} thread(s); config {args.config}: "
          f"ViT embed {cfg.backbone.embed_dim} depth {cfg.backbone.depth}, max_size {cfg.data.max_size}")
    print(f"{len(images)} images of about {args.size} px (median {sizes[len(sizes) // 2]} pixels)")
    print(f"{len(images) / elapsed:.2f} images/s ({elapsed / len(images) * 1000:.1f} ms per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
