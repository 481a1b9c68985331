"""What a study leaves behind: ``trials.csv``, ``best.yaml`` (a recipe overlay of dotted keys
that ``bench run --overlay`` accepts), the optimisation-history and parameter-importance plots,
and the study's best value, parameters and test accuracy on the MLflow parent run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from bench.errors import described
from bench.tracking import mlflow_store as store
from bench.tune import fidelity
from bench.tune.liveness import SURPLUS_ATTR, active, counts, epochs_trained
from bench.tune.plan import TunePlan
from bench.tune.recheck import Recheck, analyse, p_best_text, ranked
from bench.tune.recheck import describe as describe_recheck
from bench.util.fileio import atomic_write_text


def write_trials_csv(study: Any, path: Path) -> None:
    frame = study.trials_dataframe(attrs=("number", "state", "value", "datetime_start", "duration",
                                          "params", "user_attrs", "system_attrs", "intermediate_values"))  # fmt: skip
    surplus = f"system_attrs_{SURPLUS_ATTR}"
    if surplus in frame:  # trials that stood down unrun (liveness.is_surplus): never part of the study
        frame = frame[~frame[surplus].eq(True)].drop(columns=surplus)
    frame = frame.rename(columns=lambda c: c.replace("user_attrs_", "").replace("bench.", ""))
    atomic_write_text(path, frame.to_csv(index=False))


def best_overlay(plan: TunePlan, trial: Any, values: dict[str, Any], rc: Recheck | None = None) -> str:
    """The dotted keys, and under ``tuned:`` how they were chosen: ``bench run --overlay`` strips
    that block and moves the run's seeds off ``tuned_on_seeds`` (bench/recipe/load.py)."""
    metric = plan.tune.objective.metric
    test = trial.user_attrs.get("test_acc")
    header = (
        f"# best trial of study {plan.study_name} (trial {trial.number}): {metric}={trial.value:.4f}"
        + (f", test/acc={test:.4f}" if test is not None else "")
        + f" on tuning seeds {plan.tuning_seeds}"
        + (f"\n# re-checked on fresh seeds {rc.seeds}: {rc.mean:.4f} [{rc.lo:.4f}, {rc.hi:.4f}], "
           f"{p_best_text(rc).replace('paired tests below', 'paired tests')}" if rc else "")
        + f"\n#   bench run {plan.loaded.source} --overlay {plan.out_dir / 'best.yaml'}"
        + "\n# (the run's seeds move off tuned.tuned_on_seeds: the seeds that chose it never report it)\n"
    )  # fmt: skip
    chosen = plan.tuning_seeds + (rc.seeds if rc else [])
    tuned: dict[str, Any] = {"study": plan.study_name, "trial": trial.number, "objective": metric,
                             "value": float(trial.value), "tuned_on_seeds": chosen}  # fmt: skip
    if rc is not None:
        tuned["recheck"] = {
            "seeds": rc.seeds, "mean": rc.mean, "ci95": [rc.lo, rc.hi], "p_best": round(rc.p_best, 4),
            "of_trials": list(rc.values), "indistinguishable_from": rc.indistinguishable,
            **({"test_acc_mean": rc.tests[rc.winner]} if rc.winner in rc.tests else {}),
        }  # fmt: skip
    return header + yaml.safe_dump({**values, "tuned": tuned}, sort_keys=False)


def save_plots(plan: TunePlan, study: Any, complete: list[Any]) -> tuple[list[Path], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    paths, notes = [], []
    if not complete:
        return paths, ["no completed trial yet: no plots"]
    jobs = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(complete) >= 2 and len(plan.space) > 1:
        jobs.append(("param_importances.png", ovm.plot_param_importances))
    else:
        notes.append(
            "parameter importance skipped: it needs at least 2 completed trials and more than one "
            f"parameter (have {len(complete)} completed, {len(plan.space)} parameter(s))"
        )
    for name, plot in jobs:
        try:
            ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            path = plan.out_dir / name
            fig.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
        except Exception as exc:  # noqa: BLE001 - a plot must not fail the study
            notes.append(f"{name} skipped: {described(exc)}")
    return paths, notes


def epochs_saved(plan: TunePlan, finished: list[Any], metrics: dict[str, float]) -> str:
    """Epochs trained against the budget without pruning (n_trials x seeds x epochs)."""
    trained = sum(epochs_trained(t) for t in finished)
    budget = plan.tune.n_trials * plan.tune.seeds_per_trial * plan.epochs
    pruned = sum(t.state.name == "PRUNED" for t in finished) / max(len(finished), 1)
    metrics.update({"epochs/trained": trained, "epochs/budget": budget, "epochs/saved_fraction": 1 - trained / budget,
                    "trials/pruned_fraction": pruned})  # fmt: skip
    seeds = f" x {plan.tune.seeds_per_trial} seeds" if plan.tune.seeds_per_trial > 1 else ""
    return (f"epochs trained {trained} of {budget} (n_trials {plan.tune.n_trials}{seeds} x {plan.epochs} epochs): "
            f"{1 - trained / budget:.0%} saved; {pruned:.0%} of finished trials pruned")  # fmt: skip


def fidelity_lines(plan: TunePlan, trials: list[Any], choice: dict | None, client: Any,
                   parent_id: str) -> list[str]:  # fmt: skip
    """Kendall tau per epoch, logged as ``fidelity/tau`` (step = epoch), and the pruner it recommends."""
    fid = fidelity.measure(trials, plan.epochs)
    lines = [fidelity.describe(fid, plan.tune.objective.metric)]
    for e, tau in enumerate(fid.taus):
        if math.isfinite(tau):
            store.log_metrics(client, parent_id, {"fidelity/tau": tau}, step=e + 1)
    rec = fidelity.recommend(fid, plan.epochs)
    if rec is not None:
        store.log_metrics(client, parent_id, {"fidelity/trials": fid.n}, step=0)
        client.set_tag(parent_id, "bench.pruner_recommended", rec.describe())
        lines.append(f"pruner recommended (tau >= {fidelity.TAU_HIGH} rule): {rec.describe()}")
    if plan.tune.pruner.name == "auto":
        pilots = sum(bool(t.user_attrs.get(fidelity.PILOT_ATTR)) for t in trials)
        text = (
            f"{choice['name']} {choice['kwargs']} after a pilot of {choice['pilot']} unpruned trials "
            f"(tau per epoch {[round(t, 2) for t in choice['taus']]})"
            if choice else f"nothing yet: {pilots} pilot trial(s) claimed, unpruned"
        )  # fmt: skip
        lines.append(f"pruner auto chose {text}")
        client.set_tag(parent_id, "bench.pruner_auto", text[:4000])
    return lines


def write_outputs(plan: TunePlan, study: Any, client: Any, parent_id: str) -> str:
    """Write every output and the parent run's summary; returns the summary text."""
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    lines = [f"study {plan.study_name}: results in {out}"]
    if not trials:
        return lines[0] + "\nno trials ran"
    write_trials_csv(study, out / "trials.csv")
    client.log_artifact(parent_id, str(out / "trials.csv"))
    c = counts(trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    finished = [t for t in active(trials) if t.state.is_finished()]
    lines.append("trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(c.items())))
    metrics = {"trials/complete": c["COMPLETE"], "trials/pruned": c["PRUNED"], "trials/failed": c["FAIL"]}
    lines.append(epochs_saved(plan, finished, metrics))
    lines += fidelity_lines(plan, trials, study.user_attrs.get(fidelity.CHOICE_ATTR), client, parent_id)
    rc = analyse(plan, study)
    by_value, ignored = ranked(plan, complete)  # trials whose values this space declares, best first
    best, values = by_value[0] if by_value else (None, {})
    lines += [f"note: {n}" for n in ignored]
    if rc is not None:
        best = next(t for t in complete if t.number == rc.winner)
        values = plan.space.from_optuna(best.params)
        metrics.update({"recheck/mean": rc.mean, "recheck/lo": rc.lo, "recheck/hi": rc.hi,
                        "recheck/p_best": rc.p_best, "recheck/trial": rc.winner,
                        "recheck/indistinguishable": len(rc.indistinguishable)})  # fmt: skip
    elif plan.tune.recheck_top:
        lines.append("re-check: not run yet (it runs once the study has all its trials)")
    if best is not None:
        metric = plan.tune.objective.metric
        atomic_write_text(out / "best.yaml", best_overlay(plan, best, values, rc))
        client.log_artifact(parent_id, str(out / "best.yaml"))
        test = best.user_attrs.get("test_acc")
        metrics.update({f"best/{metric}": best.value, "best/trial": best.number})
        if test is not None:
            metrics["best/test/acc"] = test
        tags = {f"best.{k}": v for k, v in values.items()}
        store.set_tags(client, parent_id, {**tags, "bench.best_trial": best.number})
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                metrics[f"best/{key}"] = float(value)
        lead = by_value[0][0] if by_value else best
        led = f" (the re-check's winner on fresh seeds; trial {lead.number} led on the tuning seeds with {lead.value:.4f})"
        lines.append(
            f"best: trial {best.number}, {metric}={best.value:.4f} on tuning seeds {plan.tuning_seeds}"
            + (led if lead.number != best.number else "")
        )
        lines += [f"  {k}: {v}" for k, v in values.items()]
        if rc is not None:
            lines += describe_recheck(rc, metric)
        lines.append(
            f"test/acc of the best trial (reported only, never tuned on): {test:.4f}"
            if test is not None
            else "test/acc of the best trial: not recorded"
        )
        lines.append(f"best parameters: {out / 'best.yaml'} (bench run RECIPE --overlay {out / 'best.yaml'})")
    else:
        lines.append("no completed trial yet: no best.yaml")
    store.log_metrics(client, parent_id, metrics, step=len(finished))
    paths, notes = save_plots(plan, study, complete)
    for path in paths:
        client.log_artifact(parent_id, str(path))
    lines += [f"plot: {p}" for p in paths] + [f"note: {n}" for n in notes]
    summary = "\n".join(lines)
    store.log_text(client, parent_id, summary + "\n", "summary.txt")
    return summary
