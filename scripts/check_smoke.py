"""Assert what the smoke sessions must show, from what they wrote (CI runs this after them).

python scripts/check_smoke.py run RESULTS_DIR    # after bench run smoke_pretrain + smoke
python scripts/check_smoke.py tune RESULTS_DIR   # after bench tune smoke_tune
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pandas as pd
from mlflow.tracking import MlflowClient

CHANCE = 1 / 5  # both smoke recipes use five CIFAR-10 classes


def children(results: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{results.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def check_run(results: Path) -> None:
    table = pd.read_csv(results / "smoke" / "runs.csv")
    finished = table[table["status"] == "finished"]
    assert len(table) >= 12, f"expected every smoke variant x seed, got {len(table)} rows"
    assert (finished["test/acc"] > CHANCE + 0.2).all(), finished[["variant", "test/acc"]].to_string()
    fp16 = table[table["precision"] == "amp_fp16"]
    assert len(fp16) and set(fp16["status"]) <= {"skipped", "finished"}, fp16[["variant", "status"]]
    ema = table[table["variant"].str.startswith("ema=") & table["status"].eq("finished")]
    assert len(ema) and (ema["test/acc_ema"] > CHANCE + 0.2).all(), (
        "EMA variants evaluate their averaged model"
    )
    bf16 = table[table["precision"] == "amp_bf16"]  # skipped only where this CPU would emulate it
    assert (
        len(bf16)
        and (bf16["status"].eq("finished") | bf16["reason"].fillna("").str.contains("emulated")).all()
    )
    for run in children(results, "smoke"):
        if run.data.tags["bench.status"] == "finished":
            needed = {"test/acc", "throughput/train_img_s", "train/lr", "time/wall_s"}
            assert needed <= set(run.data.metrics), (run.data.tags["bench.variant"], sorted(run.data.metrics))
            assert {"memory/peak_gpu_mb", "memory/peak_rss_mb"} & set(run.data.metrics)
    assert (results / "smoke" / "report.md").exists(), "bench report wrote no report.md"
    print(
        f"smoke ok: {len(finished)} finished runs, test/acc {finished['test/acc'].min():.3f}..{finished['test/acc'].max():.3f}"
    )


def check_tune(results: Path) -> None:
    trials = pd.read_csv(results / "smoke_tune" / "trials.csv")
    states = trials["state"].value_counts().to_dict()
    assert states.get("PRUNED", 0) >= 1, f"no trial was pruned: {states}"
    trial_runs = [r for r in children(results, "smoke_tune") if r.data.tags.get("bench.kind") == "trial"]
    assert len(trial_runs) == len(trials), "one MLflow child run per trial (the re-check's runs apart)"
    study = optuna.load_study(
        study_name="smoke_tune", storage=f"sqlite:///{(results / 'smoke_tune' / 'optuna.db').resolve()}"
    )
    states = {t.number: t.state.name for t in study.get_trials()}
    agree = {"COMPLETE": {"finished"}, "PRUNED": {"pruned"}, "FAIL": {"failed", "skipped"}}
    for run in trial_runs:  # the two stores agree on every trial
        number = int(run.data.tags["bench.trial_number"])
        assert run.info.status != "RUNNING", f"trial {number}: its MLflow run was left RUNNING"
        assert run.data.tags["bench.status"] in agree[states[number]], (number, states[number], run.data.tags)
    assert (results / "smoke_tune" / "best.yaml").exists()
    print(f"tune ok: {states}")


if __name__ == "__main__":
    kind, folder = sys.argv[1], Path(sys.argv[2])
    {"run": check_run, "tune": check_tune}[kind](folder)
