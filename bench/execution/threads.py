"""Torch threads per worker process, so that the workers running at once use no more threads than
the cores this process was granted.

torch starts one intra-op thread per core it sees; two workers doing that on the same cores
oversubscribe them, and the throughput measured is the scheduler's, not the variant's. Each
worker gets ``cores // workers`` threads (at least 1); an ``OMP_NUM_THREADS`` the user set is kept
when it is smaller. The run records what it got as the tag ``env.torch_threads`` (provenance.py).
"""

from __future__ import annotations

import os


def granted_cores() -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_share(workers: int = 1, cores: int | None = None, requested: str | None = None) -> int:
    """Intra-op threads for one of ``workers`` processes sharing ``cores`` (default: the granted
    ones); ``requested`` (``OMP_NUM_THREADS``) caps it when it is a smaller positive number."""
    share = max(1, (cores or granted_cores()) // max(workers, 1))
    if requested and requested.strip().isdigit() and int(requested) > 0:
        return min(share, int(requested))
    return share


def set_torch_threads(workers: int = 1, cores: int | None = None) -> int:
    """Set this process's torch intra-op threads to its share; returns the count set."""
    import torch

    count = thread_share(workers, cores, os.environ.get("OMP_NUM_THREADS"))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
