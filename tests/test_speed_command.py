"""``bench speed``: finished variants re-timed in fresh processes, interleaved round by round, and a
cost table paired by round."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parents[1]


def test_speed_times_variants_interleaved_and_writes_the_cost_table(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, matrix={"data.batch_size": [16, 32]}, baseline="batch_size=32")
    path = write_recipe(tmp_path / "r.yaml", recipe)
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's bench, in the command and its children
    args = [
        "speed",
        str(path),
        "--rounds",
        "2",
        "--steps",
        "5",
        "--warmup",
        "2",
        "--results-dir",
        str(results),
    ]
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    timings = pd.read_csv(results / "tiny" / "speed.csv")
    groups = list(dict.fromkeys(timings["group"]))
    assert list(zip(timings["round"], timings["group"])) == [
        (0, groups[0]),
        (0, groups[1]),
        (1, groups[0]),
        (1, groups[1]),
    ]
    assert (timings["status"] == "finished").all() and (timings["throughput/train_img_s"] > 0).all()
    assert {16 * 5, 32 * 5} == set(timings["images"])  # the timed steps only, not the warm-up
    assert "contention/speed_contaminated" in timings
    table = pd.read_csv(results / "tiny" / "speed_table.csv")
    assert set(table["variant"]) == set(groups)
    base = table.set_index("variant").loc["batch_size=32"]
    assert base["verdict"] == "baseline"
    # paired by round: a round counts only where neither timing was contaminated (a busy CI machine)
    dirty = timings[timings["contention/speed_contaminated"] > 0.5]
    other = table.set_index("variant").loc["batch_size=16"]
    assert other["rounds"] == 2 - dirty["round"].nunique() and other["left_out"] == dirty["round"].nunique()
    assert base["rounds"] + base["left_out"] == 2 == other["rounds"] + other["left_out"]
    assert "ratio [95% CI]" in proc.stdout and "batch_size=16" in proc.stdout


def test_cost_table_counts_rounds_left_out_not_timings():
    """bench speed on a busy machine, 2 rounds, every timing contaminated: the table read
    'rounds 0, left out 4' for the variant (its 2 timings plus the baseline's), more rounds left out
    than were run. A round either arm timed on a busy machine is one round left out."""
    from bench.speedcheck.table import cost_table

    rows = [{"round": r, "group": g, "status": "finished", "throughput/train_img_s": 100.0 + r,
             "contention/speed_contaminated": float(busy)}
            for r, busy_pair in enumerate([(1, 1), (1, 0), (0, 0)])
            for g, busy in zip(("base", "other"), busy_pair)]  # fmt: skip
    table = cost_table(pd.DataFrame(rows), "base", set())[0].set_index("variant")
    assert table.loc["other", "left_out"] == 2 and table.loc["other", "rounds"] == 1
    assert table.loc["base", "left_out"] == 2 and table.loc["base", "rounds"] == 1


def test_cost_card_with_every_round_contaminated_says_why_it_has_no_ratio():
    """Every round timed on a busy machine printed 'nan [nan, nan] ... too few rounds' without a
    word on why."""
    from bench.speedcheck.table import cost_table, table_text

    rows = [{"round": r, "group": g, "status": "finished", "throughput/train_img_s": 100.0,
             "contention/speed_contaminated": 1.0} for r in range(2) for g in ("base", "other")]  # fmt: skip
    text = "\n".join(table_text(cost_table(pd.DataFrame(rows), "base", set())[0]))
    assert "nan" not in text and "contention monitor marked a timing contaminated" in text
