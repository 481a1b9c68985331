"""``--executor local|ray`` and the Ray flags, shared by ``bench run`` and ``bench tune``."""

from __future__ import annotations

import argparse

from bench.errors import RecipeError


def add_executor_arguments(parser: argparse.ArgumentParser, unit: str = "variant") -> None:
    group = parser.add_argument_group("executor (where the work runs)")
    group.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="local: processes on this machine (default); ray: Ray tasks over every GPU of this "
        "machine, or of the cluster at --address (pip install 'bench[ray]')",
    )  # fmt: skip
    group.add_argument(
        "--address", default=None,
        help="Ray cluster to join (e.g. auto, or HEAD_IP:6379 from `ray start --head`); default: start "
        "a local Ray with this machine's GPUs",
    )  # fmt: skip
    group.add_argument(
        f"--gpus-per-{unit}", dest="gpus", type=float, default=None,
        help=f"GPUs each {unit} gets (default 1 where the cluster has GPUs, else 0); a fraction such "
        "as 0.5 lets small models share a GPU",
    )  # fmt: skip
    group.add_argument(f"--cpus-per-{unit}", dest="cpus", type=float, default=1.0,
                       help=f"CPU cores each {unit} gets (default 1)")  # fmt: skip
    group.add_argument(
        "--allow-local-store", action="store_true",
        help="on a cluster of several nodes, allow a SQLite store or a results folder on a local "
        "file system (only if every node really sees the same files)",
    )  # fmt: skip


def ray_options(args: argparse.Namespace):
    """The Ray settings of the command line; flags that need ``--executor ray`` are refused without it."""
    from bench.execution.cluster import RayOptions

    if args.executor != "ray":
        given = [f for f, v in (("--address", args.address), ("--gpus-per-*", args.gpus)) if v is not None]
        if given or args.allow_local_store or args.cpus != 1.0:
            raise RecipeError(
                f"{', '.join(given) or 'the Ray flags'}: only with --executor ray", source="command line"
            )
        return None
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # said before any data is loaded
        from bench.execution.cluster import import_ray

        import_ray()
    if args.gpus is not None and args.gpus < 0 or args.cpus <= 0:
        raise RecipeError("--gpus-per-* must be >= 0 and --cpus-per-* > 0", source="command line")
    return RayOptions(
        address=args.address, gpus=args.gpus, cpus=args.cpus, allow_local_store=args.allow_local_store
    )
