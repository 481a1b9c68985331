"""bench: benchmark PyTorch training tricks from declarative recipes.

    import bench
    loaded = bench.load_recipe("recipes/smoke.yaml")
    runs = bench.run(loaded)            # pandas DataFrame, one row per variant and seed
    trials = bench.tune_recipe("recipes/smoke_tune.yaml")
    tables = bench.report_recipe("recipes/smoke.yaml")

``import bench`` stays light (no torch, mlflow or optuna) so that ``bench --help`` is fast: the
API functions (``bench.commands.api``) load on first use. ``bench.report`` and ``bench.tune`` are packages
(the functions: ``report_recipe``, ``tune_recipe``).
"""

from bench.version import __version__

__all__ = ["load_recipe", "run", "tune_recipe", "report_recipe", "__version__"]
_API = {"load_recipe", "run", "tune_recipe", "report_recipe"}
# Packages of these names would shadow functions of the same name once imported: the functions are renamed.
_RENAMED = {"report": "report_recipe", "tune": "tune_recipe"}


def __getattr__(name: str):
    if name in _API:
        from bench.commands import api

        return getattr(api, name)
    hint = f": the function is bench.{_RENAMED[name]} (bench.{name} is a package)" if name in _RENAMED else ""
    raise AttributeError(f"module 'bench' has no attribute '{name}'{hint}")
