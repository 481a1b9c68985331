"""The cost card of a timing session: per variant, the geometric-mean throughput (and peak memory)
ratio to the baseline over rounds, paired by round, with its t-interval; rounds the contention
monitor marked left out and counted. The pairing, the contamination rule, the noise floor and the
verdict are the report's own (``bench.report.speed``), with the round in place of the seed."""

from __future__ import annotations

import pandas as pd

from bench.report import speed, stats

COLUMNS = ["variant", "rounds", "left_out", "train_img_s", "ratio", "lo", "hi", "verdict", "memory_ratio"]


def cost_table(
    timings: pd.DataFrame, base: str, neutral: set[str], confidence: float = 0.95
) -> tuple[pd.DataFrame, str]:
    """``timings``: one row per (round, variant) with ``status``, ``throughput/train_img_s`` and
    ``contention/*``. Returns the table and where the noise floor came from."""
    done = timings[timings["status"] == "finished"].rename(columns={"round": "seed"})
    dirty = speed.contaminated(done)
    clean = done[~dirty]
    # rounds, not timings: a round both arms timed on a busy machine is one round left out (counting
    # timings, two rounds with every timing contaminated read 'rounds 0, left out 4')
    dirty_rounds = done[dirty].groupby("group")["seed"].agg(set).to_dict()
    floor, source = speed.noise_floor(done, base, neutral)
    memory = next((c for c in done if c.startswith("memory/peak_")), None)
    per_round = stats.by_seed(clean, speed.THROUGHPUT)
    per_round_mem = stats.by_seed(clean, memory) if memory else {}
    rows = []
    verdict = lambda r: speed.speed_verdict(r, floor).replace("seeds", "rounds")  # noqa: E731
    for group in dict.fromkeys(timings["group"]):
        fast = speed.paired_ratio(per_round.get(group, {}), per_round.get(base, {}), confidence)
        mem = speed.paired_ratio(per_round_mem.get(group, {}), per_round_mem.get(base, {}), confidence)
        img_s = clean.loc[clean["group"] == group, speed.THROUGHPUT]
        rows.append({
            "variant": group,
            "rounds": fast.n,
            "left_out": len(dirty_rounds.get(group, set()) | (dirty_rounds.get(base, set()) if group != base else set())),
            "train_img_s": float(img_s.median()) if len(img_s) else float("nan"),
            "ratio": fast.mean, "lo": fast.lo, "hi": fast.hi,
            "verdict": "baseline" if group == base else verdict(fast),
            "memory_ratio": mem.mean,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), f"noise floor x{floor:.3f} ({source})"


def table_text(table: pd.DataFrame) -> list[str]:
    lines = [f"{'variant':30} {'rounds':>6} {'left out':>8} {'img/s':>10} {'ratio [95% CI]':>26}  verdict"]
    for r in table.itertuples():
        ci = "–" if pd.isna(r.ratio) else f"{r.ratio:.3f} [{r.lo:.3f}, {r.hi:.3f}]"
        img_s = "–" if pd.isna(r.train_img_s) else f"{r.train_img_s:.1f}"
        lines.append(f"{r.variant:30} {r.rounds:>6} {r.left_out:>8} {img_s:>10} {ci:>26}  {r.verdict}")
    if table["left_out"].any():  # say why rounds are missing: 'nan [nan, nan]' alone read as a bug
        lines.append(
            f"left out: rounds in which the contention monitor marked a timing contaminated (other processes "
            f"used the cores or GPU; up to {int(table['left_out'].max())} per variant): time again on a quiet "
            "machine or with more --rounds"
        )
    return lines
