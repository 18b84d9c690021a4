"""Checkpoint and mirror overheads, measured in one run against the in-process Kaggle stand-in.

Figures (printed, and written as JSON with ``--json PATH``):

* ``step_ratio_active``: median step time with checkpointing + mirroring active over a bare loop, same model
  (blocks interleaved so machine load hits both alike), at the ``--every-seconds`` cadence; plus the ratio
  projected for the default 10-minute cadence from the measured per-save cost.
* ``step_ratio_upload``: median step time while an upload is in flight over steps with the mirror idle.
* ``save_s_per_100mb``: ``Checkpointer.save`` wall time (serialize, SHA-256, fsync, rename) per 100 MB of state.
* ``restore_to_first_step_s``: from ``restore()`` to the end of the first training step, with the checkpoint
  attached as an input dataset (no download).

Run: ``.venv/bin/python benchmarks/bench_checkpoint.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn


def _model(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.1)]
    return nn.Sequential(*layers, nn.Linear(width, 10))


class _Loop:
    """A training loop over random data whose steps can be timed one by one."""

    def __init__(self, width: int, depth: int, batch: int) -> None:
        torch.manual_seed(0)
        self.model = _model(width, depth)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(batch, width)
        self.y = torch.randint(0, 10, (batch,))
        self.step_no = 0

    def step(self) -> float:
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step_no += 1
        return time.perf_counter() - start

    def kwargs(self) -> dict:
        return {"step": self.step_no, "epoch": 0, "model": self.model, "optimizer": self.opt,
                "data_state": {"position": self.step_no}}


def _state_bytes(loop: _Loop) -> int:
    params = sum(p.numel() * p.element_size() for p in loop.model.parameters())
    return params * 3  # weights + AdamW's two moments


_SERVER_PROCESS = """
import os, sys
from kaggle_kit.sim.server import SimServer
os.nice(19)  # it stands in for Kaggle's servers, whose CPUs are not the session's
with SimServer(sys.argv[1], username="alice", key=sys.argv[2]) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def _server(state: Path, key: str, *, separate: bool) -> Iterator[str]:
    """The stand-in, in this process or (``separate``) in its own at the lowest priority (Kaggle's is remote)."""
    from kaggle_kit.sim.server import SimServer

    if not separate:
        with SimServer(state, username="alice", key=key) as server:
            yield server.url
        return
    proc = subprocess.Popen([sys.executable, "-c", _SERVER_PROCESS, str(state), key], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def bench(args: argparse.Namespace) -> dict:
    from kaggle_kit.checkpoint import Checkpointer
    from kaggle_kit.kaggle_api import point_client_at
    from kaggle_kit.mirror import DatasetMirror
    tmp = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    root = tmp / "kaggle"
    for sub in ("input", "working", "temp"):
        (root / sub).mkdir(parents=True)
    key = secrets.token_hex(16)
    os.environ.update({"KAGGLE_KIT_KAGGLE_ROOT": str(root), "HOME": str(tmp / "home"), "TMPDIR": str(tmp),
                       "KAGGLE_CONFIG_DIR": str(tmp / "home" / ".kaggle"), "KAGGLE_USERNAME": "alice",
                       "KAGGLE_KEY": key})
    os.environ.pop("KAGGLE_API_TOKEN", None)
    tempfile.tempdir = str(tmp)
    torch.set_num_threads(args.threads)
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                     "load_avg_1min": round(os.getloadavg()[0], 2)}
    try:
        with _server(tmp / "state", key, separate=args.server == "process") as url:
            os.environ["KAGGLE_KIT_API_ENDPOINT"] = url
            point_client_at(url)
            results["server"] = args.server

            loop = _Loop(args.width, args.depth, args.batch)
            results["state_mb"] = round(_state_bytes(loop) / 1e6, 1)
            for _ in range(args.warmup):
                loop.step()

            mirror = DatasetMirror("alice/bench-checkpoints", poll_interval_s=0.2, backoff_s=0.2)
            ck = Checkpointer(root / "working" / "ck", mirror=mirror, keep=2, every_seconds=args.every_seconds)
            save_times: list[float] = []
            bare: list[float] = []
            active: list[float] = []
            busy_steps: list[float] = []
            idle_steps: list[float] = []
            for _ in range(args.blocks):
                # An upload left running from the previous active block would slow the bare steps.
                assert mirror.flush(timeout=600), mirror.status()
                for _ in range(args.block_steps):
                    bare.append(loop.step())
                for _ in range(args.block_steps):
                    start = time.perf_counter()
                    in_flight = not mirror.idle
                    loop.step()
                    before = time.perf_counter()
                    saved = ck.maybe_save(**loop.kwargs())
                    end = time.perf_counter()
                    if saved is not None:
                        save_times.append(end - before)
                    else:
                        (busy_steps if in_flight else idle_steps).append(end - start)
                    active.append(end - start)
            assert ck.flush(timeout=600), mirror.status()
            save_s = statistics.median(save_times) if save_times else float("nan")
            bare_mean = statistics.fmean(bare)
            idle_mean = statistics.fmean(idle_steps)
            busy_mean = statistics.fmean(busy_steps) if busy_steps else idle_mean
            upload_wall_s = len(busy_steps) * busy_mean / max(1, mirror.uploads)
            results.update({
                "saves": len(save_times),
                "uploads": mirror.uploads,
                "coalesced": mirror.skipped,
                "every_seconds": args.every_seconds,
                "bare_step_ms_mean": round(1000 * bare_mean, 2),
                "active_step_ms_mean": round(1000 * statistics.fmean(active), 2),
                "save_s_median": round(save_s, 4),
                "upload_wall_s": round(upload_wall_s, 3),
                "busy_steps": len(busy_steps),
                "idle_steps": len(idle_steps),
                # Every step of the active blocks (saves and uploads included) at the --every-seconds cadence.
                "step_ratio_active": round(statistics.fmean(active) / bare_mean, 4),
                # Steps with the mirror idle, over the bare loop (the cost of the cadence check alone).
                "step_ratio_idle": round(idle_mean / bare_mean, 4),
                # Steps while an upload is in flight, over steps with the mirror idle.
                "step_ratio_upload": round(busy_mean / idle_mean, 4),
                # The same costs spread over the default 10-minute cadence: one save and one upload per 600 s.
                "step_ratio_active_at_10min": round(
                    idle_mean / bare_mean + (upload_wall_s / 600.0) * (busy_mean / idle_mean - 1) + save_s / 600.0, 4
                ),
            })

            big = _Loop(args.big_width, args.big_depth, 8)
            big.step()
            big_ck = Checkpointer(tmp / "big", keep=1, run_name="bench")
            timings = []
            for _ in range(args.save_repeats):
                start = time.perf_counter()
                info = big_ck.save(**big.kwargs())
                timings.append(time.perf_counter() - start)
                big.step_no += 1
            size_mb = info.total_bytes / 1e6
            results["big_state_mb"] = round(size_mb, 1)
            results["save_s_per_100mb"] = round(statistics.median(timings) / size_mb * 100, 3)

            attached = root / "input" / "datasets" / "alice" / "bench-checkpoints"
            shutil.copytree(tmp / "big", attached)
            fresh = _Loop(args.big_width, args.big_depth, 8)
            fresh_ck = Checkpointer(root / "working" / "resume", keep=1, run_name="bench",
                                    resume_inputs=["alice/bench-checkpoints"])
            start = time.perf_counter()
            restored = fresh_ck.restore(model=fresh.model, optimizer=fresh.opt, search_mirror=False)
            fresh.step()
            results["restore_to_first_step_s"] = round(time.perf_counter() - start, 3)
            results["restore_source"] = restored.source if restored else None
            mirror.close(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine steadier)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--block-steps", type=int, default=200)
    parser.add_argument("--every-seconds", type=float, default=5.0)
    parser.add_argument("--big-width", type=int, default=2048)
    parser.add_argument("--big-depth", type=int, default=2)
    parser.add_argument("--save-repeats", type=int, default=3)
    parser.add_argument("--server", choices=("thread", "process"), default="thread",
                        help="run the stand-in in this process (default) or in its own, as Kaggle's is remote")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.block_steps, args.every_seconds, args.big_width = 2, 60, 1.0, 1024
    results = bench(args)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
