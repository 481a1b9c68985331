"""``bench tune``: Optuna studies over a recipe's learning rate, per-layer LR ratios and any other
dotted key, with per-epoch pruning on the validation split and every trial recorded in MLflow.

    schema     the ``tune:`` section of a recipe (imported by the recipe schema: no optuna here)
    space      search-space parsing, validation at the bounds, ``suggest``, strict read-back
    plan       TuneOptions (the command line) -> TunePlan (recipe + space, validated; its seeds)
    storage    storage URLs -> StorageSpec, opening the Optuna RDB storage (heartbeats, retries);
               an older bench's journal copied in
    liveness   Optuna's stale-trial sweep, plus the trial asked for but never claimed; retrying
    trials     which trials count towards n_trials
    prepare    sampler and pruner; create the study and MLflow parent once; open a worker's view
    worker     Optuna's optimize loop with bench's stop rule, claim mark and interrupt rule
    objective  one trial's training as an MLflow child run (no Optuna state)
    study      ``run_study``: fan-out, signals, the parent run's final status
    outputs    trials.csv, best.yaml (a recipe overlay), plots, the MLflow parent's summary

Imports point down this list's dependencies: study -> worker/prepare -> objective/liveness
-> storage/plan -> space/schema; outputs -> plan/trials. Nothing imports study or outputs.
"""
