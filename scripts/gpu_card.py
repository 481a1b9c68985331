"""The precision x compile card for a CIFAR-stem ResNet-18 at 32 px on a CUDA GPU: runs
recipes/cifar10_resnet18.yaml through bench (resumable, recorded in MLflow, results/<name>/
runs.csv) and prints one table per variant: training img/s, peak training memory, final test
accuracy and time to 94%, each with its ratio to the fp32 (TF32 off), eager baseline.

    python scripts/gpu_card.py                       # all 8 variants x 3 seeds (nox -s gpu)
    python scripts/gpu_card.py --set seeds=[0]       # a quicker card: one seed
    python scripts/gpu_card.py --table-only          # re-print from the recorded results

Figures are medians over the finished seeds; a time to target is the run's training time (its
training steps, compile included; evaluation excluded) up to the first epoch whose test accuracy
reached it, as airbench counts it, "-" when never reached.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "cifar10_resnet18.yaml"
IMG_S = "throughput/train_img_s"
WALL = "time/wall_s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="default: recipes/cifar10_resnet18.yaml")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results" / "gpu_card")
    parser.add_argument("--tracking-uri", help="default: sqlite:///<results-dir>/mlflow.db")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy for 'time to target'")
    parser.add_argument(
        "--device", default="cuda", help="cuda (the card) or cpu (only to test this script itself)"
    )
    parser.add_argument("--table-only", action="store_true", help="print the table from earlier results")
    return parser.parse_args(argv)


def memory_column(runs: pd.DataFrame) -> str | None:
    """The training-peak memory metric: the model's own peak where recorded, else the overall one."""
    columns = [c for c in runs.columns if c.startswith("memory/peak")]
    return next((c for c in columns if "train" in c), None) or next(iter(columns), None)


def time_to_target(runs: pd.DataFrame, uri: str, target: float) -> pd.Series:
    """Per run: seconds to the first epoch at ``target`` test accuracy (NaN if never)."""
    from mlflow.tracking import MlflowClient

    from bench.report.fetch import fetch_histories
    from bench.report.stats import time_to_target as ttt

    ids = [i for i in runs.get("mlflow_run_id", pd.Series(dtype=str)).dropna()]
    keys = ["test/acc", "time/train_epoch_s"]
    history = fetch_histories(MlflowClient(uri), ids, keys) if ids else pd.DataFrame()
    out = pd.Series(math.nan, index=runs.index)
    for i, row in runs.iterrows():
        mine = history[history["run_id"] == row.get("mlflow_run_id")] if len(history) else history
        accs, secs = ([] if not len(mine) else mine[mine["key"] == k].sort_values("step")["value"].tolist()
                      for k in keys)  # fmt: skip
        if len(secs) != len(accs):  # recorded before per-epoch training time: wall time spread evenly
            secs = [row.get(WALL, math.nan) / max(len(accs), 1)] * len(accs)
        out[i] = ttt(accs, secs, target)
    return out


def card(runs: pd.DataFrame, ttt: pd.Series, baseline: str | None) -> pd.DataFrame:
    """One row per variant (median over finished seeds) with ratios to the baseline variant."""
    runs = runs.assign(ttt=ttt)
    mem = memory_column(runs)
    rows = []
    for group, part in runs.groupby("group", sort=False):
        done = part[part["status"] == "finished"]
        reached = done["ttt"].dropna()
        rows.append(
            {
                "variant": group,
                "seeds": f"{len(done)}/{len(part)}",
                "img/s": done[IMG_S].median() if len(done) else math.nan,
                "peak MB": done[mem].median() if mem and len(done) else math.nan,
                "test acc": done["test/acc"].mean() if len(done) else math.nan,
                "to target s": reached.median() if len(reached) == len(done) and len(done) else math.nan,
                "note": "" if len(done) else str(part["reason"].iloc[0])[:60],
            }
        )
    table = pd.DataFrame(rows)
    base = table[table["variant"] == baseline] if baseline else table.iloc[:0]
    for col, ratio in (("img/s", "x img/s"), ("peak MB", "x mem"), ("to target s", "x time")):
        ref = base[col].iloc[0] if len(base) else math.nan
        table[ratio] = table[col] / ref
    return table[[c for c in table.columns if c != "note"] + ["note"]]


def show(table: pd.DataFrame, device: str, target: float) -> str:
    fmt = {"img/s": "{:.0f}", "peak MB": "{:.0f}", "test acc": "{:.4f}", "to target s": "{:.1f}"}
    view = table.copy()
    for col in view.columns:
        if col in fmt or col.startswith("x "):
            pattern = fmt.get(col, "{:.2f}")
            view[col] = view[col].map(lambda v, p=pattern: "-" if pd.isna(v) else p.format(v))
    view = view.rename(columns={"to target s": f"to {target:.0%} s"})
    return f"precision x compile card on {device} (medians over seeds; x = ratio to the baseline)\n" + (
        view.to_string(index=False)
    )


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"CPU {platform.processor() or platform.machine()} (not a GPU card)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_card: no CUDA GPU here (torch.cuda.is_available() is False). The card measures "
            "precision x compile on a GPU; run it on a machine with one (nox -s gpu).",
            file=sys.stderr,
        )
        return 1
    from bench.errors import BenchError
    from bench.recipe.load import load_recipe

    overrides = [*args.set, f"train.device={args.device}"]
    try:
        loaded = load_recipe(args.recipe, overrides)
    except BenchError as exc:
        print(f"gpu_card: {exc}", file=sys.stderr)
        return exc.exit_code
    uri = args.tracking_uri or f"sqlite:///{(args.results_dir / 'mlflow.db').resolve()}"
    if not args.table_only:
        cmd = [sys.executable, "-m", "bench.cli", "run", str(args.recipe), *overrides,
               "--results-dir", str(args.results_dir), "--tracking-uri", uri]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO)
        if proc.returncode != 0:
            print(f"gpu_card: bench run failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode
    path = args.results_dir / loaded.name / "runs.csv"
    if not path.is_file():
        print(f"gpu_card: no results at {path}; run without --table-only first", file=sys.stderr)
        return 1
    runs = pd.read_csv(path)
    table = card(runs, time_to_target(runs, uri, args.target), loaded.recipe.baseline)
    print(show(table, device_name(args.device), args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
