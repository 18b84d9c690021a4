"""What Kaggle is, in one place: machine shapes, retired shapes, session limits, quotas, burn rates, file limits.

Every fact here is a setting, not a law: Kaggle changes them without notice. Sources: the official client's source
(``kaggle/api/kaggle_api_extended.py``: the retired-shape table, the documented shapes), Kaggle's documentation
(session limits, the working folder's size, the weekly quotas) and users' reports where Kaggle documents nothing (the
two-T4 burn rate), each cited where it is set. The offline Kaggle simulates these same values, so a rehearsal and the
guard never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Machine",
    "MACHINE_SHAPES",
    "RETIRED_SHAPES",
    "DEFAULT_GPU_SHAPE",
    "DEFAULT_TPU_SHAPE",
    "SESSION_LIMIT_S",
    "TPU_SESSION_LIMIT_S",
    "WEEKLY_GPU_QUOTA_S",
    "WEEKLY_TPU_QUOTA_S",
    "DEFAULT_BURN_RATES",
    "DEFAULT_BURN_RATE",
    "WORKING_DIR_LIMIT_BYTES",
    "KAGGLE_OUTPUT_FILES",
    "MAX_DATASET_VERSION_FILES",
    "MAX_CONCURRENT_GPU_SESSIONS",
    "resolve_shape",
    "machine_for",
    "shape_for",
    "burn_rate",
    "tpu_burn_rate",
    "is_tpu",
]


@dataclass(frozen=True)
class Machine:
    """What a machine shape gives a session: the accelerator kind (``"T4x2"``, ``"TPUv5e8"``, ``"none"``)."""

    shape: str | None
    accelerator: str
    gpus: int

    @property
    def uses_gpu_quota(self) -> bool:
        return self.gpus > 0

    @property
    def uses_tpu_quota(self) -> bool:
        return is_tpu(self.accelerator)


# Documented shapes (kernel-metadata.json ``machine_shape``, ``kernels push --accelerator``) and what each runs on.
# NvidiaTeslaT4 is the editor's "GPU T4 x2" (the CLI help says two GPUs; the docs are ambiguous): detect at run time.
MACHINE_SHAPES: dict[str, Machine] = {
    "NvidiaTeslaT4": Machine("NvidiaTeslaT4", "T4x2", 2),
    "NvidiaTeslaT4Highmem": Machine("NvidiaTeslaT4Highmem", "T4x2", 2),
    "NvidiaL4": Machine("NvidiaL4", "L4", 1),
    "NvidiaL4X1": Machine("NvidiaL4X1", "L4", 1),
    "NvidiaTeslaA100": Machine("NvidiaTeslaA100", "A100", 1),
    "NvidiaH100": Machine("NvidiaH100", "H100", 1),
    "TpuV5E8": Machine("TpuV5E8", "TPUv5e8", 0),
    "TpuV6E8": Machine("TpuV6E8", "TPUv6e8", 0),
}
# Retired shapes and what Kaggle runs instead (None: CPU only), as the client's table says; it only warns.
RETIRED_SHAPES: dict[str, str | None] = {
    "NvidiaTeslaP100": "NvidiaTeslaT4",
    "TpuV38": "TpuV5E8",
    "Tpu1VmV38": "TpuV5E8",
    "TpuV232": None,
    "TpuV2256": None,
}
DEFAULT_GPU_SHAPE = "NvidiaTeslaT4"  # enable_gpu without a machine_shape
DEFAULT_TPU_SHAPE = "TpuV5E8"  # enable_tpu without a machine_shape
_CPU = Machine(None, "none", 0)

# Session wall-time limits (Kaggle's documentation): 12 hours on CPU and GPU, 9 on TPU.
SESSION_LIMIT_S = 12 * 3600.0
TPU_SESSION_LIMIT_S = 9 * 3600.0
# Weekly quotas; Kaggle varies the GPU figure (30 h is the usual one) and shows the current one on the settings page.
WEEKLY_GPU_QUOTA_S = 30 * 3600.0
WEEKLY_TPU_QUOTA_S = 20 * 3600.0
# GPU quota seconds charged per wall second; observed, not documented (a two-T4 session was seen billed at twice).
DEFAULT_BURN_RATES: dict[str, float] = {"none": 0.0, "T4x2": 2.0}
DEFAULT_BURN_RATE = 1.0
# /kaggle/working is capped at 20 GB (Kaggle's documentation of the output folder).
WORKING_DIR_LIMIT_BYTES = 20 * 10**9
# Files in one dataset version: "Dataset version creation error: The file count exceeds the maximum of 1000", as
# users report it (github.com/whirlwide/candlestick_retriever/issues/15).
MAX_DATASET_VERSION_FILES = 1000
# Batch GPU sessions running or queued at once: a push beyond them fails with "Maximum batch GPU session count of 2
# reached." (github.com/adapter-hub/playground/pull/4, 2022; it was 4 in 2019, github.com/Kaggle/kaggle-cli/issues/185).
MAX_CONCURRENT_GPU_SESSIONS = 2


def is_tpu(accelerator: str) -> bool:
    return accelerator.upper().startswith("TPU")


def resolve_shape(shape: str) -> tuple[str | None, str | None]:
    """A requested shape as Kaggle would run it: (the shape that runs or None for CPU, a warning for a retired one).

    Matching is case-insensitive, as the client's table is.

    Raises:
        ValueError: naming the valid shapes, for a shape Kaggle does not know.
    """
    by_lower = {name.lower(): name for name in MACHINE_SHAPES}
    retired = {name.lower(): name for name in RETIRED_SHAPES}
    key = shape.strip().lower()
    if key in by_lower:
        return by_lower[key], None
    if key in retired:
        name = retired[key]
        instead = RETIRED_SHAPES[name]
        return instead, f"{name} is retired; sessions run on {instead or 'CPU, with no accelerator'} instead"
    raise ValueError(f"unknown machine shape {shape!r}; Kaggle's shapes are {', '.join(MACHINE_SHAPES)}")


def machine_for(shape: str | None, *, enable_gpu: bool = False, enable_tpu: bool = False) -> Machine:
    """The machine a session gets for a push's ``machine_shape`` and GPU/TPU flags.

    Raises:
        ValueError: an unknown shape (see :func:`resolve_shape`).
    """
    if shape and shape.strip().lower() not in ("", "none", "cpu"):
        runs, _ = resolve_shape(shape)
        return MACHINE_SHAPES[runs] if runs else _CPU
    if enable_tpu:
        return MACHINE_SHAPES[DEFAULT_TPU_SHAPE]
    if enable_gpu:
        return MACHINE_SHAPES[DEFAULT_GPU_SHAPE]
    return _CPU


def shape_for(accelerator: str) -> str | None:
    """The first documented machine shape that runs ``accelerator`` (None for ``"none"``, CPU).

    Raises:
        ValueError: no documented shape gives that accelerator.
    """
    if accelerator == "none":
        return None
    for shape, machine in MACHINE_SHAPES.items():
        if machine.accelerator == accelerator:
            return shape
    known = sorted({m.accelerator for m in MACHINE_SHAPES.values()})
    raise ValueError(f"no Kaggle machine shape gives accelerator {accelerator!r}; known: none, {', '.join(known)}")


def tpu_burn_rate(accelerator: str) -> float:
    """TPU quota seconds charged per wall second on ``accelerator``: 1 on a TPU, else 0."""
    return 1.0 if is_tpu(accelerator) else 0.0


def burn_rate(accelerator: str, overrides: dict[str, float] | None = None) -> float:
    """GPU quota seconds charged per wall second on ``accelerator``; TPUs bill their own quota (see
    :func:`tpu_burn_rate`), so 0 here."""
    rates = {**DEFAULT_BURN_RATES, **(overrides or {})}
    if accelerator in rates:
        return float(rates[accelerator])
    if is_tpu(accelerator):
        return 0.0
    return DEFAULT_BURN_RATE

# The files Kaggle itself adds to a session's output: the executed code, the rendered results and their metadata.
KAGGLE_OUTPUT_FILES = ("__notebook__.ipynb", "__script__.py", "__script__.ipynb", "__results__.html", "custom.css",
                       "__output__.json")
