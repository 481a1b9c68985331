"""bench: benchmark PyTorch training tricks from declarative recipes.

    import bench
    loaded = bench.load_recipe("recipes/smoke.yaml")
    runs = bench.run(loaded)            # pandas DataFrame, one row per variant and seed
    trials = bench.tune("recipes/smoke_tune.yaml")
    tables = bench.report("recipes/smoke.yaml")

``import bench`` stays light (no torch, mlflow or optuna) so that ``bench --help`` is fast: the
API functions (``bench.api``) load on first use. ``bench.report`` is the function; the package
of the same name is still imported as usual (``from bench.report import build``).
"""

import sys
import types

__version__ = "0.1.0"
__all__ = ["load_recipe", "run", "tune", "report", "__version__"]
_API = {"load_recipe", "run", "tune", "report"}


def __getattr__(name: str):
    if name in _API:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute '{name}'")


class _Package(types.ModuleType):
    """Keeps ``bench.report`` the API function: importing the ``bench.report`` package would
    otherwise bind the package over it (it stays in ``sys.modules`` for ``from ... import``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
