"""Does ``tune.pruner: auto`` save at least half the tuning budget without losing the best?

Tunes one recipe twice with ``bench tune`` (same sampler seed; pruner auto, and none), each in its
own results folder and study, then prints from what each study recorded in MLflow: Kendall tau per
epoch, the pruner auto chose, epochs trained / (n_trials x epochs), and each study's re-checked best
on the same fresh seeds. "Within noise": the paired difference (pruned best - unpruned best) over
those fresh seeds has a 95% t-interval that covers 0 (or lies above it), bench's paired test; the
TOST p for equivalence within +-report.min_effect is printed beside it (few seeds rarely prove
equivalence, so it is shown, not required). Exit 0 when both budget and best hold, 1 otherwise.

    BENCH_DATA_DIR=../shared/data python scripts/prune_budget.py            # ~25 min on 2 busy cores
    python scripts/prune_budget.py RECIPE --results-dir DIR --one-at-a-time
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ARMS = {"auto": [], "none": ["tune.pruner={name: none}"]}  # overrides on top of the recipe
BUDGET_SHARE = 0.5


def tune_commands(recipe: str, results: Path, study: str) -> dict[str, list[str]]:
    return {
        arm: [sys.executable, "-m", "bench.cli", "tune", recipe, "--results-dir", str(results / arm),
              "--study", f"{study}_{arm}", *overrides]
        for arm, overrides in ARMS.items()
    }  # fmt: skip


def run_arms(commands: dict[str, list[str]], parallel: bool) -> dict[str, float]:
    """Both studies at once by default (one torch thread each: two processes share the cores
    better than one); each logs to <results>/<arm>/tune.log."""
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if parallel else {})}
    started, procs, took = time.monotonic(), {}, {}
    for arm, cmd in commands.items():
        log = Path(cmd[cmd.index("--results-dir") + 1])
        log.mkdir(parents=True, exist_ok=True)
        print(f"[{arm}] {' '.join(cmd[1:])}  (log: {log / 'tune.log'})", flush=True)
        with open(log / "tune.log", "w") as out:
            procs[arm] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if not parallel:
            procs[arm].wait()
            took[arm] = time.monotonic() - started
    for arm, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"bench tune ({arm}) exited with {proc.returncode}; see its tune.log")
        took.setdefault(arm, time.monotonic() - started)
    return took


def study_record(results: Path, study: str, epochs: int) -> dict:
    """What the study's MLflow parent run and its re-check children hold."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results.resolve() / 'mlflow.db'}")
    exps = [e.experiment_id for e in client.search_experiments()]
    parent = client.search_runs(
        exps, f"tags.`bench.kind` = 'study' and tags.`bench.study` = '{study}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip
    m, tags = parent.data.metrics, parent.data.tags
    taus = sorted((h.step, h.value) for h in client.get_metric_history(parent.info.run_id, "fidelity/tau"))
    winner = int(m["recheck/trial"])
    rechecks = client.search_runs(
        exps, f"tags.`bench.kind` = 'recheck' and tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )  # fmt: skip
    values = {int(r.data.params["seed"]): r.data.metrics["objective"] for r in rechecks
              if r.data.tags.get("bench.trial_number") == str(winner)}  # fmt: skip
    params = {k.rsplit(".", 1)[-1]: f"{float(v):.3g}" for k, v in tags.items() if k.startswith("best.")}
    return {
        "trained": int(m["epochs/trained"]), "budget": int(m["epochs/budget"]),
        "pruned": m.get("trials/pruned", 0), "taus": taus, "auto": tags.get("bench.pruner_auto"),
        "recommended": tags.get("bench.pruner_recommended"), "winner": winner, "params": params,
        "mean": m["recheck/mean"], "lo": m["recheck/lo"], "hi": m["recheck/hi"], "values": values,
        "recheck_epochs": len(rechecks) * epochs,  # a re-check run is never pruned
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", nargs="?", default="recipes/smoke_tune_lr.yaml")
    ap.add_argument("--results-dir", default="results/prune_budget", type=Path)
    ap.add_argument("--one-at-a-time", action="store_true", help="run the two studies one after the other")
    ap.add_argument("--fresh", action="store_true", help="delete RESULTS_DIR/{auto,none} first")
    ap.add_argument("--print-only", action="store_true", help="print the figures of studies already run")
    args = ap.parse_args()

    from bench.commands.api import load_recipe
    from bench.report.stats import paired_test, tost_p

    loaded = load_recipe(args.recipe, full=False)
    study, min_effect = loaded.name, loaded.recipe.report.min_effect
    if args.fresh and not args.print_only:
        for arm in ARMS:
            shutil.rmtree(args.results_dir / arm, ignore_errors=True)
    commands = tune_commands(args.recipe, args.results_dir, study)
    took = {a: math.nan for a in ARMS} if args.print_only else run_arms(commands, not args.one_at_a_time)
    epochs = loaded.variants[0].body.train.epochs
    rec = {arm: study_record(args.results_dir / arm, f"{study}_{arm}", epochs) for arm in ARMS}

    auto, none = rec["auto"], rec["none"]
    print(f"\n=== {args.recipe}: pruner auto vs none, same sampler seed ===")
    for arm, r in rec.items():
        taus = ", ".join(f"e{s} {v:.2f}" for s, v in r["taus"])
        print(f"[{arm}] Kendall tau per epoch (vs the final objective, completed trials): {taus or 'n/a'}")
    print(f"[auto] chose: {auto['auto']}")
    ok = True
    for arm, r in rec.items():
        share = r["trained"] / r["budget"]
        print(f"[{arm}] epochs trained {r['trained']} / {r['budget']} (n_trials x epochs) = {share:.0%}; "
              f"{r['pruned']:.0f} trials pruned; re-check {r['recheck_epochs']} epochs more; "
              f"wall {took[arm] / 60:.1f} min")  # fmt: skip
    for arm, r in rec.items():
        seeds = sorted(r["values"])
        print(f"[{arm}] re-checked best: trial {r['winner']} {r['params']}: {r['mean']:.4f} "
              f"[95% CI {r['lo']:.4f}, {r['hi']:.4f}] on fresh seeds {seeds}")  # fmt: skip
    d = paired_test(auto["values"], none["values"], min_effect=min_effect)
    diffs = [auto["values"][s] - none["values"][s] for s in d.seeds]
    tost = tost_p(diffs, min_effect)
    within = d.n >= 2 and not math.isnan(d.lo) and d.hi >= 0  # not shown worse
    budget_ok = auto["trained"] <= BUDGET_SHARE * auto["budget"]
    print(f"pruned best - unpruned best, paired over fresh seeds {list(d.seeds)}: {d.diff:+.4f} "
          f"[95% CI {d.lo:+.4f}, {d.hi:+.4f}] ({d.verdict}); TOST p within +-{min_effect:g}: {tost:.3f}; "
          f"these seeds detect a difference of {d.mdd:.4f} or more (80% power)")  # fmt: skip
    print(f"budget: auto trained {auto['trained'] / auto['budget']:.0%} of n_trials x epochs "
          f"(<= {BUDGET_SHARE:.0%}: {'yes' if budget_ok else 'NO'}); best within noise (interval covers 0 "
          f"or above it): {'yes' if within else 'NO'}")  # fmt: skip
    ok = budget_ok and within
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
