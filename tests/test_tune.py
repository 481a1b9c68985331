"""bench tune: search-space validation, storage handling, an older bench's journal (fast), and
real studies on the tiny image folder (slow)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

from bench.cli import main as cli
from bench.errors import RecipeError
from tests.helpers import SPACE, assert_trial_numbers, fresh_store, plan_for, tune_recipe
from tests.helpers import mlflow_runs as _runs
from tests.recipes import tiny_recipe, write_recipe

# --- search space and settings validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"floaty": [1, 2]}, ["allowed forms", "{float: [low, high]"]),
        ({"float": [1.0]}, ["[low, high]"]),
        ({"float": [0.5, 0.1]}, ["low (0.5) must be <= high"]),
        ({"float": [0.0, 1.0], "log": True}, ["log scale needs low > 0"]),
        ({"int": [1.5, 3]}, ["two integers"]),
        ({"float": [0.1, 1.0], "log": True, "step": 0.1}, ["log and step cannot be combined"]),
        ({"categorical": []}, ["non-empty list"]),
        ({"float": [0.1, 1.0], "scale": "log"}, ["unknown option(s) scale"]),
    ],
)
def test_bad_space_form_names_key_and_forms(tmp_path, entry, words):
    path = tune_recipe(tmp_path, tune={"space": {"train.optimizer.lr": entry}})
    with pytest.raises(RecipeError) as info:
        plan_for(path)
    assert info.value.key == "tune.space"
    assert "'train.optimizer.lr'" in str(info.value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("key", "entry", "words"),
    [
        ("train.optimizr.lr", {"float": [0.01, 0.1]}, ["unknown key", "allowed keys here"]),
        ("train.optimizer.layer_decay", {"float": [0.3, 1.5]}, ["1.5", "less than or equal to 1"]),
        ("train.scheduler.name", {"categorical": ["cosine", "warp_drive"]}, ["warp_drive"]),
        ("train.freeze", {"int": [-1, 2]}, ["-1", "greater than or equal to 0"]),
        ("train.optimizer.betas_x", {"float": [0.1, 0.2]}, ["betas_x"]),
    ],
)
def test_space_validated_through_recipe_schema_at_bounds(tmp_path, key, entry, words):
    path = tune_recipe(tmp_path, tune={"space": {key: entry}})
    with pytest.raises(RecipeError) as info:
        plan_for(path)
    assert info.value.key == f"tune.space.{key}"
    for word in words:
        assert word in str(info.value)


def test_reserved_and_empty_space_refused(tmp_path):
    with pytest.raises(RecipeError, match="cannot be tuned"):
        plan_for(tune_recipe(tmp_path, tune={"space": {"name": {"categorical": ["a", "b"]}}}))
    with pytest.raises(RecipeError, match="search space is empty"):
        plan_for(tune_recipe(tmp_path, tune={"space": {}}))


def test_good_space_with_int_and_categorical(tmp_path):
    space = {
        **SPACE,
        "train.freeze": {"int": [0, 2]},
        "train.scheduler": {"categorical": [{"name": "cosine"}, {"name": "onecycle"}]},
        "train.optimizer.head_lr_mult": {"float": [1, 100], "log": True},
    }
    plan = plan_for(tune_recipe(tmp_path, tune={"space": space}))
    assert plan.space.keys == list(space)
    assert plan.base["data"]["val_size"] == pytest.approx(0.1)  # defaulted: never tune on test
    recorded = {"train.optimizer.lr": 0.01, "train.freeze": 1, "train.scheduler": "onecycle",
                "train.optimizer.head_lr_mult": 10.0}  # fmt: skip
    assert plan.space.from_optuna(recorded)["train.scheduler"] == {"name": "onecycle"}


@pytest.mark.parametrize(
    ("tune", "key", "words"),
    [
        ({"sampler": {"name": "bayes"}}, "tune.sampler.name", ["'tpe'", "'random'", "'grid'"]),
        ({"pruner": {"name": "percentile"}}, "tune.pruner.name", ["'median'", "'hyperband'", "'none'"]),
        ({"pruner": {"name": "median", "n_startup_trial": 2}}, "tune.pruner", ["n_startup_trials"]),
        ({"sampler": {"name": "tpe", "n_startup": 2}}, "tune.sampler", ["n_startup_trials"]),
        ({"objective": {"metric": "test/acc"}}, "tune.objective.metric", ["must not peek at the test set"]),
        ({"sampler": {"name": "grid"}}, "tune", ["grid sampler needs discrete values"]),
        ({"n_trial": 3}, "tune.n_trial", ["unknown key", "n_trials"]),
    ],
)
def test_settings_validated(tmp_path, tune, key, words):
    with pytest.raises(RecipeError) as info:
        plan_for(tune_recipe(tmp_path, tune=tune))
    assert info.value.key == key
    for word in words:
        assert word in str(info.value)


def test_grid_caps_trials_and_lists_values(tmp_path):
    space = {"train.freeze": {"int": [0, 2]}, "train.optimizer.lr": {"float": [0.1, 0.3], "step": 0.1}}
    plan = plan_for(tune_recipe(tmp_path, tune={"n_trials": 50, "sampler": {"name": "grid"}, "space": space}))
    assert plan.space.grid() == {"train.freeze": [0, 1, 2], "train.optimizer.lr": [0.1, 0.2, 0.3]}
    assert plan.tune.n_trials == 9


def test_no_tune_section_and_matrix_refused(tmp_path):
    path = write_recipe(tmp_path / "plain.yaml", tiny_recipe(tmp_path))
    with pytest.raises(RecipeError, match="no tune: section") as info:
        plan_for(path)
    assert info.value.key == "tune"
    path = tune_recipe(tmp_path, matrix={"train.freeze": [0, 1]})
    with pytest.raises(RecipeError, match="matrix expands to 2 variants"):
        plan_for(path)


def test_journal_with_several_workers_refused(tmp_path, capsys):
    path = tune_recipe(tmp_path)
    code = cli(["tune", str(path), "--workers", "2", "--storage", f"journal:{tmp_path}/o.journal",
                "--results-dir", str(tmp_path / "res")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "journal file serves one worker" in err and "PostgreSQL" in err and "SQLite" in err
    assert not (tmp_path / "res").exists()  # refused before anything was created


def test_no_more_workers_start_than_trials_are_left():
    """A study continued with one slot left starts one worker, not two that would both take it."""
    import optuna

    from bench.tune.study import useful_workers

    study = optuna.create_study()
    assert useful_workers(4, study.get_trials(), n_trials=3) == 3
    for _ in range(5):
        study.tell(study.ask(), 1.0)
    assert useful_workers(2, study.get_trials(), n_trials=6) == 1
    study.ask()  # a trial a dead command left RUNNING: its retry needs a worker too
    assert useful_workers(3, study.get_trials(), n_trials=6) == 1
    assert useful_workers(3, study.get_trials(), n_trials=7) == 2
    # a full study still runs its one in-process pass
    assert useful_workers(3, study.get_trials(), n_trials=5) == 1


def test_storage_urls(tmp_path):
    from bench.tune.storage import redact, resolve_storage

    default = resolve_storage(None, tmp_path, 4)  # several local workers share the SQLite file
    assert default.path == (tmp_path / "optuna.db").resolve() and default.dialect == "sqlite"
    assert resolve_storage(str(tmp_path / "x.log"), tmp_path, 1).kind == "journal"
    assert resolve_storage("sqlite:///" + str(tmp_path / "a.db"), tmp_path, 2).kind == "rdb"
    assert resolve_storage("postgresql+psycopg2://u:secret@h/db", tmp_path, 8).dialect == "postgresql"
    assert resolve_storage("mysql+pymysql://u:pw@db/optuna", tmp_path, 2).dialect == "mysql"
    assert "secret" not in redact("postgresql+psycopg2://u:secret@h/db")


# --- a study in an older bench's journal ----------------------------------------------------------


def test_a_second_signal_inside_optunas_bookkeeping_still_requeues_the_trial(
    tiny_image_folder, tmp_path, monkeypatch
):
    """Ctrl-C while a trial trains, then a second one while Optuna records that failure (Optuna's
    ``_run_trial`` then fails with its own UnboundLocalError): the command still stops as
    interrupted and the trial is failed and queued again at once, not left RUNNING for a sweep."""
    import optuna
    import optuna.study._optimize as optimize

    from bench.tune import worker

    def interrupted_training(ctx, trial, params):
        raise KeyboardInterrupt

    tell, calls = optimize._tell_with_warning, []

    def second_signal_in_tell(**kwargs):  # the place a second SIGTERM/Ctrl-C landed in CI
        calls.append(kwargs["state"])
        if len(calls) == 1:
            raise KeyboardInterrupt
        return tell(**kwargs)

    monkeypatch.setattr(worker, "run_trial", interrupted_training)
    monkeypatch.setattr(optimize, "_tell_with_warning", second_signal_in_tell)
    path = tune_recipe(tmp_path, tiny_image_folder, tune={"recheck_top": 0})
    uri = fresh_store(tmp_path / "mlflow.db")
    assert cli(["tune", str(path), "--results-dir", str(tmp_path / "res"), "--tracking-uri", uri]) == 130
    db = tmp_path / "res" / "tinytune" / "optuna.db"
    trials = optuna.load_study(study_name="tinytune", storage=f"sqlite:///{db}").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[0].user_attrs["bench.fail_reason"] == "interrupted"


def _journal_study(path: Path, n: int, name: str = "tinytune"):
    """A study as an older bench left it: Optuna's journal file, ``n`` completed trials."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    study.optimize(lambda t: 1 - t.suggest_float("train.optimizer.lr", 1e-3, 0.5, log=True), n_trials=n)
    return study


def test_older_journal_study_is_copied_into_the_database(tmp_path, capsys):
    """results/<study>/optuna.journal from an older bench: the study continues in optuna.db."""
    import pandas as pd

    res = tmp_path / "res"
    journal = res / "tinytune" / "optuna.journal"
    _journal_study(journal, 2)
    path = tune_recipe(tmp_path, tune={"n_trials": 2, "recheck_top": 0})
    args = [
        "tune",
        str(path),
        "--results-dir",
        str(res),
        "--tracking-uri",
        fresh_store(tmp_path / "mlflow.db"),
    ]
    assert cli(args) == 0
    err = capsys.readouterr().err
    assert "copied study tinytune" in err and "[2/2 done" not in err  # nothing left to train
    assert (res / "tinytune" / "optuna.db").exists() and journal.exists()  # the journal is kept
    assert sorted(pd.read_csv(res / "tinytune" / "trials.csv")["state"]) == ["COMPLETE", "COMPLETE"]
    assert cli(args) == 0 and "copied" not in capsys.readouterr().err  # once


def test_older_journal_corrupt_in_the_middle_is_one_line(tmp_path, capsys):
    res = tmp_path / "res"
    journal = res / "tinytune" / "optuna.journal"
    _journal_study(journal, 2)
    lines = journal.read_bytes().split(b"\n")
    lines[2] = b"garbage" + lines[2][7:].replace(b"{", b"(")
    journal.write_bytes(b"\n".join(lines))
    path = tune_recipe(tmp_path)
    code = cli(
        ["tune", str(path), "--results-dir", str(res), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and any(
        "cannot read the older journal" in line and "move it away" in line for line in err
    )
    assert not (res / "tinytune" / "optuna.db").exists()


# --- real studies (slow) ------------------------------------------------------------------------------


@pytest.mark.slow
def test_study_end_to_end(tiny_image_folder, tmp_path, capsys):
    """Grid over a good LR, a too-small LR (pruned after epoch 1 against the good one) and a huge
    LR (diverges: failed with its reason): parent + one child per trial in MLflow, trials.csv,
    best.yaml that bench run accepts as an overlay, plots."""
    import pandas as pd

    tune = {
        "n_trials": 3,
        "sampler": {"name": "grid", "seed": 1},  # visits 0.05, 1e6, 1e-7 in this order
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "space": {"train.optimizer.lr": {"categorical": [0.05, 1.0e-7, 1.0e6]}},
    }
    path = tune_recipe(tmp_path, tiny_image_folder, tune=tune, **{"data.val_size": 48, "train.epochs": 2})
    uri = fresh_store(tmp_path / "mlflow.db")
    res = tmp_path / "res"
    assert cli(["tune", str(path), "--results-dir", str(res), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    assert "[3/3 done, 0 left]" in err and "pruned after 1 epoch" in err and "diverged" in err.lower()

    out = res / "tinytune"
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["state"]) == ["COMPLETE", "FAIL", "PRUNED"]
    best = yaml.safe_load((out / "best.yaml").read_text())
    tuned = best.pop("tuned")  # how it was chosen: stripped by bench run --overlay
    assert best == {"train.optimizer.lr": 0.05} and tuned["tuned_on_seeds"] == [0, 1, 2, 3]
    assert (out / "optimization_history.png").stat().st_size > 0
    assert not (out / "param_importances.png").exists()  # one param: skipped with a note
    assert "parameter importance skipped" in err

    client, runs = _runs(uri, "tinytune")
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "study"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    status = {r.data.tags["bench.trial_number"]: r.data.tags["bench.status"] for r in children}
    assert sorted(status.values()) == ["failed", "finished", "pruned"]
    failed = next(r for r in children if r.data.tags["bench.status"] == "failed")
    assert "diverged" in failed.data.tags["bench.reason"] and failed.info.status == "FAILED"
    complete = next(r for r in children if r.data.tags["bench.status"] == "finished")
    assert {m.step for m in client.get_metric_history(complete.info.run_id, "val/acc")} == {0, 1}
    assert complete.data.params["train.optimizer.lr"] == "0.05"
    assert parent.data.metrics["best/val/acc"] > 0.5 and "best/test/acc" in parent.data.metrics
    assert parent.data.tags["best.train.optimizer.lr"] == "0.05"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "trials.csv", "optimization_history.png"} <= artifacts

    # Re-running continues the same study (here: nothing left to do) under the same parent run.
    assert cli(["tune", str(path), "--results-dir", str(res), "--tracking-uri", uri]) == 0
    _, runs = _runs(uri, "tinytune")
    assert len([r for r in runs if r.data.tags.get("bench.kind") == "study"]) == 1
    assert len(pd.read_csv(out / "trials.csv")) == 3

    # best.yaml is an overlay bench run accepts, and the run lands in MLflow with the tuned LR.
    assert cli(["run", str(path), "--overlay", str(out / "best.yaml"), "--results-dir", str(res),
                "--tracking-uri", uri]) == 0  # fmt: skip
    _, runs = _runs(uri, "tinytune")
    recipe_runs = [r for r in runs if r.data.tags.get("bench.variant")]
    assert recipe_runs and recipe_runs[0].data.params["train.optimizer.lr"] == "0.05"


def _two_workers(tmp_path: Path, data_root: Path, storage: str | None, study: str) -> None:
    import pandas as pd

    # no re-check (9 more runs per call): these tests are about the shared study, test_study_end_to_end re-checks
    tune = {
        "n_trials": 5,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "recheck_top": 0,
    }
    path = tune_recipe(tmp_path, data_root, tune=tune, **{"data.val_size": 32, "train.epochs": 1})
    uri = fresh_store(tmp_path / "mlflow.db")
    args = ["tune", str(path), "--workers", "2", "--study", study, "--results-dir", str(tmp_path / "res"),
            "--tracking-uri", uri] + (["--storage", storage] if storage else [])  # fmt: skip
    assert cli(args) == 0
    trials = pd.read_csv(tmp_path / "res" / study / "trials.csv")
    assert_trial_numbers(trials["number"], n_trials=5)
    assert set(trials["state"]) == {"COMPLETE"}
    assert trials["params_train.optimizer.lr"].nunique() == len(trials)  # none trained twice
    assert trials["worker"].nunique() == 2  # both workers ran trials
    _, runs = _runs(uri, "tinytune")
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "study")
    children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        and r.data.tags.get("bench.kind") == "trial"
    ]  # fmt: skip  (the re-check's runs are apart)
    assert sorted(int(r.data.tags["bench.trial_number"]) for r in children) == sorted(trials["number"])
    assert {r.info.status for r in children} == {"FINISHED"}
    # the same command again with a larger budget continues the study
    assert cli(args[:1] + args[1:] + ["--n-trials", "6"]) == 0
    more = pd.read_csv(tmp_path / "res" / study / "trials.csv")["number"]
    assert_trial_numbers(more, n_trials=6)


@pytest.mark.slow
def test_two_workers_share_the_default_sqlite(tiny_image_folder, tmp_path):
    _two_workers(tmp_path, tiny_image_folder, None, "twosqlite")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_postgres(tiny_image_folder, tmp_path):
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BENCH_TEST_POSTGRES_URL is not set (scripts/ci_postgres.sh provisions one)")
    _two_workers(tmp_path, tiny_image_folder, url, f"pg-{uuid.uuid4().hex[:8]}")


def test_two_tune_commands_started_together_draw_different_points(tiny_image_folder, tmp_path):
    """`bench tune recipes/smoke_tune.yaml` twice at once: each command's worker 0 saw no trials and
    seeded its sampler alike, so trial 1 repeated trial 0's parameters and trial 3 trial 2's (half
    the study wasted). Each trial's draw is now seeded by its number, unique across commands."""
    from bench.tune.prepare import open_worker, prepare
    from bench.tune.worker import draw
    from tests.helpers import plan_for, tune_recipe

    recipe = tune_recipe(
        tmp_path, tiny_image_folder, tune={"n_trials": 4, "sampler": {"name": "tpe", "seed": 0}}
    )
    plan = plan_for(
        recipe, results_dir=str(tmp_path / "res"), tracking_uri=fresh_store(tmp_path / "mlflow.db")
    )
    prepare(plan)
    first, second = open_worker(plan, 0), open_worker(plan, 0)  # two commands, before either asks
    drawn = [draw(ctx, ctx.study.ask()) for ctx in (first, second, first, second)]
    assert len({d["train.optimizer.lr"] for d in drawn}) == 4, drawn
    # a lone command draws the same points again from the same seed
    again = plan_for(
        recipe, results_dir=str(tmp_path / "again"), tracking_uri=f"sqlite:///{tmp_path / 'm2.db'}"
    )
    prepare(again)
    alone = open_worker(again, 0)
    assert [draw(alone, alone.study.ask()) for _ in range(4)] == drawn
