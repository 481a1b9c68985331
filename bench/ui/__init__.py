"""``bench ui``: where users look at results (``server``: the MLflow UI and optuna-dashboard)."""
