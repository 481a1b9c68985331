"""Where a number came from: code version (commit and a hash of the uncommitted changes), library
versions, OS, threads, device and the backend flags that change what "fp32" means. ``collect`` gives flat ``env.*`` strings that every child run logs as
MLflow tags, so ``bench report`` can print them and warn when compared runs differ.

The static part (git, versions, OS, CPU) is read once per process; the device, threads and backend
flags are read on every call because a variant (or the process that runs it) may change them. CUDA,
cuDNN and driver versions are recorded only for runs on a CUDA device: a CPU run does not use them."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.measure.hardware import cpu_flags, granted_cores, native_bf16_cpu

PREFIX = "env."
UNKNOWN = "n/a"
PACKAGES = ("torch", "torchvision", "timm", "numpy", "scipy", "mlflow", "optuna")
CPU_FLAGS = ("avx2", "avx512_bf16", "amx_bf16")
# tags that must agree for two runs' numbers to be comparable (the report warns otherwise)
COMPARABLE = (
    "env.device_name",
    "env.torch",
    "env.torch_build",
    "env.torchvision",
    "env.cuda",
    "env.cudnn",
    "env.timm",
    "env.python",
    "env.torch_threads",
)
UNTRACKED_MAX_BYTES = 8 << 20  # larger untracked files enter the diff hash by path and size only


def collect(device=None) -> dict[str, str]:
    """All ``env.*`` tags for a run on ``device`` (a ``torch.device``, a string, or None for CPU)."""
    import torch

    info = dict(_static())
    kind = torch.device(device).type if device is not None else "cpu"
    info["env.device_type"] = kind
    info["env.device_name"] = _gpu_name(device) if kind == "cuda" else info["env.cpu_model"]
    if kind == "cuda":  # a CPU run of a CUDA build uses none of these
        info["env.cuda"], info["env.cudnn"] = _cuda_versions()
        info["env.cuda_driver"] = _driver_version()
    info.update(threads())
    info["env.cpu_native_bf16"] = str(native_bf16_cpu()).lower()  # false: amp_bf16 here is emulated
    info["env.allow_tf32_matmul"] = str(bool(torch.backends.cuda.matmul.allow_tf32)).lower()
    info["env.allow_tf32_cudnn"] = str(bool(torch.backends.cudnn.allow_tf32)).lower()
    info["env.cudnn_benchmark"] = str(bool(torch.backends.cudnn.benchmark)).lower()
    info["env.float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return info


def threads() -> dict[str, str]:
    """What bounds CPU throughput: torch's intra-op threads, ``OMP_NUM_THREADS`` and the cores this
    process may run on (its affinity, which a container or ``taskset`` narrows)."""
    import torch

    return {
        "env.torch_threads": str(torch.get_num_threads()),
        "env.omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "env.cpus_available": str(granted_cores()),
    }


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, str]:
    from bench.version import __version__

    info = {"env.bench_version": __version__}
    where = Path(__file__).resolve().parents[1]  # bench/
    commit, dirty = _git(where)
    info["env.git_commit"], info["env.git_dirty"] = commit, dirty
    info["env.git_diff"] = diff_hash(where) if commit != UNKNOWN else UNKNOWN
    info["env.python"] = platform.python_version()
    info["env.os"] = platform.platform()
    for name in PACKAGES:
        info[f"env.{name}"] = _version(name)
    info["env.torch_build"] = torch_build()
    info["env.cpu_model"] = _cpu_model()
    flags = cpu_flags()
    info["env.cpu_flags"] = ",".join(f for f in CPU_FLAGS if f in flags) or "none"
    return info


def torch_build() -> str:
    """The local part of ``torch.__version__`` (``cu130``, ``cpu``, ``rocm6.4``), which the package
    metadata leaves out: the same version number exists as several builds. "none" without one."""
    import torch

    return torch.__version__.partition("+")[2] or "none"


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


def _run_git(directory: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def diff_hash(directory: Path) -> str:
    """sha256 (16 hex digits) of the uncommitted changes of the repository holding ``directory``:
    ``git diff HEAD`` plus the path and content of every untracked, non-ignored file, so two runs
    from the same commit but different edits (a new module included) tell apart. "none" when the
    tree is clean, n/a when git cannot say."""
    top = _run_git(directory, "rev-parse", "--show-toplevel")
    diff = _run_git(directory, "diff", "HEAD", "--binary", "--no-ext-diff", "--no-color")
    untracked = _run_git(directory, "ls-files", "--others", "--exclude-standard", "-z", "--full-name", ":/")
    if top is None or diff is None or untracked is None:
        return UNKNOWN
    root = Path(top.decode().strip())
    names = sorted(n for n in untracked.decode(errors="surrogateescape").split("\0") if n)
    if not diff and not names:
        return "none"
    digest = hashlib.sha256(diff)
    for name in names:
        path = root / name
        try:
            size = path.stat().st_size
            body = path.read_bytes() if size <= UNTRACKED_MAX_BYTES else f"size={size}".encode()
        except OSError:
            body = b"unreadable"
        digest.update(b"\0untracked\0" + name.encode(errors="surrogateescape") + b"\0" + body)
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _driver_version() -> str:
    """The NVIDIA driver version through NVML (nvidia-ml-py); n/a where NVML is missing or fails."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no library, a container without NVML
        return UNKNOWN
    return version.decode() if isinstance(version, bytes) else str(version)


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


if __name__ == "__main__":  # python -m bench.measure.provenance: what a run here would record
    for k, v in collect().items():
        print(f"{k}: {v}", file=sys.stdout)
