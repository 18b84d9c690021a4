# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Infer: submission.csv from the best checkpoint, internet off
#
# Rendered by `kaggle-kit render infer`. Needs the code dataset, the checkpoint dataset and (for a pretrained
# backbone) the DINOv2 model attached; nothing is downloaded.

# %% tags=["parameters"]
project = "cmfd"
kit_dataset = None
config = "kaggle_kit/cmfd/configs/default.yaml"
overrides = []
competition = "recodai-luc-scientific-image-forgery-detection"
code_dataset = None
checkpoint_dataset = None
accelerator_plan = "auto"

# %% bootstrap: put the kit and this project on sys.path (a clone, the attached datasets, or an installed kit)
import os
import sys
from pathlib import Path

_inputs = Path(os.environ.get("KAGGLE_KIT_KAGGLE_ROOT", "/kaggle")) / "input"


def _attached(handle):
    """An attached dataset's folder under either input layout, or None."""
    owner, slug = handle.split("/")[:2]
    return next((p for p in (_inputs / "datasets" / owner / slug, _inputs / slug) if p.is_dir()), None)


# The kit: a clone holding this folder, else the kit dataset, else the code dataset carrying it, else an install.
_here = Path.cwd().resolve()
_places = [_here, *_here.parents, *(_attached(h) for h in (kit_dataset, code_dataset) if h)]
_kit = next((p for p in _places if p is not None and (p / "kaggle_kit" / "__init__.py").is_file()), None)
if _kit is not None and str(_kit) not in sys.path:
    sys.path.insert(0, str(_kit))
    # Python processes the kit starts (the mirror's uploader, DDP ranks) import it from the same place.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_kit), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["KAGGLE_KIT_PROJECT"] = project  # every find_root() in this session looks for this project

from kaggle_kit import enable_autoreload, find_root, kit_origin

root = find_root(project=project, add_to_path=True)
enable_autoreload()
print(kit_origin())
print(f"project root: {root.path} ({root.reason})")

# %% config and device
import torch

from kaggle_kit import detect_accelerator, plan_devices
from kaggle_kit.cmfd.config import load_cmfd_config

cfg = load_cmfd_config(config if config in ("default", "tiny") else root.path / config, overrides)
plan = plan_devices(accelerator_plan, detect_accelerator())
device = torch.device("cuda" if plan.device_type == "cuda" else "cpu")

# %% model: the best checkpoint of the attached checkpoint dataset (None: of any attached input, e.g. a run's output)
from kaggle_kit import load_checkpoint
from kaggle_kit.cmfd.model import build_model

model = build_model(cfg, from_checkpoint=True)  # the checkpoint brings the weights: no DINOv2 download
loaded = load_checkpoint(checkpoint_dataset, model=model, which="best")
print(f"weights of step {loaded.step} (best score {loaded.best_metric}) from {loaded.path}")
model.to(device).eval()

# %% predict the test images; predict_folder writes submission.csv in sample_submission's order and validates it
from kaggle_kit import env, find_input
from kaggle_kit.cmfd.inference import predict_folder

competition_dir = find_input(competition, kind="competition")
submission = predict_folder(model, competition_dir / "test_images", competition_dir / "sample_submission.csv",
                            env.working_dir() / "submission.csv", cfg, device=device)
print(f"{submission}: written and validated")
