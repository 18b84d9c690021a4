"""``kaggle-kit sim serve`` and ``kaggle-kit sim run``: the offline Kaggle's commands.

An adapter over the flags and handlers that ``kaggle_kit.sim.server`` and ``kaggle_kit.sim.sandbox`` define today.
"""

from __future__ import annotations

import argparse

from kaggle_kit.sim import sandbox, server

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="the offline Kaggle: API stand-in and session sandbox")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    serve = sim_sub.add_parser("serve", help="serve Kaggle's API on 127.0.0.1 until stopped")
    server.add_serve_arguments(serve)
    run_parser = sim_sub.add_parser("run", help="run a notebook in a sandboxed Kaggle session")
    sandbox.add_run_arguments(run_parser)
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.sim_command == "serve":
        return server.serve_command(args)
    return sandbox.run_command(args)
