"""bench tune's reliability parts on real Optuna storages and real processes, without training:
the one liveness case Optuna's heartbeat misses, SQLite shared by worker processes,
and values read back from a shared storage (fast)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import plan_for, tune_recipe

REPO = Path(__file__).resolve().parent.parent


# --- liveness: Optuna's heartbeat, plus the trial asked for but never claimed -------------------------


def _sqlite(tmp_path: Path, grace: int = 2):
    import optuna

    from bench.tune.storage import resolve_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = resolve_storage(None, tmp_path, 2).open(heartbeat_interval=1, grace_period=grace)
    study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    return study, storage


def _asked(study, storage, *, claimed: bool):
    from bench.tune import liveness

    trial = study.ask()
    trial.suggest_float("x", -1, 1)
    if claimed:
        liveness.claim(storage, "s", trial, "w")
    return trial


def test_sweep_retries_dead_workers_trials_once_each(tmp_path):
    """A worker that died before claiming its trial (no heartbeat row: Optuna's sweep skips it)
    and one that stopped beating are both failed and retried with the same parameters; a trial
    that still beats is left alone, and a second sweep finds nothing."""
    from optuna.trial import TrialState

    from bench.tune import liveness
    from bench.tune.liveness import counts, superseded

    study, storage = _sqlite(tmp_path)
    half = _asked(study, storage, claimed=False)  # died between ask() and its first heartbeat
    silent = _asked(study, storage, claimed=True)  # died later
    time.sleep(3.2)  # both now older than the grace period (2 s); SQLite's clock has 1 s steps
    alive = _asked(study, storage, claimed=True)
    notes = liveness.sweep(study, storage, grace=2)
    assert len(notes) == 2 and "heartbeats" in notes[0] and "claiming" in notes[1], notes
    trials = study.get_trials()
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[half.number].state == TrialState.FAIL and trials[silent.number].state == TrialState.FAIL
    assert superseded(trials) == {half.number, silent.number}
    assert counts(trials) == {"RUNNING": 1, "WAITING": 2}  # the retries take their places
    assert {t.params["x"] for t in trials if t.state == TrialState.WAITING} == {
        half.params["x"],
        silent.params["x"],
    }
    # The live worker beats again (a real one beats every second): on a loaded machine the
    # assertions above can outlast the grace period, which would make it look dead.
    storage.record_heartbeat(liveness.trial_id(storage, "s", alive.number))
    assert liveness.sweep(study, storage, grace=2) == []


def test_retries_are_bounded(tmp_path):
    from bench.tune import liveness
    from bench.tune.storage import STALE_RETRIES

    study, storage = _sqlite(tmp_path, grace=1)
    x = _asked(study, storage, claimed=False).params["x"]
    notes = []
    for _ in range(STALE_RETRIES):
        time.sleep(1.1)
        notes += liveness.sweep(study, storage, grace=1)
        retry = _asked(study, storage, claimed=False)  # each retry's worker dies too
        assert retry.params["x"] == x  # same parameters
    time.sleep(1.1)
    assert len(notes) == STALE_RETRIES and liveness.sweep(study, storage, grace=1)
    assert [t.state.name for t in study.get_trials()][-1] == "FAIL"  # no third retry: it counts as failed


def test_a_new_trial_asked_for_as_another_worker_took_the_last_slot_stands_down(tmp_path):
    """Two trials were re-queued by an interrupted command; on the next, worker A sees one waiting
    (so the study is not full) while worker B takes both: A's ``ask`` makes a new trial. That
    trial is surplus (it would end the study with 3 complete trials where 2 were asked for); the
    retries never are, and the surplus one does not count."""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from bench.tune import liveness, worker

    study, storage = _sqlite(tmp_path)
    for number in [_asked(study, storage, claimed=True).number for _ in range(2)]:
        liveness.retry(study, storage, study.get_trials()[number], "interrupted", None)
    ctx = SimpleNamespace(study=study, plan=SimpleNamespace(tune=SimpleNamespace(n_trials=2)))
    assert not worker.full(ctx)  # worker A: a retry waits
    retries = [_asked(study, storage, claimed=True) for _ in range(2)]  # worker B takes both
    late = _asked(study, storage, claimed=False)  # worker A's ask: a new trial
    trials = study.get_trials()
    assert [liveness.is_surplus(trials, t.number, 2) for t in (*retries, late)] == [False, False, True]
    storage.set_trial_system_attr(liveness.trial_id(storage, "s", late.number), liveness.SURPLUS_ATTR, True)
    study.tell(late, state=TrialState.FAIL)
    for t in retries:
        study.tell(t, 0.5)
    assert liveness.counts(study.get_trials()) == {"COMPLETE": 2}
    assert worker.full(ctx)


_WORKER = """
import sys, time, optuna
from bench.tune.storage import resolve_storage
from pathlib import Path
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = resolve_storage(None, Path(sys.argv[1]), 2).open(heartbeat_interval=1, grace_period=5)
study = optuna.load_study(study_name="s", storage=storage)
start = time.perf_counter()
study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=int(sys.argv[2]))
print((time.perf_counter() - start) / int(sys.argv[2]))
"""


def test_sqlite_holds_two_worker_processes(tmp_path):
    """Two processes ask, beat and tell on one SQLite file as fast as they can (far harder than
    trials that train): no "database is locked", every trial recorded once."""
    _sqlite(tmp_path)  # the study exists before the workers start, as bench tune makes it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), "60"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert not any("locked" in err for _, err in outs)
    study, _ = _sqlite(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 120 and {t.state.name for t in trials} == {"COMPLETE"}
    assert sorted(t.number for t in trials) == list(range(120))


# --- values read back from a shared storage (issue 10, item 15) ----------------------------------------


def test_only_declared_values_reach_best_yaml(tmp_path):
    """Another recipe shares the study's storage and records a better trial whose categorical is
    an import path: it is ignored for best.yaml, which holds only this recipe's declared choices."""
    import optuna
    import yaml
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from bench.tune.outputs import best_overlay
    from bench.tune.recheck import ranked

    space = {"train.scheduler": {"categorical": [{"name": "cosine"}, {"name": "onecycle"}]}}
    plan = plan_for(tune_recipe(tmp_path, tune={"space": space}))
    study = optuna.create_study(direction="maximize")
    ours = CategoricalDistribution(["cosine", "onecycle"])
    study.add_trial(
        optuna.create_trial(
            params={"train.scheduler": "onecycle"}, distributions={"train.scheduler": ours}, value=0.5
        )
    )
    evil = CategoricalDistribution(["cosine", "os.system"])
    study.add_trial(
        optuna.create_trial(
            params={"train.scheduler": "os.system"}, distributions={"train.scheduler": evil}, value=0.9
        )
    )
    lr = {"train.optimizer.lr": FloatDistribution(1e-3, 5.0)}
    study.add_trial(optuna.create_trial(params={"train.optimizer.lr": 5.0}, distributions=lr, value=0.99))
    by_value, notes = ranked(plan, study.trials)
    best, values = by_value[0]
    assert best.number == 0 and values == {"train.scheduler": {"name": "onecycle"}}
    assert len(notes) == 2 and "os.system" in notes[0] and "not one of the declared choices" in notes[0]
    text = best_overlay(plan, best, values)
    written = yaml.safe_load(text)
    written.pop("tuned")  # where the values came from (study, trial, seeds), not a recipe key
    assert "os.system" not in text and written == {"train.scheduler": {"name": "onecycle"}}


@pytest.mark.parametrize(
    ("value", "words"),
    [(True, "declared choices"), ("0.05", "declared choices"), (3, "declared choices")],
)
def test_categorical_read_back_is_strict(tmp_path, value, words):
    from bench.recipe.tune import OutsideSpace

    plan = plan_for(tune_recipe(tmp_path, tune={"space": {"train.optimizer.lr": {"categorical": [0.05, 1]}}}))
    with pytest.raises(OutsideSpace, match=words):
        plan.space.from_optuna({"train.optimizer.lr": value})
    assert plan.space.from_optuna({"train.optimizer.lr": 1}) == {"train.optimizer.lr": 1}


def test_numeric_read_back_within_bounds(tmp_path):
    from bench.recipe.tune import OutsideSpace

    plan = plan_for(tune_recipe(tmp_path))  # lr in [1e-3, 0.5]
    assert plan.space.from_optuna({"train.optimizer.lr": 0.5}) == {"train.optimizer.lr": 0.5}
    for bad in (0.6, "0.1", None, float("nan")):
        with pytest.raises(OutsideSpace):
            plan.space.from_optuna({"train.optimizer.lr": bad})
