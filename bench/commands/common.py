"""Arguments shared by the subcommands: the recipe and its overrides, the stores, ``--executor local|ray``."""

from __future__ import annotations

import argparse
import os
import re

from bench.errors import RecipeError

# What a dotted override key looks like (``train.epochs``); a recipe path has a '/' or a suffix.
_KEY_LIKE = re.compile(r"~?[A-Za-z_]\w*(\.\w+)*")


def add_recipe_arguments(parser: argparse.ArgumentParser, nargs: str | None = None, gives: str = "") -> None:
    """The recipe (``nargs``: None, one; ``+``, run in order; ``?``, optional), its overrides and
    overlays, where results and the MLflow store live; ``gives``: what the recipe tells the command."""
    parser.add_argument(
        "recipe", nargs=nargs, help=f"recipe YAML file{'(s), run in order' if nargs == '+' else ''}{gives}"
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], help="dotted overrides: train.epochs=2 data.subset=2000 ~key"
    )
    parser.add_argument(
        "--overlay", action="append", default=[], help="YAML merged over the recipe (e.g. a tuned best.yaml)"
    )
    parser.add_argument(
        "--results-dir",
        default=os.environ.get("BENCH_RESULTS_DIR", "results"),
        help="output folder (default: results/)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else results/mlflow.db)",
    )


def sort_positionals(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Overrides may stand before, between or after recipe files: re-sort what argparse assigned by
    position into ``recipe`` (files) and ``overrides`` (``key=value``, ``~key``)."""
    if not hasattr(args, "recipe") or not hasattr(args, "overrides"):
        return
    many = isinstance(args.recipe, list)
    given = (args.recipe if many else [args.recipe] if args.recipe else []) + list(args.overrides)
    recipes = [i for i in given if "=" not in i and not i.startswith("~")]
    args.overrides = [i for i in given if "=" in i or i.startswith("~")]
    for item in recipes:
        # A missing path that looks like a dotted key is an override without its ``=value``.
        if not os.path.exists(item) and _KEY_LIKE.fullmatch(item) and not item.endswith((".yaml", ".yml")):
            raise RecipeError(
                f"no recipe file '{item}'; it looks like an override without a value: write {item}=VALUE "
                "(or ~KEY to delete a key)",
                source="command line",
            )
    if many:
        args.recipe = recipes
    elif len(recipes) > 1:
        parser.error(
            f"one recipe file, got {len(recipes)}: {' '.join(recipes)} (overrides look like key=value)"
        )
    else:
        args.recipe = recipes[0] if recipes else None
    required = next((a.nargs in (None, "+") for a in parser._actions if a.dest == "recipe"), False)
    if required and not recipes:
        parser.error("the recipe file is required (overrides alone were given)")


def check_results_dir(args: argparse.Namespace) -> None:
    """``--results-dir`` must be, or be creatable as, a folder: a file there (or above it) would
    surface later as a lock or store error with the wrong exit code and no hint."""
    given = getattr(args, "results_dir", None)
    if not given:
        return
    path = os.path.abspath(given)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)  # the nearest part that exists: the folder is created below it
    if not os.path.isdir(path):
        raise RecipeError(
            f"--results-dir {given}: {path} is a file, not a folder; name a folder (created if missing)",
            source="command line",
        )


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
