"""Honest speed and memory measurement: warm-up steps excluded, the device synchronised before
the clock is read, peak memory reset per variant (GPU allocator, or on CPU the process's peak
resident set, labelled as such)."""

from __future__ import annotations

import time
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput:
    """Images per second over the timed steps; the first ``warmup_steps`` are not timed."""

    def __init__(self, device: torch.device, warmup_steps: int = 0):
        self.device = device
        self.warmup_left = warmup_steps
        self.images = 0
        self.seconds = 0.0
        self._started: float | None = None

    def start(self) -> None:
        """Start (or resume) timing, unless still in warm-up."""
        if self.warmup_left == 0 and self._started is None:
            synchronize(self.device)
            self._started = time.perf_counter()

    def step(self, images: int) -> None:
        if self.warmup_left > 0:
            self.warmup_left -= 1
            if self.warmup_left == 0:
                self.start()
            return
        self.images += images

    def stop(self) -> None:
        """Pause timing (before evaluation, logging, checkpoints)."""
        if self._started is not None:
            synchronize(self.device)
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def state_dict(self) -> dict[str, float]:
        return {"images": self.images, "seconds": self.seconds, "warmup_left": self.warmup_left}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.images, self.seconds = int(state["images"]), float(state["seconds"])
        self.warmup_left = int(state["warmup_left"])

    @property
    def images_per_second(self) -> float:
        # NaN, not 0, without a timed image: warm-up that ends on an epoch's last step leaves the
        # clock running until stop() with nothing counted, which read as "0 img/s"
        return self.images / self.seconds if self.images and self.seconds > 0 else float("nan")


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMemory:
    """Peak GPU memory (allocator) on CUDA; peak resident set size of the process on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    @property
    def metric(self) -> str:
        return "memory/peak_gpu_mb" if self.device.type == "cuda" else "memory/peak_rss_mb"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # Linux: writing 5 resets the VmHWM high-water mark of this process
                _CLEAR_REFS.write_text("5")
            except OSError:
                pass

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
