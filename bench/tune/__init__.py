"""``bench tune``: Optuna studies over a recipe's learning rate, per-layer LR ratios and any other
dotted key, with per-epoch pruning on the validation split and every trial recorded in MLflow.

    schema    the ``tune:`` section of a recipe (imported by the recipe schema: no optuna here)
    space     search-space parsing, validation at the bounds, ``suggest`` and grid values
    storage   storage URLs, the journal file (torn-tail repair), locks, stale-trial sweep
    objective one trial: suggest -> train with a pruning hook -> tell, recorded in MLflow
    study     the study: create once in the parent, fan out workers, claim trials exactly
    outputs   trials.csv, best.yaml (a recipe overlay), plots, the MLflow parent's summary
"""
