"""A tiny, fully deterministic training run that checkpoints and resumes; the kill -9 tests run it as a subprocess.

Dropout (torch RNG), input noise from numpy's and python's global generators, Adam and a cosine schedule all have to
come back exactly for the final weights to match an uninterrupted run. The data order is a function of (seed, epoch)
and the position within the epoch travels as ``data_state``, so a resume continues with the exact next batch.

Test hooks (never used by the kit): ``--sigterm-at N`` sends SIGTERM to the process group after step N;
``--kill-in-write N`` SIGKILLs the process halfway through writing the N-th checkpoint's tensor file;
``--kill-in-upload N`` SIGKILLs it (and its uploader process) once the N-th upload has started; ``--hold-at-end``
waits for its standard input to close after the last step, before the final save, so a kill timed by the caller
always lands before the run finishes, however fast or slow the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from torch import nn

BATCH = 8
SAMPLES = 64


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLES, 12, generator=gen)
    y = (x[:, :3].sum(dim=1, keepdim=True) > 0).float()
    return x, y


def _order(seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(seed * 1009 + epoch))


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))


def _install_kill_hook(kill_in_write: int) -> None:
    if kill_in_write:
        real_save = torch.save
        calls = {"n": 0}

        def dying_save(obj, f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if not hasattr(f, "write"):  # the script's own final save to a path, not a checkpoint's tensors
                return real_save(obj, f, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == kill_in_write:
                f.write(b"PK\x03\x04 half a zip file")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        torch.save = dying_save


def _die_mid_upload(mirror: object, nth: int, *, wait: bool) -> None:
    """SIGKILL this process (and, with it, the uploader process) once the ``nth`` upload has started."""
    while wait and mirror.status()["started"] < nth:  # type: ignore[attr-defined]
        time.sleep(0.01)
    if mirror.status()["started"] >= nth:  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--every-seconds", type=float, default=0.05)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--mirror", default="")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--resume-input", action="append", default=[])
    parser.add_argument("--kill-in-write", type=int, default=0)
    parser.add_argument("--kill-in-upload", type=int, default=0)
    parser.add_argument("--sigterm-at", type=int, default=0)
    parser.add_argument("--hold-at-end", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train (resuming if a checkpoint exists) and write the final weights to ``--out``."""
    args = _parse(argv)

    from kaggle_kit.checkpoint import Checkpointer

    _install_kill_hook(args.kill_in_write)
    mirror = None
    if args.mirror:
        from kaggle_kit.mirror import DatasetMirror

        mirror = DatasetMirror(args.mirror, poll_interval_s=0.05)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    x, y = _data(args.seed)
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    ckpt = Checkpointer(
        args.ckpt_dir, mirror=mirror, keep=2, every_seconds=args.every_seconds, monitor="loss", mode="min",
        config={"seed": args.seed, "steps": args.steps, "hidden": 32}, run_name=args.run_name,
        resume_inputs=args.resume_input,
    )
    restored = ckpt.restore(model=model, optimizer=optimizer, scheduler=scheduler)
    step, epoch, position = 0, 0, 0
    if restored is not None:
        step, epoch, position = restored.step, restored.epoch, int(restored.data_state["position"])
        print(f"RESUMED step={step} source={restored.source}", flush=True)
    per_epoch = SAMPLES // BATCH
    loss_fn = nn.BCEWithLogitsLoss()
    with ckpt.save_on_signal():
        while step < args.steps:
            idx = _order(args.seed, epoch)[position * BATCH : (position + 1) * BATCH]
            noise = torch.from_numpy(np.random.normal(0.0, 0.05, size=(BATCH, 12)).astype(np.float32))
            scale = 1.0 + random.uniform(-0.01, 0.01)
            model.train()
            loss = loss_fn(model(x[idx] * scale + noise), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            position += 1
            if position == per_epoch:
                epoch, position = epoch + 1, 0
            ckpt.maybe_save(
                step=step, epoch=epoch, model=model, optimizer=optimizer, scheduler=scheduler,
                metrics={"loss": loss.item()}, data_state={"epoch_seed": args.seed, "position": position},
            )
            if mirror is not None and args.kill_in_upload:
                _die_mid_upload(mirror, args.kill_in_upload, wait=False)
            if step == args.sigterm_at:
                # As Kaggle stops a session: SIGTERM to the whole process group, the uploader included.
                os.killpg(os.getpgid(0), signal.SIGTERM)
            if args.step_sleep:
                time.sleep(args.step_sleep)
    if args.hold_at_end:
        sys.stdin.read()
    ckpt.save(step=step, epoch=epoch, model=model, optimizer=optimizer, scheduler=scheduler,
              data_state={"epoch_seed": args.seed, "position": position})
    if mirror is not None and args.kill_in_upload:
        _die_mid_upload(mirror, args.kill_in_upload, wait=True)
    if mirror is not None and not ckpt.flush(timeout=120):
        print("FLUSH TIMED OUT", flush=True)
        return 3
    torch.save(model.state_dict(), args.out)
    print(f"DONE step={step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
