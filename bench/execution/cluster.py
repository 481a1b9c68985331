"""Ray as an executor's engine: connect (or start a local Ray), forward the environment the tasks
need, and refuse, before anything is recorded, stores that the cluster's other nodes cannot reach.

Ray is imported here, lazily: ``bench --help``, dry runs and the local executor never load it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ClusterError, message_line

LOGICAL_GPUS_ENV = "BENCH_RAY_LOGICAL_GPUS"  # a local Ray declares this many GPUs (tests on CPU boxes)
# File systems every node of a cluster can mount; a results folder elsewhere is this machine's own.
SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "ceph", "beegfs", "glusterfs", "fuse", "9p")


@dataclass(frozen=True)
class RayOptions:
    """How variants (or tuning workers) become Ray tasks."""

    address: str | None = None  # None: start a local Ray with this machine's GPUs
    gpus: float | None = None  # per task; None: 1 where the cluster has GPUs, else 0
    cpus: float = 1.0  # per task
    allow_local_store: bool = False  # a multi-node cluster may write to this machine's files


def import_ray() -> Any:
    # Every variant's epoch lines are wanted; Ray would fold similar lines of different workers.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--executor ray needs Ray on this machine and every node: pip install 'bench[ray]' "
            "(or pip install 'ray>=2.58')"
        ) from None
    return ray


@contextlib.contextmanager
def connected(options: RayOptions) -> Iterator[Any]:
    """Ray, initialised: an existing connection (a test's), the cluster at ``--address``, or a
    local Ray started here (and shut down on the way out)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if options.address:
            ray.init(address=options.address, logging_level="WARNING")
        else:
            logical = os.environ.get(LOGICAL_GPUS_ENV)
            ray.init(address="local", num_gpus=float(logical) if logical else None, include_dashboard=False,
                     logging_level="WARNING")  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at '{options.address}'" if options.address else "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {message_line(exc, None)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def task_env() -> dict[str, str]:
    """What a task's process needs from the driver's environment: bench's own variables (cache
    dir, emulated bf16, a test's fault injection). ``MLFLOW_RUN_ID`` is never sent (the task drops
    it too): it would make MLflow log into one run instead of the variant's."""
    return {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}


def gpus_per_task(ray: Any, options: RayOptions) -> float:
    """The GPUs each task asks for; a request no node can ever meet fails here, not by hanging."""
    largest = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0)
    gpus = options.gpus if options.gpus is not None else (1.0 if largest >= 1 else 0.0)
    if gpus > largest:
        raise ClusterError(
            f"--gpus-per-variant {gpus:g}: no node of the Ray cluster has that many GPUs (largest node: "
            f"{largest:g}); use a smaller value, or 0 to train on CPUs"
        )
    if 1 < gpus != int(gpus):
        raise ClusterError(f"--gpus-per-variant {gpus:g}: above 1, Ray takes whole GPUs only")
    return gpus


def alive_nodes(ray: Any) -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def check_reachable(nodes: int, tracking_uri: str, paths: dict[str, Path], options: RayOptions) -> None:
    """On a cluster of several nodes, every node writes to the tracking store and reads and writes
    checkpoints, weights and locks under the results folder: a SQLite file or a folder on this
    machine's own disk would split the study (or fail on the other nodes). One node: anything goes."""
    if options.allow_local_store or nodes <= 1:
        return
    problems = []
    scheme = tracking_uri.split(":", 1)[0] if "://" in tracking_uri else "file"
    if scheme in ("sqlite", "file"):
        problems.append(
            f"the MLflow tracking store '{tracking_uri}' is a file on this machine; use an MLflow "
            "tracking server (--tracking-uri http://HOST:5000, backed by PostgreSQL)"
        )
    for what, path in paths.items():
        fstype = filesystem_type(path)
        if fstype is not None and not fstype.startswith(SHARED_FS):
            problems.append(
                f"{what} {path.resolve()} is on a local file system ({fstype}); use a folder on a "
                "shared file system (NFS, Lustre, CephFS, ...) mounted at the same path on every node"
            )
    if problems:
        raise ClusterError(
            f"the Ray cluster has {nodes} nodes, but " + "; and ".join(problems)
            + " (--allow-local-store if every node does see them, e.g. one machine)"
        )  # fmt: skip


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (the mount table, by psutil); None if unknown."""
    import psutil

    target = path.resolve()
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        mounts = psutil.disk_partitions(all=True)
    except OSError:
        return None
    inside = [m for m in mounts if Path(m.mountpoint) == target or Path(m.mountpoint) in target.parents]
    return max(inside, key=lambda m: len(m.mountpoint)).fstype if inside else None
