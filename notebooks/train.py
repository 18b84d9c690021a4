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
# # Train: copy-move forgery detection, resumable across Kaggle sessions
#
# Rendered by `kaggle-kit render train`; the cell after `parameters` holds the injected values. Run it again
# (Save Version) after a killed or timed-out session: training continues from the newest mirrored checkpoint.

# %% tags=["parameters"]
project = "cmfd"
kit_dataset = None
config = "kaggle_kit/cmfd/configs/default.yaml"
overrides = []
competition = "recodai-luc-scientific-image-forgery-detection"
code_dataset = None
checkpoint_dataset = None
accelerator_plan = "auto"
checkpoint_every_minutes = 10.0
train_options = {}
run_name = None  # names the run (its checkpoints' identity) with the checkpoint dataset, or alone without one
previous_output = None  # the earlier session's output (owner/slug): where a run without a mirror resumes from
kernel = None  # this notebook's owner/slug, set by render: the run's identity without a mirror or a run name
on_memory_shortfall = "accumulate"  # or "suggest": keep the global batch by accumulation, or only propose a batch

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

# %% preflight: root, inputs, accelerator against the plan, internet, credentials, mirror, quota
from kaggle_kit import SessionClock, run_preflight

preflight = run_preflight(plan=accelerator_plan, inputs=[competition], mirror_dataset=checkpoint_dataset)
preflight.display()
preflight.raise_if_failed()
plan = preflight.device_plan
clock = SessionClock.from_environment()
print(clock.describe())

# %% config
import dataclasses

from kaggle_kit.cmfd.config import load_cmfd_config

cfg = load_cmfd_config(config if config in ("default", "tiny") else root.path / config, overrides)
train_cfg = dataclasses.replace(cfg.train, **train_options)
train_cfg.validate()
print(dataclasses.asdict(train_cfg))

# %% data
from kaggle_kit import env, find_input
from kaggle_kit.cmfd.data import CMFDDataset, load_splits

competition_dir = find_input(competition, kind="competition")
train_cases, val_cases = load_splits(competition_dir, cfg.data)
train_set = CMFDDataset.from_config(train_cases, cfg.data, augment=True)  # with on-the-fly forgeries
print(f"{competition_dir}: {len(train_cases)} training and {len(val_cases)} validation images")

# %% model
from functools import partial

from kaggle_kit import ScoreFunction, seed_everything, supervised_loss
from kaggle_kit.cmfd.inference import validation_score
from kaggle_kit.cmfd.losses import CMFDLoss
from kaggle_kit.cmfd.model import build_model

seed_everything(cfg.data.seed)
model = build_model(cfg)
loss_fn = partial(supervised_loss, CMFDLoss(cfg.loss))
evaluate = ScoreFunction(validation_score, train_cfg.monitor, args=(val_cases, cfg))
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

# %% restore: the newest checkpoint from this session, the attached inputs or the mirror dataset
from kaggle_kit import checkpointer_for_rank, run_id_for

run_id = run_id_for(mirror_handle=checkpoint_dataset, run_name=run_name, project=project, kernel=kernel)
make_checkpointer = partial(checkpointer_for_rank, directory=env.working_dir() / "checkpoints",
                            mirror=checkpoint_dataset, every_minutes=checkpoint_every_minutes,
                            monitor=train_cfg.monitor, mode=train_cfg.monitor_mode, config=cfg, run_id=run_id,
                            resume_inputs=[previous_output] if previous_output else [])
checkpointer = make_checkpointer(0)
restored = checkpointer.restore(model=model)
print("fresh start" if restored is None else f"resuming at step {restored.step} from {restored.source}")

# %% budget: does the planned batch fit the device, and does the rest of the run fit the session and the quota?
from kaggle_kit import plan_budget

budget = plan_budget(model, train_set, loss_fn, train_cfg, plan=plan, accelerator=preflight.accelerator,
                     evaluate=evaluate, resume_from=restored, clock=clock, on_memory_shortfall=on_memory_shortfall)
print(budget.describe())
train_cfg = budget.config

# %% train
from kaggle_kit import train_with_plan

result = train_with_plan(
    plan, model=model, dataset=train_set, loss_fn=loss_fn, config=train_cfg, evaluate=evaluate,
    checkpointer=make_checkpointer if plan.distributed else checkpointer, clock=clock, output_dir=env.working_dir(),
    plot=False,
)
print(f"{result.status}: step {result.step}, {result.steps_this_session} steps this session, best {result.best}")

# %% finalize: flush the mirror, plot
from kaggle_kit import FIGURE_FILE, plot_history

if not plan.distributed and not checkpointer.flush(timeout=min(train_cfg.flush_timeout_s, clock.time_left())):
    print("WARNING: the mirror did not confirm the last checkpoint; this run's output still holds it")
if result.history:
    plot_history(result.history, env.working_dir() / FIGURE_FILE)
