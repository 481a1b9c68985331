"""bench tune's reliability parts on real Optuna storages and real processes, without training:
fault points, the journal's repair before every append, liveness in the storage, the claim lock's
timeout, and values read back from a shared storage (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import RecipeError, TrackingError
from tests.test_tune import _journal_study, _load, plan_for, tune_recipe

REPO = Path(__file__).resolve().parent.parent


# --- fault points -----------------------------------------------------------------------------------


def _fault_proc(tmp_path: Path, spec: str, code: str = "") -> subprocess.Popen:
    env = {
        **os.environ,
        "BENCH_FAULT": spec,
        "BENCH_FAULT_RELEASE": str(tmp_path / "go"),
        "PYTHONPATH": str(REPO),
    }
    script = (
        f"from bench.faults import fault_point\nfault_point('a.b')\nfault_point('here')\n{code}print('after')"
    )
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("action", "code"), [("kill", -9), ("term", -15), ("int", -2), ("exit", 99)])
def test_fault_point_signals_and_exits(tmp_path, action, code):
    proc = _fault_proc(tmp_path, f"here:{action}")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code and "after" not in out


def test_fault_point_blocks_until_released(tmp_path):
    proc = _fault_proc(tmp_path, "here:block")
    reached = tmp_path / f"go.reached.{proc.pid}"
    deadline = time.monotonic() + 60
    while not reached.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.poll() is None  # still waiting at the named point
    (tmp_path / "go").touch()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "after\n"


def test_fault_point_unarmed_and_bad_spec(monkeypatch):
    import bench.faults as faults

    monkeypatch.setattr(faults, "_armed", None)
    monkeypatch.delenv("BENCH_FAULT", raising=False)
    faults.fault_point("anything")  # no-op
    monkeypatch.setattr(faults, "_armed", None)
    monkeypatch.setenv("BENCH_FAULT", "x:explode")
    with pytest.raises(ValueError, match="action one of"):
        faults.fault_point("x")
    monkeypatch.setattr(faults, "_armed", None)


# --- the journal: repair before every append (issue 10, item 11) ---------------------------------------


def _storage(path: Path):
    from optuna.storages import JournalStorage

    from bench.tune.journal import RepairingJournalBackend

    return JournalStorage(RepairingJournalBackend(path))


def test_append_after_torn_line_is_not_glued(tmp_path):
    """A worker that opened the journal before another was killed mid-write appends next: Optuna's
    own backend glues onto the torn line (every reader fails); the repairing backend cuts it first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, repairing in (("plain.journal", False), ("repairing.journal", True)):
        path = tmp_path / name
        _journal_study(path, 2)
        storage = _storage(path) if repairing else None
        if storage is None:
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            storage = JournalStorage(JournalFileBackend(str(path)))
        study = optuna.load_study(study_name="s", storage=storage)  # opened before the tear
        last = path.read_bytes().splitlines()[-1]
        with open(path, "ab") as fh:  # what a writer killed mid-line leaves
            fh.write(last[: len(last) // 2])
        if repairing:
            study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=1)
            assert len(_load(path).get_trials()) == 3  # the torn bytes are gone, the new trial kept
            assert all(json.loads(line) for line in path.read_bytes().splitlines())
            assert list(tmp_path.glob("repairing.journal.torn-*.bak"))
        else:  # the appending worker itself breaks (its entry is unreadable), and so does every reader
            with pytest.raises(AttributeError):
                study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=1)
            with pytest.raises((json.JSONDecodeError, ValueError, AttributeError)):
                _journal_study(path, 1)  # the next append lands after the glued line
            with pytest.raises((json.JSONDecodeError, ValueError)):
                _load(path).get_trials()


# --- liveness in the storage (issue 10, items 9 and 10) ---------------------------------------------


def _claimed(study, storage, *, beat: bool = True, mark: bool = True):
    from bench.tune import liveness

    trial = study.ask()
    trial.suggest_float("x", -1, 1)
    tid = liveness.trial_id(storage, study.study_name, trial.number)
    if beat:
        liveness.Lease(storage, "journal", tid, 1).beat()
    if mark:
        storage.set_trial_system_attr(tid, liveness.CLAIM_ATTR, trial.number)
    return trial


def test_sweep_judges_by_heartbeats_in_the_journal(tmp_path):
    """Two storage objects on one journal (two commands, any results folders): a trial with a
    fresh heartbeat is alive, one silent for the grace period or never fully claimed is re-queued."""
    import optuna
    from optuna.trial import TrialState

    from bench.tune import liveness
    from bench.tune.trials import counts, superseded

    path = tmp_path / "optuna.journal"
    _journal_study(path, 1)
    mine, theirs = _storage(path), _storage(path)
    study = optuna.load_study(study_name="s", storage=mine)
    other = optuna.load_study(study_name="s", storage=theirs)
    alive = _claimed(other, theirs)
    silent = _claimed(other, theirs)
    half = _claimed(other, theirs, beat=False, mark=False)  # died between ask and its first beat
    time.sleep(1.2)
    liveness.Lease(theirs, "journal", liveness.trial_id(theirs, "s", alive.number), 1).beat()
    notes = liveness.sweep(study, mine, "journal", grace=1.0)
    assert len(notes) == 2 and "re-queued" in notes[0] and "claiming" in notes[1]
    trials = study.get_trials()
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[silent.number].state == TrialState.FAIL and trials[half.number].state == TrialState.FAIL
    assert superseded(trials) == {silent.number, half.number}
    assert counts(trials) == {"COMPLETE": 1, "RUNNING": 1, "WAITING": 2}  # the retries replace them
    assert liveness.sweep(study, mine, "journal", grace=60.0) == []


def test_retries_are_bounded(tmp_path):
    import optuna

    from bench.tune import liveness
    from bench.tune.storage import STALE_RETRIES

    path = tmp_path / "optuna.journal"
    _journal_study(path, 0)
    storage = _storage(path)
    study = optuna.load_study(study_name="s", storage=storage)
    first = _claimed(study, storage, mark=False)
    x = first.params["x"]
    notes = []
    for _ in range(STALE_RETRIES):
        notes += liveness.sweep(study, storage, "journal", grace=60.0)
        retry = _claimed(study, storage, mark=False)  # each retry's worker dies too
        assert retry.params["x"] == x  # same parameters
    assert "(not re-queued)" not in "".join(notes)
    assert "(not re-queued)" in liveness.sweep(study, storage, "journal", grace=60.0)[0]


# --- the claim lock (issue 10, item 12) -----------------------------------------------------------------


def test_file_lock_times_out_naming_the_lock(tmp_path):
    from bench.tune.locks import file_lock

    with file_lock(tmp_path / "s.bench-lock", 5):
        started = time.monotonic()
        with pytest.raises(TrackingError, match="lock_timeout"), file_lock(tmp_path / "s.bench-lock", 0.3):
            pass
        assert time.monotonic() - started < 3


def test_mysql_with_several_workers_refused(tmp_path):
    from bench.tune.storage import resolve_storage

    with pytest.raises(RecipeError, match="MySQL serves one worker"):
        resolve_storage("mysql+pymysql://u:pw@db/optuna", tmp_path, 2)
    assert resolve_storage("mysql+pymysql://u:pw@db/optuna", tmp_path, 1).dialect == "mysql"


@pytest.mark.postgres
def test_postgres_claim_lock_times_out():
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BENCH_TEST_POSTGRES_URL is not set (scripts/ci_postgres.sh provisions one)")
    from bench.tune.locks import advisory_key, pg_advisory_lock

    key = advisory_key(f"lock-test-{os.getpid()}")
    with pg_advisory_lock(url, key, 5):
        started = time.monotonic()
        with pytest.raises(TrackingError, match="advisory lock"), pg_advisory_lock(url, key, 0.5):
            pass
        assert time.monotonic() - started < 5
    with pg_advisory_lock(url, key, 1):  # released: free again
        pass


# --- values read back from a shared storage (issue 10, item 15) ----------------------------------------


def test_only_declared_values_reach_best_yaml(tmp_path):
    """Another recipe shares the study's storage and records a better trial whose categorical is
    an import path: it is ignored for best.yaml, which holds only this recipe's declared choices."""
    import optuna
    import yaml
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from bench.tune.outputs import best_overlay, best_trial

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
    best, values, notes = best_trial(plan, study.trials)
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
