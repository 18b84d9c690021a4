"""DDP launched from a notebook kernel in the sandbox's simulated T4x2: the function comes from a module; a function
defined in a cell is refused with the fix."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs /proc")]

_MODULE = b'''
import torch
import torch.distributed as dist


def allreduce_rank(ctx, offset):
    value = torch.tensor([float(ctx.rank + offset)])
    dist.all_reduce(value)
    return {"rank": ctx.rank, "world": ctx.world_size, "device": ctx.device, "sum": float(value)}
'''

_CELLS = (
    "import json\n"
    "from kaggle_kit.errors import ConfigError\n"
    "from kaggle_kit.guard import ddp\n"
    "from kaggle_kit.guard.accelerator import detect_accelerator, plan_devices\n"
    "from ddp_work import allreduce_rank\n"
    "plan = plan_devices('gpu', detect_accelerator())\n"
    "results = ddp.launch(allreduce_rank, world_size=plan.world_size, backend=plan.backend, args=(10,))",
    "def in_a_cell(ctx):\n"
    "    return ctx.rank\n"
    "try:\n"
    "    ddp.launch(in_a_cell, world_size=2, backend='gloo')\n"
    "    refusal = None\n"
    "except ConfigError as exc:\n"
    "    refusal = str(exc)\n"
    "json.dump({'plan': [plan.world_size, plan.backend], 'results': results, 'refusal': refusal},\n"
    "          open('/kaggle/working/ddp.json', 'w'))",
)


def test_ddp_from_a_notebook_on_simulated_two_t4(tmp_path, kit_attached):
    from kaggle_kit.sim.sandbox import Sandbox, SessionSpec

    nb = nbformat.v4.new_notebook()
    # The kit is an attached dataset, on the kernel's sys.path only: the ranks must find it too.
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in (kit_attached.bootstrap, *_CELLS)]
    spec = SessionSpec(nb, run_type="Batch", internet=False, accelerator="T4x2", time_limit_s=900,
                       mounts=(kit_attached.mount,), cwd_files={"ddp_work.py": _MODULE})
    result = Sandbox(tmp_path / "work").run(spec)
    assert result.status == "COMPLETE", result.failure_message
    facts = json.loads((result.output_dir / "ddp.json").read_text())
    assert facts["plan"] == [2, "gloo"]
    assert [r["rank"] for r in facts["results"]] == [0, 1]
    assert all(r["world"] == 2 and r["device"] == "cpu" and r["sum"] == 21.0 for r in facts["results"])
    assert "notebook cell" in facts["refusal"] and "Move it to a module" in facts["refusal"]
