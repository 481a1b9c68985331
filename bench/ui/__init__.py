"""``bench ui``: where users look at results. ``server`` holds what every UI server shares (host
rules, the free port, waiting until it answers, the browser, stopping it); ``mlflow_ui`` lands the
MLflow UI on the latest study's comparison; ``dashboard`` serves a tuning study in optuna-dashboard."""
