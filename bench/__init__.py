"""bench: benchmark PyTorch training tricks from declarative recipes.

    import bench
    loaded = bench.load_recipe("recipes/smoke.yaml")
    runs = bench.run(loaded)            # pandas DataFrame, one row per variant and seed
    trials = bench.tune("recipes/smoke_tune.yaml")
    tables = bench.report_recipe("recipes/smoke.yaml")

``import bench`` stays light (no torch, mlflow or optuna) so that ``bench --help`` is fast: the
API functions (``bench.api``) load on first use. ``bench.report`` is the report package.
"""

from bench.version import __version__

__all__ = ["load_recipe", "run", "tune", "report_recipe", "__version__"]
_API = {"load_recipe", "run", "tune", "report_recipe"}


def __getattr__(name: str):
    if name in _API:
        from bench import api

        return getattr(api, name)
    hint = (
        ": the report function is bench.report_recipe (bench.report is a package)" if name == "report" else ""
    )
    raise AttributeError(f"module 'bench' has no attribute '{name}'{hint}")
