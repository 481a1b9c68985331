"""Machine facts needed before torch is imported (``bench run --dry-run`` stays fast)."""

from __future__ import annotations

import os
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def granted_cores() -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """avx512_bf16 or AMX among ``flags`` (default: this CPU's): bf16 autocast runs natively;
    otherwise it is emulated, 20-40x slower. ``BENCH_FORCE_EMULATED_BF16=1`` pretends it is
    emulated, ``=0`` that it is native (tests and demonstrations: the same test passes on a CPU
    with and one without native bf16)."""
    forced = os.environ.get("BENCH_FORCE_EMULATED_BF16")
    if forced in ("0", "1"):
        return forced == "0"
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_FLAGS)


# Emulated bf16 is skipped unless asked for: on such a CPU the two amp_bf16 runs of the smoke study
# took most of its time, and their throughput measures the emulation, not bf16.
EMULATED_BF16_ENV = "BENCH_EMULATED_BF16"  # set by `bench run --emulated-bf16`, read in every child
EMULATED_BF16_POLICIES = ("skip", "run")


def emulated_bf16_policy() -> str:
    """``skip`` (default) or ``run``: what a study does with amp_bf16 on a CPU without native bf16."""
    from bench.errors import RecipeError

    value = os.environ.get(EMULATED_BF16_ENV, "") or "skip"
    if value not in EMULATED_BF16_POLICIES:
        raise RecipeError(f"is {value!r}; allowed: skip (default) or run", source=EMULATED_BF16_ENV)
    return value


def emulated_bf16_reason(native: bool, policy: str | None = None) -> str | None:
    """Why an amp_bf16 run on the CPU is skipped (it names the flag that runs it), or None when it
    runs: the CPU has native bf16, or the emulation was asked for."""
    if native or (policy or emulated_bf16_policy()) == "run":
        return None
    return (
        "train.precision: amp_bf16 on this CPU is emulated (no avx512_bf16/amx_bf16), 20-40x slower than fp32, "
        "so it is skipped by default; `bench run --emulated-bf16 run` (or BENCH_EMULATED_BF16=run) trains it "
        "anyway, and a machine with native bf16 or a GPU trains it when the same command runs there"
    )


def native_bf16_cpu() -> bool:
    """True when this CPU runs bf16 natively (avx512_bf16 / AMX); else autocast emulates it,
    20-40x slower. ``BENCH_FORCE_EMULATED_BF16=1``/``=0`` pretends it is emulated/native (tests)."""
    if not cpu_has_native_bf16():
        return False
    if os.environ.get("BENCH_FORCE_EMULATED_BF16") == "0":
        return True  # forced: not torch's own answer either
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


EMULATED_BF16_NOTE = (
    "this CPU has no native bf16 (no avx512_bf16/amx_bf16): amp_bf16 variants on CPU run emulated, 20-40x "
    "slower than fp32, and their throughput measures the emulation"
)


def cuda_available(*, exact: bool = True) -> bool:
    """Whether CUDA can run here. ``exact``: ask torch (imports it); else a torch-free guess from
    the driver's files, for ``--dry-run``. ``BENCH_FORCE_NO_CUDA=1`` pretends there is none (tests)."""
    if os.environ.get("BENCH_FORCE_NO_CUDA") == "1":
        return False
    if exact:
        import torch

        return bool(torch.cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (
        (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists() or Path("/dev/kfd").exists()
    )


def precision_gap(
    precision: str,
    device_type: str,
    *,
    capability: tuple[int, int] | None = None,
    gpu_bf16: bool = True,
    cpu_bf16_native: bool | None = None,
) -> str | None:
    """The one rule for which precisions a device can run: why ``precision`` cannot run on a
    ``device_type`` device, or None. The engine passes torch's facts about the device;
    ``--dry-run`` and ``bench plan`` pass what they know without torch (None: not checked)."""
    if precision == "amp_fp16" and device_type != "cuda":
        return f"amp_fp16 needs a CUDA device (GradScaler + fp16 autocast); this run is on {device_type}"
    if precision == "tf32":
        if device_type != "cuda":
            return f"tf32 is a CUDA (Ampere or newer) matmul mode; this run is on {device_type}"
        if capability is not None and capability[0] < 8:
            return "tf32 needs an Ampere or newer GPU (compute capability >= 8.0)"
    if precision == "amp_bf16" and device_type == "cuda" and not gpu_bf16:
        return "amp_bf16 is not supported by this GPU"
    if precision == "amp_bf16" and device_type == "cpu" and cpu_bf16_native is not None:
        reason = emulated_bf16_reason(cpu_bf16_native)  # skipped unless --emulated-bf16 run
        return reason.removeprefix("train.precision: ") if reason else None
    return None


def device_gap(train, cuda: bool) -> str | None:
    """Why a variant (its ``train`` section) would be skipped on this machine for lack of a device,
    or None: ``precision_gap`` on what is known without torch."""
    device = train.device
    if device.startswith("cuda") and not cuda:
        return f"train.device: {device} needs a CUDA GPU; this machine has none"
    on_cuda = device.startswith("cuda") or (device == "auto" and cuda)
    gap = precision_gap(train.precision, "cuda" if on_cuda else "cpu", cpu_bf16_native=cpu_has_native_bf16())
    return f"train.precision: {gap}" if gap else None


def skipped_for_device(variants, cuda: bool) -> dict[str, list[str]]:
    """Reason -> the names of the runs it would skip here."""
    out: dict[str, list[str]] = {}
    for v in variants:
        reason = device_gap(v.body.train, cuda)
        if reason:
            out.setdefault(reason, []).append(v.name)
    return out


def skipped_names(variants, cuda: bool) -> list[str]:
    """The names of the runs this machine records as skipped for want of a device, untrained."""
    return [n for names in skipped_for_device(variants, cuda).values() for n in names]
