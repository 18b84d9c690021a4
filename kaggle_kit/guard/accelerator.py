"""Which GPUs this session has, and how a training plan should use them.

Detection asks torch first, then ``nvidia-smi`` when torch cannot see the devices (a CPU-only torch build, a broken
driver binding). In the offline sandbox ``KAGGLE_KIT_SIM_ACCELERATOR`` states the accelerator instead, so every
branch (no GPU, one T4, two T4s, the retired P100) can be exercised on a CPU machine.

Planning turns "this run wants a GPU" into a device plan: one process on one device, or one process per GPU with
DDP when the session has two (Kaggle bills a two-T4 session at twice the rate, so a single-GPU run there wastes
half the quota). The P100 is refused up front: current Kaggle images ship no kernels for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from kaggle_kit import envvars
from kaggle_kit.errors import AcceleratorError, ConfigError

SIM_ACCELERATOR_ENV = envvars.SIM_ACCELERATOR
PLANS = ("gpu", "cpu", "auto")
ON_TWO_GPUS = ("ddp", "refuse")
_GIB = 1024**3

# (device name, memory in bytes) per simulated device, as Kaggle's images report them.
_SIM_DEVICES: dict[str, tuple[str, int]] = {
    "T4": ("Tesla T4", 15 * _GIB),
    "P100": ("Tesla P100-PCIE-16GB", 16 * _GIB),
    "L4": ("NVIDIA L4", 22 * _GIB),
    "A100": ("NVIDIA A100-SXM4-40GB", 40 * _GIB),
    "H100": ("NVIDIA H100 80GB HBM3", 80 * _GIB),
}
_SHORT_NAMES = ("T4", "P100", "L4", "A100", "H100", "H200", "V100", "A10G", "K80")
# What to choose instead, in the words of Kaggle's notebook editor and of kernel-metadata.json.
_CHOOSE_T4X2 = ("Settings > Accelerator > 'GPU T4 x2' in the notebook editor "
                "(kernel-metadata.json: \"machine_shape\": \"NvidiaTeslaT4\", \"enable_gpu\": true)")
_CHOOSE_ONE_GPU = "Settings > Accelerator > a single-GPU choice such as 'GPU L4' in the notebook editor"

__all__ = ["AcceleratorInfo", "DevicePlan", "detect_accelerator", "plan_devices", "simulated_accelerators",
           "SIM_ACCELERATOR_ENV"]


@dataclass(frozen=True)
class AcceleratorInfo:
    """The GPUs this session has.

    Attributes:
        count: Number of GPUs.
        names: Device name per GPU.
        memory_bytes: Total memory per GPU.
        kind: Short description such as ``"T4x2"``, ``"P100"`` or ``"none"``.
        source: ``"torch"``, ``"nvidia-smi"``, ``"simulated"``, or ``"none"`` when nothing was found.
        cuda_usable: Whether torch can run CUDA kernels on these devices in this process.
    """

    count: int
    names: tuple[str, ...]
    memory_bytes: tuple[int, ...]
    kind: str
    source: str
    cuda_usable: bool = False

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"

    def describe(self) -> str:
        if self.count == 0:
            return f"no GPU ({self.source})"
        mem = ", ".join(f"{name} {m / _GIB:.1f} GiB" for name, m in zip(self.names, self.memory_bytes))
        return f"{self.kind}: {mem} ({self.source})"


@dataclass(frozen=True)
class DevicePlan:
    """How a run uses the session's devices.

    Attributes:
        world_size: Processes to run (one per GPU under DDP, else 1).
        backend: ``"nccl"`` on CUDA devices, ``"gloo"`` on CPU (the sandbox's simulated GPUs run on the CPU).
        device_type: ``"cuda"`` or ``"cpu"``.
        accelerator: The detected accelerator kind.
        notes: Things the user should know (a simulated accelerator, a CPU plan on a GPU session).
    """

    world_size: int
    backend: str
    device_type: str
    accelerator: str
    notes: tuple[str, ...] = field(default=())

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def simulated_accelerators() -> tuple[str, ...]:
    """Values ``KAGGLE_KIT_SIM_ACCELERATOR`` accepts: ``none``, a device such as ``T4``, or ``T4x2``-style counts."""
    return ("none", *_SIM_DEVICES, *(f"{name}x2" for name in _SIM_DEVICES), "L4x4")


def _short_name(name: str) -> str:
    for short in _SHORT_NAMES:
        if re.search(rf"(?<![A-Za-z0-9]){short}(?![0-9])", name, flags=re.IGNORECASE):
            return short
    return name


def _kind(names: tuple[str, ...]) -> str:
    if not names:
        return "none"
    shorts = [_short_name(n) for n in names]
    base = shorts[0] if len(set(shorts)) == 1 else "+".join(shorts)
    return f"{base}x{len(names)}" if len(names) > 1 and len(set(shorts)) == 1 else base


def _simulated(value: str) -> AcceleratorInfo:
    spec = value.strip()
    if spec.lower() in ("none", "cpu", ""):
        return AcceleratorInfo(0, (), (), "none", "simulated")
    match = re.fullmatch(r"([A-Za-z0-9]+?)(?:[xX](\d+))?", spec)
    device = next((k for k in _SIM_DEVICES if match and k.lower() == match.group(1).lower()), None)
    if match is None or device is None:
        raise ConfigError(f"{SIM_ACCELERATOR_ENV}={value!r} is not a known accelerator: use one of "
                          f"{', '.join(simulated_accelerators())}")
    count = int(match.group(2) or 1)
    if count < 1:
        raise ConfigError(f"{SIM_ACCELERATOR_ENV}={value!r} asks for {count} GPUs: use at least 1, or 'none'")
    name, memory = _SIM_DEVICES[device]
    names = (name,) * count
    return AcceleratorInfo(count, names, (memory,) * count, _kind(names), "simulated",
                           cuda_usable=_torch_cuda_count() >= count)


def _torch_cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError:  # a driver that torch cannot initialise
        return 0


def _from_torch() -> AcceleratorInfo | None:
    count = _torch_cuda_count()
    if count == 0:
        return None
    import torch

    names = tuple(torch.cuda.get_device_name(i) for i in range(count))
    memory = tuple(int(torch.cuda.get_device_properties(i).total_memory) for i in range(count))
    return AcceleratorInfo(count, names, memory, _kind(names), "torch", cuda_usable=True)


def _from_nvidia_smi() -> AcceleratorInfo | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names: list[str] = []
    memory: list[int] = []
    for line in out.splitlines():
        name, _, mib = line.rpartition(",")
        if not name.strip():
            continue
        names.append(name.strip())
        try:
            memory.append(int(float(mib.strip()) * 1024**2))
        except ValueError:
            memory.append(0)
    if not names:
        return None
    return AcceleratorInfo(len(names), tuple(names), tuple(memory), _kind(tuple(names)), "nvidia-smi")


def detect_accelerator() -> AcceleratorInfo:
    """Detect the session's GPUs: the sandbox's simulated accelerator, else torch, else nvidia-smi.

    Raises:
        ConfigError: ``KAGGLE_KIT_SIM_ACCELERATOR`` names no known accelerator.
    """
    sim = os.environ.get(SIM_ACCELERATOR_ENV)
    if sim is not None:
        return _simulated(sim)
    return _from_torch() or _from_nvidia_smi() or AcceleratorInfo(0, (), (), "none", "none")


def plan_devices(plan: str, info: AcceleratorInfo, *, on_two_gpus: str = "ddp") -> DevicePlan:
    """Decide how a run uses the session's devices, refusing before any training when they do not fit the plan.

    Args:
        plan: ``"gpu"`` (the run needs a GPU and is written for one device), ``"cpu"`` (no GPU wanted), or ``"auto"``
            (a GPU when there is one, else the CPU).
        info: What :func:`detect_accelerator` found.
        on_two_gpus: With several GPUs and a single-device plan, ``"ddp"`` trains data-parallel across all of them;
            ``"refuse"`` stops so the user can pick a single-GPU accelerator instead of paying for an idle one.

    Raises:
        AcceleratorError: a P100; no GPU although one is planned; several GPUs with ``on_two_gpus="refuse"``. The
            message names the accelerator setting to choose.
        ConfigError: ``plan`` or ``on_two_gpus`` is not one of the accepted values.
    """
    if plan not in PLANS:
        raise ConfigError(f"device plan {plan!r} is not one of {', '.join(PLANS)}")
    if on_two_gpus not in ON_TWO_GPUS:
        raise ConfigError(f"on_two_gpus={on_two_gpus!r} is not one of {', '.join(ON_TWO_GPUS)}")
    notes: list[str] = []
    if info.simulated:
        notes.append(f"accelerator {info.kind} is simulated ({SIM_ACCELERATOR_ENV}); "
                     + ("CUDA is used" if info.cuda_usable else "the run uses the CPU"))
    if plan == "cpu":
        if info.count:
            notes.append(f"a CPU plan on a {info.kind} session still spends GPU quota: choose Settings > Accelerator "
                         "> None unless the GPU is wanted")
        return DevicePlan(1, "gloo", "cpu", info.kind, tuple(notes))
    if any(_short_name(n) == "P100" for n in info.names):
        raise AcceleratorError(
            f"the session has a {info.kind}: current Kaggle images ship no CUDA kernels for the P100 (retired), so "
            f"training would fail or crawl. Choose {_CHOOSE_T4X2} and start the session again.")
    if info.count == 0:
        if plan == "auto":
            return DevicePlan(1, "gloo", "cpu", info.kind, tuple(notes))
        raise AcceleratorError(
            "the plan needs a GPU but this session has none, and training on the CPU would take days. "
            f"Choose {_CHOOSE_T4X2} (or set the plan to 'cpu' on purpose) and start the session again.")
    device_type = "cuda" if info.cuda_usable else "cpu"
    backend = "nccl" if device_type == "cuda" else "gloo"
    if info.count == 1:
        return DevicePlan(1, backend, device_type, info.kind, tuple(notes))
    if on_two_gpus == "refuse":
        raise AcceleratorError(
            f"the session has {info.count} GPUs ({info.kind}), billed at about {info.count}x the single-GPU rate, and "
            f"on_two_gpus is 'refuse'. Choose {_CHOOSE_ONE_GPU} (kernel-metadata.json: \"machine_shape\": "
            "\"NvidiaL4\"), or set on_two_gpus to 'ddp' to train data-parallel on all of them.")
    notes.append(f"{info.count} GPUs: training data-parallel (DDP, {backend}) with {info.count} processes; the global "
                 "batch, learning rate and epochs stay as configured")
    return DevicePlan(info.count, backend, device_type, info.kind, tuple(notes))
