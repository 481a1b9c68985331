"""Each variant against the baseline (paired by seed) and each axis's marginal effect."""

from __future__ import annotations

import math

import pandas as pd

from bench.report import stats

BASELINE_COLUMNS = [
    "variant",
    "pairs",
    "acc_diff",
    "acc_diff_lo",
    "acc_diff_hi",
    "acc_diff_sd",
    "p_sign_flip",
    "mdd",
    "seeds_needed",
    "verdict",
    "train_img_s_ratio",
    "throughput_within_spread",
    "memory_ratio",
    "wall_ratio",
]


def baseline_table(
    finished: pd.DataFrame,
    variants: pd.DataFrame,
    base: str | None,
    scored: list[str],
    confidence: float,
    min_effect: float,
) -> pd.DataFrame:
    """Each variant against the baseline: the test accuracy difference over the seeds both have
    (``stats.paired_test``: t-interval, sign-flip p, minimal detectable difference, seeds needed
    for ``min_effect``, verdict); the ratio of median throughputs and whether the two seed ranges
    overlap; the ratios of the seed-mean memory and wall time."""
    if base is None:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    by_seed = {g: dict(zip(f["seed"], f["test/acc"])) for g, f in finished.groupby("group")}
    speed = {
        g: stats.median_spread(f["throughput/train_img_s"].tolist()) for g, f in finished.groupby("group")
    }
    means = variants.set_index("variant")
    rows = []
    for group in scored:
        d = stats.paired_test(
            by_seed.get(group, {}), by_seed.get(base, {}), confidence=confidence, min_effect=min_effect
        )
        is_base = group == base
        rows.append(
            {
                "variant": group,
                "pairs": d.n,
                "acc_diff": d.diff,
                "acc_diff_lo": d.lo,
                "acc_diff_hi": d.hi,
                "acc_diff_sd": d.sd,
                "p_sign_flip": math.nan if is_base else d.p_value,
                "mdd": math.nan if is_base else d.mdd,
                "seeds_needed": math.nan if is_base else d.seeds_needed,
                "verdict": "baseline" if is_base else d.verdict,
                "train_img_s_ratio": _ratio(means, group, base, "train_img_s_median"),
                "throughput_within_spread": stats.ranges_overlap(speed[group], speed[base]),
                "memory_ratio": _ratio(means, group, base, "memory_mb_mean"),
                "wall_ratio": _ratio(means, group, base, "wall_s_mean"),
            }
        )
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def _ratio(means: pd.DataFrame, group: str, base: str, col: str) -> float:
    if col not in means:
        return math.nan
    b = means.at[base, col]
    v = means.at[group, col]
    return float(v / b) if b and not math.isnan(b) and not math.isnan(v) else math.nan


def axis_table(variants: pd.DataFrame, axis_labels: list[str], base: str | None) -> pd.DataFrame:
    """Marginal effect of every axis on accuracy, throughput and memory, averaged over the
    other axes (equal weight per variant that has at least one finished seed)."""
    frames = []
    scored = variants[variants["seeds"] > 0] if "seeds" in variants else variants
    ref_row = (
        variants.set_index("variant").loc[base]
        if base is not None and base in set(variants["variant"])
        else None
    )
    for label in axis_labels:
        if label not in scored or scored[label].nunique() < 2:
            continue
        ref = ref_row[label] if ref_row is not None else None
        parts = []
        for metric, short in (
            ("acc_mean", "acc"),
            ("train_img_s_median", "train_img_s"),
            ("memory_mb_mean", "memory_mb"),
        ):
            if metric not in scored:
                continue
            eff = stats.marginal_effects(scored, label, metric, reference=ref)
            eff = eff.rename(columns={"mean": short, "delta": f"{short}_delta"})
            parts.append(eff.set_index(["axis", "value"])[[c for c in eff if c.startswith(short)]])
            if short == "acc":
                parts.append(eff.set_index(["axis", "value"])[["variants", "reference"]])
        frames.append(pd.concat(parts, axis=1).reset_index())
    if not frames:
        return pd.DataFrame(columns=["axis", "value", "variants", "reference", "acc", "acc_delta"])
    out = pd.concat(frames, ignore_index=True)
    for short in ("train_img_s", "memory_mb"):
        if short in out:  # speed and memory read better as ratios than as differences
            out[f"{short}_ratio"] = out[short] / (out[short] - out[f"{short}_delta"])
            out = out.drop(columns=[f"{short}_delta"])
    first = ["axis", "value", "reference", "variants"]
    return out[first + [c for c in out if c not in first]]
