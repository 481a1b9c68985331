"""``bench tune``: Optuna studies over a recipe's learning rate, per-layer LR ratios and any other
dotted key, with per-epoch pruning on the validation split and every trial recorded in MLflow.

    space      search-space sampling, validation at the bounds, strict read-back
    plan       TuneOptions (the command line) -> TunePlan (recipe + space, validated; its seeds)
    storage    storage URLs -> StorageSpec, opening the Optuna RDB storage (heartbeats, retries);
               an older bench's journal copied in
    liveness   the trial asked for but never claimed, retrying; which trials count towards n_trials
    prepare    sampler and pruner; create the study and MLflow parent once; open a worker's view
    worker     Optuna's optimize loop with bench's stop rule, claim mark and interrupt rule
    objective  one trial's training as an MLflow child run (no Optuna state)
    pruners, fidelity, recheck   bench's pruners, Kendall tau per epoch, the re-check on fresh seeds
    study      ``run_study``: fan-out (processes, or Ray tasks: ray_workers), signals, final status
    outputs    trials.csv, best.yaml (a recipe overlay), plots, the MLflow parent's summary

Imports point down this list: study -> worker/prepare -> objective/liveness -> storage/plan ->
space (the ``tune:`` schema is ``bench.recipe.tune``). Nothing imports study or outputs.
"""
