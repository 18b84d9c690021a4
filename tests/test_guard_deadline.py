"""The deadline stop in a sandbox session: the session limit falls mid-epoch, the training loop (told by the session
clock) checkpoints and mirrors before the kill, and the next session resumes from the mirrored checkpoint.

No second of it depends on the machine's speed: the margin is set when the training starts, so the stop comes a
couple of seconds into it however long the kernel took to start, and the kill comes by progress, right after the
training returned (the least time an uploader could get), not at a time the machine may or may not have reached."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs /proc")]

HANDLE_SLUG = "deadline-ckpt"
STEPS_PER_EPOCH = 100
LIMIT_S = 600  # a safety net: the sessions end long before it

_CELLS = (
    "import json, os, time\n"
    "import torch\n"
    "from torch import nn\n"
    "from kaggle_kit.checkpoint import Checkpointer\n"
    "from kaggle_kit.guard.clock import SessionClock\n"
    "from kaggle_kit.mirror import DatasetMirror\n"
    "from kaggle_kit.training import TrainConfig, train",
    "STEP_SLEEP_S = float(os.environ['STEP_SLEEP_S'])\n"
    "class Data(torch.utils.data.Dataset):\n"
    "    def __init__(self):\n"
    "        gen = torch.Generator().manual_seed(0)\n"
    f"        self.x = torch.randn({STEPS_PER_EPOCH * 4}, 4, generator=gen)\n"
    "        self.y = self.x.sum(dim=1, keepdim=True)\n"
    "    def __len__(self):\n"
    "        return len(self.x)\n"
    "    def __getitem__(self, i):\n"
    "        return self.x[i], self.y[i]\n"
    "def loss_fn(model, batch):\n"
    "    time.sleep(STEP_SLEEP_S)\n"
    "    x, y = batch\n"
    "    return nn.functional.mse_loss(model(x), y)",
    "torch.manual_seed(0)\n"
    "model = nn.Linear(4, 1)\n"
    "clock = SessionClock.from_environment()\n"
    "# Stop TRAIN_S seconds into the training, a margin that leaves the rest of the session for the save and upload.\n"
    "margin = max(0.0, clock.time_left() - float(os.environ['TRAIN_S']))\n"
    "config = TrainConfig(epochs=1, batch_size=4, precision='fp32', lr=0.01, optimizer='sgd', scheduler='none',\n"
    "                     grad_clip_norm=None, deadline_margin_s=margin)\n"
    "ckpt = Checkpointer('/kaggle/working/ckpt', mirror=DatasetMirror(os.environ['HANDLE']), every_minutes=60)\n"
    "result = train(model, Data(), loss_fn, config, checkpointer=ckpt, clock=clock, progress=False, plot=False)\n"
    "json.dump({'status': result.status, 'step': result.step, 'resumed': result.resumed_from_step,\n"
    "           'clock': clock.source, 'limit': clock.limit_s}, open('/kaggle/working/result.json', 'w'))",
    # The rest of the notebook (inference, say) keeps running until Kaggle kills the session: here at once, by the
    # progress this cell reports (SessionSpec.kill_at_step), so only what was mirrored before it survives.
    "if os.environ.get('HANG') == '1':\n"
    "    os.makedirs('/kaggle/working/after', exist_ok=True)\n"
    "    json.dump({'step': 1}, open('/kaggle/working/after/progress.json', 'w'))\n"
    "    while True:\n"
    "        time.sleep(0.1)",
)


def _session(sandbox_dir, server, kit, *, hang: bool, step_sleep_s: float, train_s: float, layout: str):
    from kaggle_kit.sim.sandbox import Sandbox, SessionSpec

    nb = nbformat.v4.new_notebook()
    # The kit is an attached dataset: the mirror's uploader process must find it too.
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in (kit.bootstrap, *_CELLS)]
    key = server.client_env({})["KAGGLE_KEY"]
    spec = SessionSpec(nb, run_type="Batch", internet=True, accelerator="T4", time_limit_s=LIMIT_S,
                       mounts=(kit.mount,), input_layout=layout, kill_at_step=1 if hang else None,
                       api_url=server.url, secrets={"KAGGLE_USERNAME": server.username, "KAGGLE_KEY": key},
                       env={"STEP_SLEEP_S": str(step_sleep_s), "TRAIN_S": str(train_s), "HANG": "1" if hang else "0",
                            "HANDLE": f"{server.username}/{HANDLE_SLUG}"})
    return Sandbox(sandbox_dir).run(spec)


def test_deadline_stop_mirrors_before_the_kill_and_next_session_resumes(sim_server, tmp_path, kit_attached):
    # Each input layout once: the legacy one for the first session, the current one for the second.
    # Session 1: 100 steps of 0.3 s cannot finish before the margin, 2 s into the training, stops it mid-epoch.
    first = _session(tmp_path / "s1", sim_server, kit_attached, hang=True, step_sleep_s=0.3, train_s=2,
                     layout="legacy")
    assert first.status == "KILLED" and first.killed_by == "step", first.failure_message
    stopped = json.loads((first.output_dir / "result.json").read_text())
    assert stopped["status"] == "stopped" and stopped["clock"] == "simulated" and stopped["limit"] == LIMIT_S
    assert 1 <= stopped["step"] < STEPS_PER_EPOCH

    # Session 2: a fresh working folder; only the mirrored checkpoint can carry the run over.
    second = _session(tmp_path / "s2", sim_server, kit_attached, hang=False, step_sleep_s=0.0, train_s=LIMIT_S,
                      layout="current")
    assert second.status == "COMPLETE", second.failure_message
    finished = json.loads((second.output_dir / "result.json").read_text())
    assert finished["resumed"] == stopped["step"]
    assert finished["status"] == "finished" and finished["step"] == STEPS_PER_EPOCH
