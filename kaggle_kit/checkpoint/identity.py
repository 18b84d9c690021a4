"""Which run a checkpoint belongs to: the run id every manifest carries, and the one function that makes it.

A run is identified by its mirror dataset (and an optional run name), or, without a mirror, by the run name or the
project and kernel. ``Checkpointer.restore`` resumes only checkpoints of its own run; ``kaggle-kit run`` names runs
with the same function, so both agree on what "the same run" means.
"""

from __future__ import annotations

import re

from kaggle_kit.errors import CheckpointError, HandleError
from kaggle_kit.handles import parse_dataset, parse_kernel, slugify

__all__ = ["RUN_ID_MAX_LENGTH", "run_id_for", "check_run_id"]

RUN_ID_MAX_LENGTH = 200
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RUN_ID = re.compile(r"[A-Za-z0-9][ -~]*")


def _run_name(run_name: str) -> str:
    if not isinstance(run_name, str) or not _RUN_NAME.fullmatch(run_name):
        raise CheckpointError(
            f"run_name={run_name!r}: use 1-64 letters, digits, dots, dashes or underscores, starting with a letter "
            "or digit (e.g. 'lr3e-4-seed2')"
        )
    return run_name


def run_id_for(
    *,
    mirror_handle: str | None = None,
    run_name: str | None = None,
    project: str | None = None,
    kernel: str | None = None,
) -> str:
    """The id of a training run, as every checkpoint of the run records it.

    With a mirror dataset the run is that dataset (plus ``run_name`` when given): ``"dataset:alice/cmfd-ckpts"``,
    ``"dataset:alice/cmfd-ckpts run:exp2"``; ``project`` and ``kernel`` are then ignored, so a renamed notebook
    keeps its run. Without one, the run is named by what is given of project, kernel and run name, e.g.
    ``"project:cmfd kernel:alice/cmfd-train"`` or ``"run:exp2"``.

    Args:
        mirror_handle: the checkpoint dataset ``owner/slug`` (a version suffix is ignored).
        run_name: an explicit name for the run (1-64 letters, digits, ``.``, ``-``, ``_``).
        project: the project's name (slugified).
        kernel: the training notebook ``owner/slug`` (a version suffix is ignored).

    Raises:
        CheckpointError: nothing identifies the run, or a part is malformed.
    """
    parts: list[str] = []
    try:
        if mirror_handle is not None:
            parts.append(f"dataset:{parse_dataset(mirror_handle, what='mirror dataset').ref}")
        else:
            if project is not None:
                slug = slugify(project) if isinstance(project, str) else ""
                if not slug:
                    raise CheckpointError(f"project={project!r}: pass the project's name (letters or digits)")
                parts.append(f"project:{slug[:64]}")
            if kernel is not None:
                parts.append(f"kernel:{parse_kernel(kernel, what='training notebook').ref}")
    except HandleError as exc:
        raise CheckpointError(f"cannot name the run: {exc}") from None
    if run_name is not None:
        parts.append(f"run:{_run_name(run_name)}")
    if not parts:
        raise CheckpointError(
            "nothing identifies the run: pass mirror_handle (the checkpoint dataset), run_name, or project and kernel"
        )
    return " ".join(parts)


def check_run_id(value: object, where: str) -> str | None:
    """A run id read from a file, checked: None (written before run ids existed) or a short printable string.

    Raises:
        CheckpointError: anything else, naming ``where``.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > RUN_ID_MAX_LENGTH or not _RUN_ID.fullmatch(value):
        raise CheckpointError(f"{where}: run_id {str(value)[:60]!r} is not a run id")
    return value
