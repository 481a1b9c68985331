"""Tuning that knows its noise: pruning fidelity (Kendall tau per epoch, the auto pruner), epochs
saved, multi-seed trials pruned across seeds, the top configurations re-checked on fresh seeds,
and tuning seeds kept apart from the seeds that report (fast units on real Optuna studies; slow
real studies on the tiny image folder)."""

from __future__ import annotations

import math

import pytest
import yaml

from bench.cli import main as cli
from tests.helpers import fresh_store, tune_recipe
from tests.helpers import mlflow_runs as _runs
from tests.recipes import tiny_recipe, write_recipe


def _study_with_curves(curves: list[list[float]], finals: list[float], pruner=None):
    """A real in-memory study holding completed trials with per-epoch curves."""
    import optuna
    from optuna.distributions import FloatDistribution

    from bench.tune.fidelity import CURVE_ATTR

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i, (curve, final) in enumerate(zip(curves, finals, strict=True)):
        study.add_trial(optuna.trial.create_trial(
            params={"x": float(i)}, distributions={"x": FloatDistribution(0, 100)}, value=final,
            intermediate_values=dict(enumerate(curve)), user_attrs={CURVE_ATTR: curve},
        ))  # fmt: skip
    return study


def test_fidelity_rule_picks_pruner_and_warmup():
    from bench.tune.fidelity import measure, recommend

    finals = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    ranked = [[f - 0.05, f] for f in finals]  # epoch 1 already ranks like the end
    scrambled = [[0.5, 0.3, f] for f in finals[:3]] + [[0.1, 0.6, f] for f in finals[3:]]
    scrambled = [[c[0] - i * 0.01, c[1] + (i % 3) * 0.01, c[2]] for i, c in enumerate(scrambled)]
    fid = measure(_study_with_curves(ranked, finals).get_trials(), 2)
    assert fid.n == 6 and fid.taus[0] == pytest.approx(1.0)
    rec = recommend(fid, 2)
    assert rec.name == "successive_halving" and rec.kwargs == {"min_resource": 1, "reduction_factor": 3}
    fid = measure(_study_with_curves(scrambled, finals).get_trials(), 3)
    assert fid.taus[0] < 0.7 <= fid.taus[1]
    rec = recommend(fid, 3)
    assert rec.name == "median" and rec.kwargs == {"n_warmup_steps": 2}  # first decision after epoch 2
    noise = [[finals[(i * 5) % 6], finals[(i * 5 + 1) % 6], f] for i, f in enumerate(finals)]
    assert recommend(measure(_study_with_curves(noise, finals).get_trials(), 3), 3).name == "none"
    assert not measure(_study_with_curves(ranked[:4], finals[:4]).get_trials(), 2).taus  # too few


def test_auto_pruner_decides_after_its_pilot():

    from bench.tune.fidelity import CHOICE_ATTR, CURVE_ATTR, PILOT_ATTR
    from bench.tune.pruners import AutoPruner, Halving

    finals = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    pruner = AutoPruner(pilot_trials=6, max_resource=4)
    study = _study_with_curves([[f - 0.05, f, f, f] for f in finals][:5], finals[:5], pruner)
    assert pruner.decide(study, 4) is None  # 5 of 6 pilot trials: undecided, nothing pruned
    pilot = study.ask()
    pilot.set_user_attr(PILOT_ATTR, True)
    pilot.report(0.0, 1)
    assert not pilot.should_prune()
    pilot.set_user_attr(CURVE_ATTR, [0.55, 0.6, 0.6, 0.6])
    study.tell(pilot, 0.6)
    note = pruner.decide(study, 4)
    assert note and "successive_halving" in note
    assert study.user_attrs[CHOICE_ATTR]["name"] == "successive_halving"
    assert pruner.decide(study, 4) is None  # decided once, for every worker and later command
    later = study.ask()
    later.report(0.0, 1)
    later.should_prune()
    assert isinstance(pruner.inner, Halving)  # after the pilot
    assert pruner.inner.min_resource == 1


def test_auto_prunes_after_the_epoch_it_measured_against_its_pilot(tmp_path):
    """tau says epoch 1 ranks like the end: a trial clearly worse than the whole pilot after epoch 1
    stops there (not after epoch 2, not let through because the pilot was never ranked), and
    one better than the pilot goes on. Driven through the hook that reports a trial's epochs."""
    import optuna

    from bench.tune.fidelity import CURVE_ATTR, PILOT_ATTR
    from bench.tune.objective import PruneHook
    from bench.tune.pruners import AutoPruner
    from tests.helpers import plan_for

    plan = plan_for(tune_recipe(tmp_path, **{"train.epochs": 4}))
    state = type("State", (), {"cfg": plan.trial_body({})})()  # the engine state's recipe only
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = AutoPruner(pilot_trials=5, max_resource=4)
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def train(curve: list[float], pilot: bool = False) -> PruneHook:
        trial = study.ask()
        if pilot:
            trial.set_user_attr(PILOT_ATTR, True)
        hook = PruneHook(trial, plan.tune.objective)
        try:
            for epoch, value in enumerate(curve):
                hook.on_epoch_end(state, epoch, {"val/acc": value})
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return hook
        trial.set_user_attr(CURVE_ATTR, hook.curve)
        study.tell(trial, curve[-1])
        return hook

    for final in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert train([final - 0.3, final - 0.2, final - 0.1, final], pilot=True).epochs == 4
    assert "min_resource=1" in pruner.decide(study, 4)  # tau: rank from epoch 1
    assert train([0.1, 0.2, 0.3, 0.35]).epochs == 1  # worse than every pilot trial after epoch 1
    assert train([0.65, 0.75, 0.85, 0.95]).epochs == 4  # better than all of them: trains to the end


def test_recheck_comparison_and_probability_best():
    from bench.tune.recheck import compare

    seeds = [3, 4, 5, 6]
    clear = {7: {3: 0.90, 4: 0.91, 5: 0.92, 6: 0.90}, 2: {3: 0.70, 4: 0.72, 5: 0.71, 6: 0.70}}
    rc = compare(clear, seeds, "maximize")
    assert rc.winner == 7 and rc.p_best == pytest.approx(1.0)
    assert rc.rivals[0].distinguished and rc.indistinguishable == []
    assert rc.lo < rc.mean < rc.hi
    close = {1: {3: 0.80, 4: 0.82, 5: 0.79, 6: 0.81}, 2: {3: 0.81, 4: 0.80, 5: 0.80, 6: 0.80},
             5: {3: 0.79, 4: 0.83, 5: 0.78, 6: 0.82}}  # fmt: skip
    rc = compare(close, seeds, "maximize")
    assert sorted(rc.indistinguishable) == sorted(n for n in close if n != rc.winner)
    assert rc.p_best < 0.6  # three equal means: far from a settled winner


def test_recheck_says_a_bootstrap_certainty_is_overconfident_where_the_tests_see_no_difference():
    """First-hour smoke_tune: the winner led on each of 3 fresh seeds (+0.21, +0.04, +0.04), so the
    bootstrap said 'P(best of 2) = 1.00' beside 'indistinguishable (Holm p=0.219)'."""
    from bench.tune.recheck import compare, describe

    measured = {0: {1: 0.440, 2: 0.426, 3: 0.398}, 1: {1: 0.234, 2: 0.386, 3: 0.354}}
    rc = compare(measured, [1, 2, 3], "maximize")
    assert rc.winner == 0 and rc.p_best == pytest.approx(1.0) and rc.indistinguishable == [1]
    first = describe(rc, "val/acc")[0]
    assert "P(best of 2) = 1.00 (bootstrap over 3 seeds; overconfident here" in first, first
    clear = {7: {3: 0.90, 4: 0.91, 5: 0.92, 6: 0.90}, 2: {3: 0.70, 4: 0.72, 5: 0.71, 6: 0.70}}
    assert "overconfident" not in describe(compare(clear, [3, 4, 5, 6], "maximize"), "val/acc")[0]


def test_overlay_tuned_on_seeds_moves_the_run_seeds(tmp_path, capsys):
    from bench.recipe.load import load_recipe

    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, seeds=[0, 1, 7]))
    overlay = tmp_path / "best.yaml"
    overlay.write_text(
        yaml.safe_dump({"train.optimizer.lr": 0.01, "tuned": {"tuned_on_seeds": [0, 1, 2, 3]}})
    )
    loaded = load_recipe(path, overlays=[str(overlay)])
    assert loaded.recipe.seeds == [8, 9, 7]  # 0 and 1 chose the value: fresh ones report it
    assert loaded.variants[0].body.train.optimizer.lr == 0.01
    assert "tuned on seeds [0, 1, 2, 3]" in capsys.readouterr().err
    assert load_recipe(path, overrides=["seeds=[5]"], overlays=[str(overlay)]).recipe.seeds == [5]


def test_multi_seed_needs_a_pruner_over_seeds(tmp_path):
    from bench.errors import RecipeError
    from tests.helpers import plan_for

    plan = plan_for(tune_recipe(tmp_path, tune={"seeds_per_trial": 3}))
    assert plan.tune.pruner.name == "wilcoxon" and plan.tuning_seeds == [0, 1, 2]
    assert plan.recheck_seeds == [3, 4, 5]  # never a tuning seed
    with pytest.raises(RecipeError, match="prunes across seeds"):
        plan_for(tune_recipe(tmp_path, tune={"seeds_per_trial": 2, "pruner": {"name": "median"}}))


# --- real studies (slow) ------------------------------------------------------------------------------


@pytest.mark.slow
def test_study_measures_fidelity_epochs_and_rechecks(tiny_image_folder, tmp_path, capsys):
    """5 unpruned trials: tau per epoch printed and on the parent run, epochs trained vs the
    budget, the top 2 re-run on 3 fresh seeds, best.yaml with the interval, P(best) and the
    seeds that chose it; bench run --overlay then trains on a seed none of them used."""
    tune = {"n_trials": 5, "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
            "recheck_top": 2, "recheck_seeds": 3,
            "space": {"train.optimizer.lr": {"float": [1.0e-4, 0.1], "log": True}}}  # fmt: skip
    path = tune_recipe(tmp_path, tiny_image_folder, tune=tune, **{"data.val_size": 48, "train.epochs": 2})
    uri, res = fresh_store(tmp_path / "mlflow.db"), tmp_path / "res"
    assert cli(["tune", str(path), "--results-dir", str(res), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    assert "pruning fidelity (Kendall tau" in err and "pruner recommended" in err
    assert "epochs trained 10 of 10 (n_trials 5 x 2 epochs): 0% saved; 0% of finished trials pruned" in err
    assert "re-check on fresh seeds [1, 2, 3]" in err and "P(best of 2)" in err

    client, runs = _runs(uri, "tinytune")
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "study")
    taus = client.get_metric_history(parent.info.run_id, "fidelity/tau")
    assert 2 in {m.step for m in taus} <= {1, 2} and all(-1 <= m.value <= 1 for m in taus)  # NaN: not logged
    assert " e1 " in err and " e2 " in err
    m = parent.data.metrics
    assert m["epochs/trained"] == 10 and m["epochs/budget"] == 10 and m["trials/pruned_fraction"] == 0
    assert 0 <= m["recheck/p_best"] <= 1 and m["recheck/lo"] <= m["recheck/mean"] <= m["recheck/hi"]
    rechecks = [r for r in runs if r.data.tags.get("bench.kind") == "recheck"]
    assert sorted(int(r.data.params["seed"]) for r in rechecks) == [1, 1, 2, 2, 3, 3]

    best = yaml.safe_load((res / "tinytune" / "best.yaml").read_text())
    tuned = best["tuned"]
    assert tuned["tuned_on_seeds"] == [0, 1, 2, 3] and tuned["recheck"]["seeds"] == [1, 2, 3]
    assert tuned["trial"] == int(m["recheck/trial"]) and len(tuned["recheck"]["of_trials"]) == 2
    assert not math.isnan(tuned["recheck"]["ci95"][0])
    # re-running the finished study re-checks nothing again
    assert cli(["tune", str(path), "--results-dir", str(res), "--tracking-uri", uri]) == 0
    _, runs = _runs(uri, "tinytune")
    assert len([r for r in runs if r.data.tags.get("bench.kind") == "recheck"]) == 6
    capsys.readouterr()
    assert cli(["run", str(path), "--overlay", str(res / "tinytune" / "best.yaml"), "--results-dir", str(res),
                "--tracking-uri", uri]) == 0  # fmt: skip
    assert "seeds [0] -> [4]" in capsys.readouterr().err
    _, runs = _runs(uri, "tinytune")
    plain = [r for r in runs if r.data.tags.get("bench.kind") not in ("trial", "recheck", "study")]
    assert [r.data.params["seed"] for r in plain if "seed" in r.data.params] == ["4"]


@pytest.mark.slow
def test_multi_seed_trial_clearly_worse_stops_early(tiny_image_folder, tmp_path, capsys):
    """3 seeds per trial: the good LR first (grid seed 1), then a 1e-7 LR that learns nothing:
    pruned after its first seed; the good one's objective is its mean over 3 seed runs."""
    import pandas as pd

    tune = {"n_trials": 2, "seeds_per_trial": 3, "recheck_top": 0, "sampler": {"name": "grid", "seed": 1},
            "space": {"train.optimizer.lr": {"categorical": [0.05, 1.0e-7]}}}  # fmt: skip
    path = tune_recipe(tmp_path, tiny_image_folder, tune=tune, **{"data.val_size": 48, "train.epochs": 2})
    uri, res = fresh_store(tmp_path / "mlflow.db"), tmp_path / "res"
    assert cli(["tune", str(path), "--results-dir", str(res), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    assert "pruned after seed 1 of 3" in err
    trials = pd.read_csv(res / "tinytune" / "trials.csv").set_index("params_train.optimizer.lr")
    assert trials.loc[0.05, "state"] == "COMPLETE" and trials.loc[1e-7, "state"] == "PRUNED"
    assert "epochs trained 8 of 12 (n_trials 2 x 3 seeds x 2 epochs): 33% saved; 50%" in err
    _, runs = _runs(uri, "tinytune")
    seeds = {}
    for r in runs:
        if r.data.tags.get("bench.kind") == "trial":
            seeds.setdefault(r.data.tags["bench.trial_number"], []).append(int(r.data.params["seed"]))
    assert sorted(map(sorted, seeds.values())) == [[0], [0, 1, 2]]
    good = next(r for r in runs if r.data.tags.get("bench.kind") == "trial" and r.data.params["seed"] == "1")
    assert good.data.params["train.optimizer.lr"] == "0.05"
