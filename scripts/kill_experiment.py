"""SIGKILL a smoke-sized ``bench run`` at random moments, rerun it, and compare with a run never killed.

    python scripts/kill_experiment.py [--kills 5] [--seed 0] [--workdir /tmp/kill-exp] [key=value ...]

1. pretrain once (recipes/smoke_pretrain.yaml, small) for the start weights both runs share;
2. the uninterrupted run: recipes/smoke.yaml with the overrides, in ``straight/``;
3. the same command in ``killed/``: started, SIGKILLed with its whole process group (driver,
   forkserver, variant process: as a dying container) after a random delay, started again, ...
   ``--kills`` times, then run to the end (and once more, to see that nothing is left to do);
4. the verdict: every variant finished exactly once (one MLflow run per run key, FINISHED, no
   epoch logged twice), with the same final test/acc as the uninterrupted run.

The data is CIFAR-10 (``$BENCH_DATA_DIR``, default /work/shared/data). Exit 0 when all holds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL = ["data.subset=1000", "data.test_subset=500", "train.epochs=2", "seeds=[0]"]


def bench(
    workdir: Path, recipe: str, overrides: list[str], extra_env: dict | None = None
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
    args = [sys.executable, "-m", "bench.cli", "run", str(REPO / "recipes" / recipe), *overrides,
            "--results-dir", str(workdir / "results"), "--emulated-bf16", "skip"]  # fmt: skip
    log = open(workdir / "bench.log", "a")  # noqa: SIM115 - the child writes it
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)


def complete(workdir: Path, recipe: str, overrides: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = bench(workdir, recipe, overrides)
    return proc.wait(), time.perf_counter() - t0


def children(workdir: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags], client


def verdict(killed: Path, straight: Path) -> bool:
    import pandas as pd

    ok = True
    runs, client = children(killed, "smoke")
    by_key: dict[str, list] = {}
    for run in runs:
        by_key.setdefault(run.data.tags["bench.run_key"], []).append(run)
    ref = pd.read_csv(straight / "results" / "smoke" / "runs.csv").set_index("run_key")
    got = pd.read_csv(killed / "results" / "smoke" / "runs.csv").set_index("run_key")
    print(f"\n{'variant':44s} {'status':9s} runs  attempts  epochs logged   test/acc killed  straight")
    for key, row in ref.iterrows():
        mine = by_key.get(key, [])
        status = got.loc[key, "status"] if key in got.index else "missing"
        steps = (
            sorted(m.step for m in client.get_metric_history(mine[0].info.run_id, "train/loss"))
            if mine
            else []
        )
        attempts = mine[0].data.tags.get("bench.attempt", "?") if mine else "-"
        acc, ref_acc = got.loc[key].get("test/acc", float("nan")), row.get("test/acc", float("nan"))
        same = (acc == ref_acc) or (acc != acc and ref_acc != ref_acc)
        good = len(mine) == 1 and status == row["status"] and steps == sorted(set(steps)) and same
        if row["status"] == "finished":
            good = good and mine[0].info.status == "FINISHED"
        ok &= good
        print(f"{row['variant']:44s} {status:9s} {len(mine):4d}  {attempts:>8s}  {str(steps):14s} "
              f"{acc:15.4f} {ref_acc:9.4f} {'' if good else '  <-- MISMATCH'}")  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kill-experiment"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides for recipes/smoke.yaml")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_DATA_DIR", "/work/shared/data")
    rng = random.Random(args.seed)
    pre, straight, killed = (args.workdir / n for n in ("pretrain", "straight", "killed"))
    for folder in (pre, straight, killed):
        folder.mkdir(parents=True, exist_ok=True)
    rc, _ = complete(pre, "smoke_pretrain.yaml", ["data.subset=2000", "train.epochs=2"])
    assert rc == 0, f"pretraining failed: see {pre / 'bench.log'}"
    overrides = [*SMALL, f"model.weights={pre / 'results' / 'smoke_pretrain' / 'weights' / 'seed=0.pt'}",
                 *args.overrides]  # fmt: skip
    rc, duration = complete(straight, "smoke.yaml", overrides)
    assert rc == 0, f"the uninterrupted run failed: see {straight / 'bench.log'}"
    print(f"uninterrupted run: {duration:.0f} s")
    for i in range(args.kills):
        proc = bench(killed, "smoke.yaml", overrides)
        delay = rng.uniform(3.0, max(4.0, 0.5 * duration))
        time.sleep(delay)
        if proc.poll() is not None:
            print(f"kill {i + 1}: the run had already ended (exit {proc.returncode}) after {delay:.1f} s")
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"kill {i + 1}: SIGKILL after {delay:.1f} s")  # restarted at once: the lock died with it
    rc, took = complete(killed, "smoke.yaml", overrides)
    print(f"rerun to the end: exit {rc}, {took:.0f} s")
    rc2, _ = complete(killed, "smoke.yaml", overrides)
    print(f"one more rerun (nothing left to do): exit {rc2}")
    ok = rc == 0 and rc2 == 0 and verdict(killed, straight)
    print("\nVERDICT:", "every variant finished once, same final test/acc" if ok else "MISMATCH (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
