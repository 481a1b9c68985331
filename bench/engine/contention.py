"""Was the machine busy with something else while this run was being timed?

A throughput is the variant's only when nothing else competed for the same cores or GPU. Around
each epoch's training steps (the window of ``time/train_epoch_s``) the monitor reads, on Linux:

    contention/cpu_other_share  share of the granted cores' CPU time that OTHER processes used:
                                (busy - steal - this process's own, threads and reaped children
                                included) / all, from /proc/stat and /proc/self/stat
    contention/steal_share      share the hypervisor gave to other virtual machines (steal)
    contention/loadavg          1-minute load average at the end of the window

and on CUDA (NVML; skipped quietly where it is missing): ``contention/gpu_other_procs`` (compute
processes on the same GPU besides this one), ``gpu_sm_clock_mhz``, ``gpu_throttled`` (a power or
thermal slowdown was active; ``gpu_throttle_reasons`` keeps NVML's bit mask), ``gpu_temp_c`` and
``gpu_power_w``, sampled at the end of the window.

The run's value of each is over its epochs (time-weighted mean of the shares, mean load and clock,
max of processes, temperature and the throttle flags), from the checkpointed history, so a resumed
run counts its earlier epochs. ``contention/speed_contaminated`` is 1 when the other-process CPU
share exceeds the recipe's ``report.contention_threshold`` (default 0.25) or another process
computed on the GPU: its speed and time numbers measure the machine's load as much as the variant.
Cost: a few small /proc reads (and NVML calls on CUDA) per epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PREFIX = "contention/"
DEFAULT_THRESHOLD = 0.25
CONTAMINATED = PREFIX + "speed_contaminated"
_STAT, _SELF_STAT = Path("/proc/stat"), Path("/proc/self/stat")
# NVML throttle bits that slow a GPU down for reasons outside the run (power cap, thermal, sync
# boost, power brake); idle and the application clock setting are not contention.
_SLOWDOWN_BITS = 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80


def cpu_ticks(cpus: set[int] | None = None) -> tuple[int, int, int] | None:
    """(all, busy, steal) clock ticks summed over ``cpus`` (all of them when None), or None."""
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    total = busy = steal = 0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        values = [int(v) for v in fields[:8]] + [0] * (8 - len(fields[:8]))
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
        steal += values[7]
    return (total, busy, steal) if total else None


def own_ticks() -> int | None:
    """This process's CPU ticks: every thread's user and system time, and its reaped children's."""
    try:
        fields = _SELF_STAT.read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return sum(int(v) for v in fields[11:15])  # utime stime cutime cstime


def granted_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


class Gpu:
    """NVML readings for one CUDA device; every call guarded (no NVML, no driver, a MIG slice)."""

    def __init__(self, device: Any):
        self.handle = None
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            self.nvml = pynvml
            index = device.index if device.index is not None else torch.cuda.current_device()
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(
                uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            )
        except Exception:  # noqa: BLE001 - no pynvml, no driver, an old torch: no GPU readings
            self.handle = None

    def sample(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        nvml, out = self.nvml, {}
        readings = {
            "gpu_other_procs": lambda: float(other_processes(nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))),
            "gpu_sm_clock_mhz": lambda: float(nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM)),
            "gpu_throttle_reasons": lambda: float(_throttle_reasons(nvml, self.handle)),
            "gpu_temp_c": lambda: float(nvml.nvmlDeviceGetTemperature(self.handle, nvml.NVML_TEMPERATURE_GPU)),
            "gpu_power_w": lambda: nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0,
        }  # fmt: skip
        for name, read in readings.items():
            try:
                out[PREFIX + name] = read()
            except Exception:  # noqa: BLE001 - a reading this GPU or driver does not offer
                pass
        if PREFIX + "gpu_throttle_reasons" in out:
            out[PREFIX + "gpu_throttled"] = float(
                bool(int(out[PREFIX + "gpu_throttle_reasons"]) & _SLOWDOWN_BITS)
            )
        return out


def _throttle_reasons(nvml: Any, handle: Any) -> int:
    """NVML's slowdown bit mask (renamed "clocks event reasons" in newer bindings)."""
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    return (read or nvml.nvmlDeviceGetCurrentClocksThrottleReasons)(handle)


def other_processes(procs: list[Any]) -> int:
    """Compute processes on the GPU besides this one. In a container NVML may report host pids, in
    which this process does not appear by its own pid: then one of them is taken to be this one."""
    pids = {p.pid for p in procs}
    return len(pids - {os.getpid()}) if os.getpid() in pids else max(len(pids) - 1, 0)


class ContentionMonitor:
    """Per-epoch readings around the training steps (``start`` / ``stop``) and the run's summary."""

    def __init__(self, device: Any = None, threshold: float = DEFAULT_THRESHOLD):
        self.threshold = threshold
        self.cpus = granted_cpus()
        self.gpu = Gpu(device) if getattr(device, "type", None) == "cuda" else None
        self._start: tuple | None = None

    def start(self) -> None:
        self._start = (cpu_ticks(self.cpus), own_ticks())

    def stop(self) -> dict[str, float]:
        """This window's readings, as epoch metrics."""
        out: dict[str, float] = {}
        if self._start is not None:
            (before, own_before), after, own_after = self._start, cpu_ticks(self.cpus), own_ticks()
            if before and after and own_before is not None and own_after is not None and after[0] > before[0]:
                total, busy, steal = (a - b for a, b in zip(after, before))
                other = max(busy - steal - (own_after - own_before), 0)
                out[PREFIX + "cpu_other_share"] = min(other / total, 1.0)
                out[PREFIX + "steal_share"] = steal / total
        try:
            out[PREFIX + "loadavg"] = os.getloadavg()[0]
        except OSError:
            pass
        if self.gpu is not None:
            out.update(self.gpu.sample())
        self._start = None
        return out

    def summary(self, history: list[dict[str, float]]) -> dict[str, float]:
        """The run's values over its epochs, and whether its speed is contaminated."""
        return summarize(history, self.threshold)


def summarize(history: list[dict[str, float]], threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("cpu_other_share", "steal_share"):  # weighted by each epoch's training time
        pairs = [(r[PREFIX + key], r.get("time/train_epoch_s", 1.0)) for r in history if PREFIX + key in r]
        weight = sum(w for _, w in pairs)
        if pairs and weight > 0:
            out[PREFIX + key] = sum(v * w for v, w in pairs) / weight
    for key, reduce in (("loadavg", _mean), ("gpu_sm_clock_mhz", _mean), ("gpu_power_w", _mean),
                        ("gpu_other_procs", max), ("gpu_temp_c", max), ("gpu_throttled", max)):  # fmt: skip
        values = [r[PREFIX + key] for r in history if PREFIX + key in r]
        if values:
            out[PREFIX + key] = float(reduce(values))
    masks = [int(r[PREFIX + "gpu_throttle_reasons"]) for r in history if PREFIX + "gpu_throttle_reasons" in r]
    if masks:
        out[PREFIX + "gpu_throttle_reasons"] = float(_or(masks))
    if PREFIX + "cpu_other_share" in out or PREFIX + "gpu_other_procs" in out:
        busy = (
            out.get(PREFIX + "cpu_other_share", 0.0) > threshold
            or out.get(PREFIX + "gpu_other_procs", 0.0) > 0
        )
        out[CONTAMINATED] = float(busy)
        out[PREFIX + "threshold"] = threshold
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _or(masks: list[int]) -> int:
    out = 0
    for mask in masks:
        out |= mask
    return out
