"""bench: benchmark PyTorch training tricks from declarative recipes.

Heavy libraries (torch, mlflow, optuna) are imported lazily inside the commands so that
`bench --help` stays fast.
"""

__version__ = "0.1.0"
