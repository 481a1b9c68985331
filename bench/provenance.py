"""Where a number came from: code version, library versions, device and the backend flags that
change what "fp32" means. ``collect`` gives flat ``env.*`` strings that every child run logs as
MLflow tags, so ``bench report`` can print them and warn when compared runs differ.

The static part (git, versions, CPU) is read once per process; the device name and backend flags
are read on every call because a variant may change them."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.hardware import cpu_flags

PREFIX = "env."
UNKNOWN = "n/a"
PACKAGES = ("torch", "timm", "mlflow", "optuna")
CPU_FLAGS = ("avx2", "avx512_bf16", "amx_bf16")
# tags that must agree for two runs' numbers to be comparable (the report warns otherwise)
COMPARABLE = ("env.device_name", "env.torch", "env.cuda", "env.cudnn", "env.timm", "env.python")


def collect(device=None) -> dict[str, str]:
    """All ``env.*`` tags for a run on ``device`` (a ``torch.device``, a string, or None for CPU)."""
    import torch

    info = dict(_static())
    kind = torch.device(device).type if device is not None else "cpu"
    info["env.device_type"] = kind
    info["env.device_name"] = _gpu_name(device) if kind == "cuda" else info["env.cpu_model"]
    info["env.cpu_native_bf16"] = str(native_bf16()).lower()
    info["env.allow_tf32_matmul"] = str(bool(torch.backends.cuda.matmul.allow_tf32)).lower()
    info["env.allow_tf32_cudnn"] = str(bool(torch.backends.cudnn.allow_tf32)).lower()
    info["env.cudnn_benchmark"] = str(bool(torch.backends.cudnn.benchmark)).lower()
    info["env.float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return info


def native_bf16() -> bool:
    """True when the CPU runs bf16 natively; False means amp_bf16 on this CPU is emulated and
    typically 20-40x slower than fp32."""
    from bench.tricks.precision import native_bf16_cpu

    return native_bf16_cpu()


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, str]:
    import bench

    info = {"env.bench_version": bench.__version__}
    commit, dirty = _git(Path(bench.__file__).resolve().parent)
    info["env.git_commit"], info["env.git_dirty"] = commit, dirty
    info["env.python"] = platform.python_version()
    for name in PACKAGES:
        info[f"env.{name}"] = _version(name)
    info["env.cuda"], info["env.cudnn"] = _cuda_versions()
    info["env.cpu_model"] = _cpu_model()
    flags = cpu_flags()
    info["env.cpu_flags"] = ",".join(f for f in CPU_FLAGS if f in flags) or "none"
    return info


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def _git(directory: Path) -> tuple[str, str]:
    """(commit, "true"/"false") of the repository holding ``directory``; n/a outside a repository."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return UNKNOWN, UNKNOWN
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, UNKNOWN if status is None else str(bool(status)).lower()


def _cuda_versions() -> tuple[str, str]:
    import torch

    cuda = torch.version.cuda or UNKNOWN
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the run
        cudnn = None
    return cuda, str(cudnn) if cudnn else UNKNOWN


def _gpu_name(device) -> str:
    import torch

    try:
        return torch.cuda.get_device_name(device)
    except Exception:  # noqa: BLE001 - no driver: still record what was asked for
        return f"{device} (name unavailable)"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or UNKNOWN


def differing(tag_sets: list[dict[str, str]], keys: tuple[str, ...] = COMPARABLE) -> dict[str, list[str]]:
    """The comparable keys whose values differ between runs: ``{key: [distinct values]}``."""
    out = {}
    for key in keys:
        values = sorted({tags.get(key, UNKNOWN) for tags in tag_sets if tags})
        if len(values) > 1:
            out[key] = values
    return out


if __name__ == "__main__":  # python -m bench.provenance: what a run here would record
    for k, v in collect().items():
        print(f"{k}: {v}", file=sys.stdout)
