"""Hot reload cost per cell: kaggle-kit's reloader against IPython's ``%autoreload 2``, side by side in one run.

Generates a package of 100 modules, imports it in a real IPython ``InteractiveShell`` and times the shell's
``pre_run_cell``/``post_execute`` hook path with only one reloader registered at a time:

(a) a cell when nothing changed, (b) a cell after a one-line change in a function body of one module, (c) the same
after a one-line change of a module-level constant (the module runs again). Both reloaders see each change: the file
is rewritten, its mtime moved forward so IPython's mtime test sees it too, then each hook runs once, alternating which
goes first.

Run: ``.venv/bin/python benchmarks/bench_reload.py [--modules 100] [--rounds 400] [--changes 30] [--also-import torch]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from IPython.core.interactiveshell import ExecutionInfo, InteractiveShell

_TEMPLATE = '''"""Generated module {i}."""
import math
{prev_import}

SCALE_{i} = {scale}
NAMES_{i} = ("a{i}", "b{i}")


def helper_{i}(x):
    return x + SCALE_{i}


def compute_{i}(values):
    total = 0.0
    for v in values:
        total += math.sqrt(abs(v)) * {factor}
    return total


class Model{i}:
    def __init__(self, width=4):
        self.width = width

    def forward(self, x):
        return helper_{i}(x) * self.width

    @property
    def size(self):
        return self.width * 2
'''


def _write_module(folder: Path, i: int, factor: int, scale: int | None = None) -> None:
    prev = f"from .mod{i - 1:03d} import helper_{i - 1}" if i else ""
    text = _TEMPLATE.format(i=i, prev_import=prev, factor=factor, scale=i if scale is None else scale)
    (folder / f"mod{i:03d}.py").write_text(text)


def _hooks(shell: InteractiveShell, hooks: list[tuple[str, Callable[..., None]]], *, on: bool) -> None:
    for event, func in hooks:
        registered = func in shell.events.callbacks[event]
        if on and not registered:
            shell.events.register(event, func)
        elif not on and registered:
            shell.events.unregister(event, func)


def _cell(shell: InteractiveShell, info: ExecutionInfo) -> float:
    """One cell's reload cost: the hooks IPython runs around a cell, timed together, output swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        shell.events.trigger("pre_run_cell", info)
        shell.events.trigger("post_execute")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=400, help="no-change cells per reloader")
    parser.add_argument("--changes", type=int, default=30, help="one-line changes, each seen by both reloaders")
    parser.add_argument("--also-import", default="", help="comma-separated libraries to import first, as a real "
                        "notebook would (e.g. torch): IPython's check grows with sys.modules")
    args = parser.parse_args()
    for library in filter(None, args.also_import.split(",")):
        importlib.import_module(library)

    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        root = Path(tmp)
        package = root / "benchpkg"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for i in range(args.modules):
            _write_module(package, i, 1)
        sys.path.insert(0, str(root))

        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "autoreload")
        shell.run_line_magic("autoreload", "2")
        ipython_magics = shell.magics_manager.registry["AutoreloadMagics"]
        ipython_hooks = [("pre_run_cell", ipython_magics.pre_run_cell),
                         ("post_execute", ipython_magics.post_execute_hook)]
        imports = "\n".join(f"import benchpkg.mod{i:03d}" for i in range(args.modules))
        shell.run_cell(imports)

        reload_module = importlib.import_module("kaggle_kit.hotreload.reloader")
        ours = reload_module.Reloader([root.resolve()])
        our_hooks = [("pre_run_cell", ours.pre_run_cell), ("post_execute", ours.post_execute)]
        _hooks(shell, our_hooks, on=True)
        shell.run_cell("pass")
        info = ExecutionInfo("pass", False, False, True, None, transformed_cell="pass")
        contenders = {"ipython": (ipython_hooks, our_hooks), "kaggle-kit": (our_hooks, ipython_hooks)}

        no_change: dict[str, list[float]] = {name: [] for name in contenders}
        block = 20
        for start in range(0, args.rounds, block):
            for name in (list(contenders) if start % (2 * block) == 0 else list(contenders)[::-1]):
                mine, other = contenders[name]
                _hooks(shell, other, on=False)
                _hooks(shell, mine, on=True)
                for _ in range(min(block, args.rounds - start)):
                    no_change[name].append(_cell(shell, info))

        middle = args.modules // 2
        target = package / f"mod{middle:03d}.py"
        mtime = target.stat().st_mtime

        def one_line_changes(edit: Callable[[int], None]) -> dict[str, list[float]]:
            nonlocal mtime
            times: dict[str, list[float]] = {name: [] for name in contenders}
            for k in range(args.changes):
                edit(k)
                mtime += 1.0  # IPython only reloads on a strictly newer mtime
                os.utime(target, (mtime, mtime))
                for name in (list(contenders) if k % 2 == 0 else list(contenders)[::-1]):
                    mine, other = contenders[name]
                    _hooks(shell, other, on=False)
                    _hooks(shell, mine, on=True)
                    times[name].append(_cell(shell, info))
            return times

        body = one_line_changes(lambda k: _write_module(package, middle, k + 2))
        probe = importlib.import_module(f"benchpkg.mod{middle:03d}")
        if getattr(probe, f"compute_{middle}")([4.0]) != 2.0 * (args.changes + 1):
            raise SystemExit("the last change did not reach the module: the benchmark measured nothing")
        constant = one_line_changes(lambda k: _write_module(package, middle, args.changes + 1, scale=1000 + k))
        if getattr(probe, f"SCALE_{middle}") != 1000 + args.changes - 1:
            raise SystemExit("the last constant change did not reach the module: the benchmark measured nothing")

        def ms(values: list[float]) -> str:
            return f"median {statistics.median(values) * 1e3:7.3f} ms  p90 {sorted(values)[int(len(values) * 0.9)] * 1e3:7.3f} ms"

        print(f"{args.modules} project modules, {len(sys.modules)} modules in sys.modules, IPython "
              f"{importlib.import_module('IPython').__version__}, Python {sys.version.split()[0]}")
        for label, data in (("(a) no change", no_change), ("(b) one-line change in a function body", body),
                            ("(c) one-line change of a module-level constant", constant)):
            print(label)
            for name, values in data.items():
                print(f"  {name:<11} {ms(values)}  (n={len(values)})")
            ratio = statistics.median(data["kaggle-kit"]) / statistics.median(data["ipython"])
            print(f"  ratio kaggle-kit / ipython (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
