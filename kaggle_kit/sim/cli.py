"""`kaggle-kit sim serve` and `kaggle-kit sim run`: the offline Kaggle's commands."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from kaggle_kit.sim import sandbox, server

    sim = subparsers.add_parser("sim", help="the offline Kaggle: API stand-in and session sandbox")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    serve = sim_sub.add_parser("serve", help="serve Kaggle's API on 127.0.0.1 until stopped")
    server.add_serve_arguments(serve)
    serve.set_defaults(func=server.serve_command)

    run = sim_sub.add_parser("run", help="run a notebook in a sandboxed Kaggle session")
    sandbox.add_run_arguments(run)
    run.set_defaults(func=sandbox.run_command)
