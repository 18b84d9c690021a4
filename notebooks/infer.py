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
config = "default"
overrides = []
competition = "recodai-luc-scientific-image-forgery-detection"
code_dataset = None
checkpoint_dataset = None
accelerator_plan = "auto"

# %% bootstrap: find the kit (the attached code dataset, a clone, or an installed package)
import os
import sys
from pathlib import Path


def _kit_candidates():
    here = Path.cwd().resolve()
    yield from (here, *here.parents)
    inputs = Path(os.environ.get("KAGGLE_KIT_KAGGLE_ROOT", "/kaggle")) / "input"
    if code_dataset:
        owner, slug = code_dataset.split("/")
        yield from (inputs / "datasets" / owner / slug, inputs / slug)


_kit = next((p for p in _kit_candidates() if (p / "kaggle_kit" / "__init__.py").is_file()), None)
if _kit is not None and str(_kit) not in sys.path:
    sys.path.insert(0, str(_kit))

from kaggle_kit.root import find_root

root = find_root(_kit)
print(f"project root: {root.path} ({root.reason})")

# %% config and device
import torch

from kaggle_kit.cmfd.config import load_cmfd_config
from kaggle_kit.guard.accelerator import detect_accelerator, plan_devices

cfg = load_cmfd_config(config if config in ("default", "tiny") else root.path / config, overrides)
plan = plan_devices(accelerator_plan, detect_accelerator())
device = torch.device("cuda" if plan.device_type == "cuda" else "cpu")

# %% model: the best checkpoint of the attached checkpoint dataset
import tempfile

from kaggle_kit.checkpoint import Checkpointer, copy_checkpoint
from kaggle_kit.cmfd.model import build_model
from kaggle_kit.env import find_input, temp_dir, working_dir
from kaggle_kit.errors import CheckpointError

model = build_model(cfg, from_checkpoint=True)  # the checkpoint brings the weights: no DINOv2 download
scratch = Path(tempfile.mkdtemp(prefix="checkpoints-", dir=temp_dir() if temp_dir().is_dir() else None))
found = Checkpointer(scratch / "newest", monitor="score", mode="max", restore_only=True)
newest = found.restore(model=model, search_mirror=False)
if newest is None:
    raise CheckpointError(f"no checkpoint under the attached inputs ({find_input(checkpoint_dataset, kind='dataset')}"
                          "): attach the checkpoint dataset of a finished training run")
best = found.best
if best is not None and best.step != newest.step:
    copy_checkpoint(best, scratch / "best")
    Checkpointer(scratch / "best", restore_only=True).restore(model=model, search_inputs=False, search_mirror=False)
chosen = best.step if best is not None else newest.step
print(f"weights of step {chosen} (best score {newest.best_metric}) from {newest.source}")
model.to(device).eval()

# %% predict the test images, write submission.csv in sample_submission's order
from kaggle_kit.cmfd.inference import predict_folder

competition_dir = find_input(competition, kind="competition")
submission = predict_folder(model, competition_dir / "test_images", competition_dir / "sample_submission.csv",
                            working_dir() / "submission.csv", cfg, device=device)

# %% validate: the order of sample_submission, every annotation decodes at its image's size
import csv

from PIL import Image

from kaggle_kit.cmfd import rle
from kaggle_kit.cmfd.submission import read_sample_ids
from kaggle_kit.errors import SubmissionError

with open(submission, newline="") as fh:
    rows = list(csv.DictReader(fh))
expected = read_sample_ids(competition_dir / "sample_submission.csv")
if [r["case_id"] for r in rows] != expected:
    raise SubmissionError(f"{submission}: rows are not in sample_submission's order")
for row in rows:
    width, height = Image.open(competition_dir / "test_images" / f"{row['case_id']}.png").size
    rle.decode_annotation(row["annotation"], (height, width))
forged = sum(r["annotation"] != rle.AUTHENTIC for r in rows)
print(f"{submission}: {len(rows)} rows, {forged} predicted forged, valid")
