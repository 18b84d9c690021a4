"""``kaggle-kit sim serve`` and ``kaggle-kit sim run``: the offline Kaggle's commands.

``serve`` runs the API stand-in (:class:`kaggle_kit.sim.server.SimServer`) until SIGINT or SIGTERM; ``run`` runs one
notebook in a sandboxed session (:class:`kaggle_kit.sim.sandbox.Sandbox`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from kaggle_kit import envvars
from kaggle_kit.errors import ConfigError, SandboxError
from kaggle_kit.kaggle_platform import SESSION_LIMIT_S, WEEKLY_GPU_QUOTA_S
from kaggle_kit.sim.faults import FAULT_KINDS, NO_RETRY_AFTER, parse_fault_spec
from kaggle_kit.sim.sandbox import INPUT_LAYOUTS, RUN_TYPES, InputMount, Sandbox, SessionSpec
from kaggle_kit.sim.server import SimServer
from kaggle_kit.sim.settings import SimSettings


class Subparsers(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as far as a command needs it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def register(subparsers: Subparsers) -> None:
    """Add the ``sim`` command with its ``serve`` and ``run`` sub-commands."""
    sim = subparsers.add_parser("sim", help="the offline Kaggle: API stand-in and session sandbox")
    sim.set_defaults(func=run)
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    add_serve_arguments(sim_sub.add_parser("serve", help="serve Kaggle's API on 127.0.0.1 until stopped"))
    add_run_arguments(sim_sub.add_parser("run", help="run a notebook in a sandboxed Kaggle session"))


def run(args: argparse.Namespace) -> int:
    """Run the ``sim`` sub-command that was parsed; returns the exit status."""
    commands = {"serve": serve_command, "run": run_command}
    return commands[args.sim_command](args)


def default_state_dir() -> Path:
    """Where ``sim serve`` keeps its state without ``--state``: ``$XDG_STATE_HOME/kaggle-kit/sim``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "kaggle-kit" / "sim"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``kaggle-kit sim serve``."""
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--state", type=Path, default=None,
                        help=f"folder for datasets, kernels and quota (default {default_state_dir()})")
    parser.add_argument("--user", default=None, help="the only user (default $KAGGLE_USERNAME or 'sim-user')")
    parser.add_argument("--key", default=None, help="its API key (default $KAGGLE_KEY, else a random one, printed)")
    parser.add_argument("--token", default=None, help="also accept this access token as Bearer (KAGGLE_API_TOKEN)")
    parser.add_argument("--processing-seconds", type=float, default=0.0,
                        help="how long a new dataset version processes before READY (default 0)")
    parser.add_argument("--competitions", type=Path, default=None,
                        help="folder of <slug>/ folders attached as competition sources")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of <owner>/<model>/<framework>/<variation>/<N>/ attached as model sources")
    parser.add_argument("--gpu-quota-hours", type=float, default=WEEKLY_GPU_QUOTA_S / 3600,
                        help="weekly GPU quota (default 30)")
    parser.add_argument("--clock-scale", type=float, default=1.0,
                        help="simulated seconds per real second in kernel sessions (default 1)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="store pushed kernels without running them (their status stays QUEUED)")
    add_layout_argument(parser)
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[,count=N][,match=TEXT][,...]",
                        help=f"arm a fault at start: KIND in {', '.join(FAULT_KINDS)}; options count=N, match=TEXT "
                             f"(substring of the path), retry_after=S (or {NO_RETRY_AFTER}: no header), delay=S, "
                             "for_s=S (persist S seconds once fired); repeatable")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="change a limit of the stand-in (Kaggle's values by default), e.g. max_gpu_sessions=4, "
                             "files_delay_s=5, files_refusal_status=404; repeatable")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")


def settings_from_args(items: list[str]) -> SimSettings:
    """The :class:`SimSettings` that ``--setting NAME=VALUE`` flags ask for (numbers as the field's type)."""
    fields = {f.name: f.type for f in dataclasses.fields(SimSettings)}
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise ConfigError(f"--setting {item!r}: write NAME=VALUE with NAME one of {', '.join(fields)}")
        try:
            changes[name] = int(value) if fields[name] in ("int", int) else float(value)
        except ValueError:
            raise ConfigError(f"--setting {item!r}: {name} needs a number") from None
    return SimSettings().replaced(**changes)


def serve_command(args: argparse.Namespace) -> int:
    """``kaggle-kit sim serve``: print the URL first, then serve until SIGINT or SIGTERM."""
    faults = [parse_fault_spec(spec) for spec in args.fault]
    settings = settings_from_args(args.setting)
    state = args.state or default_state_dir()
    user = args.user or os.environ.get(envvars.USERNAME) or "sim-user"
    # A key from this shell's environment is a secret of the user's: it is used, never printed.
    key_from_env = not args.key and bool(os.environ.get(envvars.KEY))
    key = args.key or os.environ.get(envvars.KEY) or secrets.token_hex(16)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    sandbox = None if args.no_sandbox else Sandbox(Path(state) / "sandbox")
    server = SimServer(state, username=user, key=key, token=args.token, port=args.port,
                       processing_seconds=args.processing_seconds, sandbox=sandbox,
                       competitions_dir=args.competitions, models_dir=args.models,
                       gpu_quota_s=args.gpu_quota_hours * 3600, clock_scale=args.clock_scale,
                       input_layout=args.input_layout, settings=settings)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        for fault in faults:
            server.faults.add(fault)
        print(server.url, flush=True)
        print(f"# offline Kaggle for user {user}, state in {Path(state).resolve()}", flush=True)
        print("# point the kaggle CLI (in another shell) at it with:", flush=True)
        exports = [(envvars.API_ENVIRONMENT, "LOCALHOST"), ("HTTP_PROXY", server.url), (envvars.USERNAME, user),
                   (envvars.KEY, key), (envvars.KIT_API_ENDPOINT, server.url)]
        for name, value in exports:
            if name == envvars.KEY and key_from_env:
                print(f"# {envvars.KEY}: the server uses the key in this shell's ${envvars.KEY} (not printed); set "
                      f"the same value there, or restart with --key", flush=True)
                continue
            print(f"export {name}={value}", flush=True)
        print("unset NO_PROXY no_proxy", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def add_layout_argument(parser: argparse.ArgumentParser) -> None:
    """``--input-layout``, shared by ``serve`` and ``run``."""
    parser.add_argument("--input-layout", choices=INPUT_LAYOUTS, default="current",
                        help="where inputs are mounted: current (/kaggle/input/datasets/<owner>/<slug>, "
                             "competitions/<slug>, notebooks/<owner>/<slug>, models/...) or legacy "
                             "(/kaggle/input/<slug>); Kaggle uses one or the other (default: current)")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``12h``, ``2d`` or combinations like ``1h30m``."""
    units = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    cleaned = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", cleaned)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd]?)", "", cleaned).strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 90s, 15m, 12h or 1h30m")
    return sum(float(number) * units[unit] for number, unit in parts)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``kaggle-kit sim run``."""
    parser.add_argument("notebook", metavar="NOTEBOOK", type=Path, help="an .ipynb, or a jupytext .py script")
    parser.add_argument("--type", dest="run_type", choices=RUN_TYPES, default="Batch",
                        help="Batch keeps /kaggle/working as the output; Interactive loses it (default: Batch)")
    parser.add_argument("--dataset", dest="datasets", action="append", default=[], metavar="SRC:OWNER/SLUG",
                        help="attach folder SRC read-only as dataset OWNER/SLUG (where --input-layout puts it; "
                             "repeatable)")
    parser.add_argument("--competition", dest="competitions", action="append", default=[], metavar="DIR",
                        help="attach a competition's data folder, named after the folder (repeatable)")
    parser.add_argument("--input", dest="inputs", action="append", default=[], metavar="SRC:TARGET[,TARGET...]",
                        help="attach folder SRC read-only at /kaggle/input/TARGET whatever the layout (repeatable; "
                             "TARGET defaults to SRC's name), e.g. data/ckpt:ckpt")
    add_layout_argument(parser)
    parser.add_argument("--no-internet", dest="internet", action="store_false",
                        help="run without internet (own network namespace; the API stand-in is unreachable)")
    parser.add_argument("--accelerator", default="none", help="simulated accelerator: none, T4, T4x2, P100, L4, ...")
    parser.add_argument("--time-limit", type=parse_duration, default=SESSION_LIMIT_S, metavar="DURATION",
                        help="session limit in Kaggle time, e.g. 12h or 90s (default: 12h)")
    parser.add_argument("--clock-scale", type=float, default=1.0, metavar="K",
                        help="Kaggle seconds per real second (3600 runs a 12h limit in 12 s)")
    parser.add_argument("--quota-left", type=parse_duration, default=None, metavar="DURATION",
                        help="weekly GPU quota left in Kaggle time, e.g. 30h (default: unlimited)")
    parser.add_argument("--secret", dest="secrets", action="append", default=[], metavar="LABEL[=ENV_VAR]",
                        help="attach a secret, its value read from environment variable ENV_VAR (default: LABEL); "
                             "values never go on the command line")
    parser.add_argument("--workdir", type=Path, default=Path(".kaggle-kit") / "sim",
                        help="where sessions and outputs go (default: .kaggle-kit/sim)")
    parser.add_argument("--api-url", default=os.environ.get(envvars.KIT_API_ENDPOINT),
                        help="URL of the API stand-in (`kaggle-kit sim serve`) for the kernel, when internet is on")


def mounts_from_args(inputs: list[str], competitions: list[str], datasets: list[str]) -> tuple[InputMount, ...]:
    """The mounts that ``--input SRC:TARGET[,TARGET...]``, ``--competition DIR`` and ``--dataset SRC:OWNER/SLUG`` ask
    for."""
    mounts: list[InputMount] = []
    for item in inputs:
        source, sep, rest = item.partition(":")
        path = Path(source).expanduser()
        names = [t.strip() for t in rest.split(",") if t.strip()] if sep else [path.resolve().name]
        if not source or not names:
            raise SandboxError(f"--input {item!r}: write SRC:TARGET, e.g. data/ckpt:ckpt")
        mounts.extend(InputMount(path, "path", name) for name in names)
    for item in competitions:
        path = Path(item).expanduser()
        mounts.append(InputMount(path, "competition", path.resolve().name))
    for item in datasets:
        source, _, handle = item.rpartition(":")
        if not source or handle.count("/") != 1:
            raise SandboxError(f"--dataset {item!r}: write SRC:OWNER/SLUG, e.g. data/ckpt:alice/ckpt")
        mounts.append(InputMount(Path(source).expanduser(), "dataset", handle))
    return tuple(mounts)


def secrets_from_args(items: list[str]) -> dict[str, str]:
    """The secrets ``--secret LABEL[=ENV_VAR]`` asks for, each read from its environment variable."""
    values: dict[str, str] = {}
    for item in items:
        label, _, var = item.partition("=")
        var = var or label
        if var not in os.environ:
            raise SandboxError(f"--secret {item}: environment variable {var} is not set; export it first")
        values[label] = os.environ[var]
    return values


def _echo(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM ends the session the way Ctrl-C does: every process of the session killed, its folders removed.
    raise SystemExit(128 + signum)


def run_command(args: argparse.Namespace) -> int:
    """``kaggle-kit sim run``: run one session and say where its notebook, log and output are."""
    spec = SessionSpec(
        args.notebook,
        run_type=args.run_type,
        mounts=mounts_from_args(args.inputs, args.competitions, args.datasets),
        input_layout=args.input_layout,
        internet=args.internet,
        accelerator=args.accelerator,
        time_limit_s=args.time_limit,
        clock_scale=args.clock_scale,
        quota_left_s=args.quota_left,
        api_url=args.api_url,
        secrets=secrets_from_args(args.secrets),
    )
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = Sandbox(args.workdir, echo=_echo).run(spec)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"session {result.session_id}: {result.status} in {result.wall_s:.1f} s (isolation: {result.isolation})")
    if result.isolation_note and result.isolation == "env":
        print(f"  fallback: {result.isolation_note}; the kernel used KAGGLE_KIT_KAGGLE_ROOT instead of /kaggle")
    print(f"  executed notebook: {result.executed_notebook}")
    print(f"  log: {result.log_path}")
    print(f"  sandbox log: {result.sandbox_log_path}")
    if result.output_dir is not None:
        print(f"  output: {result.output_dir}")
    else:
        print("  output: none (an Interactive session loses /kaggle/working)")
    if result.gpu_s:
        print(f"  GPU quota used: {result.gpu_s:.0f} s of Kaggle time")
    if result.status != "COMPLETE":
        print(f"kaggle-kit sim run: {result.failure_message}", file=sys.stderr)
        return 1
    return 0
