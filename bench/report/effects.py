"""Each variant against the baseline (paired by seed) and each axis's marginal effect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report import speed, stats

BASELINE_COLUMNS = [
    "variant",
    "pairs",
    "acc_diff",
    "acc_diff_lo",
    "acc_diff_hi",
    "acc_diff_lo_family",
    "acc_diff_hi_family",
    "acc_diff_sd",
    "p_t",
    "p_sign_flip",
    "p_holm",
    "p_equivalent",
    "p_equivalent_holm",
    "family",
    "pair_corr",
    "unpaired_lo",
    "unpaired_hi",
    "pairing_efficiency",
    "interval_used",
    "mdd",
    "seeds_needed",
    "verdict",
    "train_img_s_ratio",
    "train_img_s_lo",
    "train_img_s_hi",
    "speed_pairs",
    "speed_left_out",
    "speed_verdict",
    "memory_ratio",
    "memory_lo",
    "memory_hi",
    "wall_ratio",
]


def baseline_table(
    finished: pd.DataFrame,
    variants: pd.DataFrame,
    base: str | None,
    scored: list[str],
    confidence: float,
    min_effect: float,
    speed_floor: float = math.nan,
) -> pd.DataFrame:
    """Each variant against the baseline, paired by seed, on the accuracy of the model it delivers.

    The comparisons of one report are one family: the paired t-tests' p-values are Holm-adjusted
    over it (``p_holm``; unadjusted ones beside it), so the chance of any false "better"/"worse"
    in the report stays at most ``1 − confidence``; the exact sign-flip test, unadjusted, must agree
    too (a check against a few outlying seeds, not a second correction: adjusted, it could never
    reach ``alpha`` with fewer than 11 seeds in a family of 35). "equivalent" comes from the paired TOST with margin ``min_effect``, Holm-
    adjusted over the same family. ``pair_corr`` and ``pairing_efficiency`` measure what pairing
    bought (runs decorrelate easily); ``acc_diff_lo/hi_family`` are Bonferroni-simultaneous intervals, and the
    smallest detectable difference and seeds needed are computed at the family's level too. Cost
    (``bench.report.speed``): throughput and memory as paired ratios with intervals over seeds,
    contaminated speed measurements left out and counted, a speed verdict only beyond
    ``speed_floor``; wall time as the ratio of geometric means."""
    if base is None:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    by_seed = {g: dict(zip(f["seed"], f["test/acc"])) for g, f in finished.groupby("group")}
    dirty = speed.contaminated(finished)
    clean = finished[~dirty]
    per_seed_speed = {g: dict(zip(f["seed"], f[speed.THROUGHPUT])) for g, f in clean.groupby("group")}
    left_out = finished[dirty].groupby("group").size().to_dict()
    per_seed_memory = {g: dict(zip(f["seed"], f["memory"])) for g, f in finished.groupby("group")}
    alpha = 1 - confidence
    diffs = {
        g: stats.paired_test(by_seed.get(g, {}), by_seed.get(base, {}), confidence=confidence)
        for g in scored
        if g != base
    }
    # the family: every comparison that could get a verdict (at least MIN_PAIRS seeds in common)
    family = [g for g, d in diffs.items() if d.n >= stats.MIN_PAIRS]
    m = max(len(family), 1)
    d_of = {g: [by_seed[g][s] - by_seed[base][s] for s in diffs[g].seeds] for g in family}
    decided = stats.decide_family([diffs[g] for g in family], [d_of[g] for g in family], min_effect, alpha)
    at = {g: i for i, g in enumerate(family)}
    means = variants.set_index("variant")
    rows = []
    for group in scored:
        is_base = group == base
        d = diffs.get(group) or stats.paired_test(by_seed[base], by_seed[base], confidence=confidence)
        i = at.get(group)
        p_holm = decided.p_holm[i] if i is not None else math.nan
        wide = _simultaneous(d, alpha / m)
        pair = stats.pairing(by_seed.get(group, {}), by_seed.get(base, {}), confidence)
        # pairing that removes nothing (|r| < 0.2) and an unpaired interval that is tighter: shown instead
        unpaired = (not is_base and not math.isnan(pair.corr) and abs(pair.corr) < PAIRING_NEAR_ZERO
                    and pair.hi - pair.lo < d.hi - d.lo)  # fmt: skip
        rows.append(
            {
                "variant": group,
                "pairs": d.n,
                "acc_diff": d.diff,
                "acc_diff_lo": d.lo,
                "acc_diff_hi": d.hi,
                "acc_diff_lo_family": math.nan if is_base else wide[0],
                "acc_diff_hi_family": math.nan if is_base else wide[1],
                "acc_diff_sd": d.sd,
                "p_t": math.nan if is_base else d.p_t,
                "p_sign_flip": math.nan if is_base else d.p_value,
                "p_holm": math.nan if is_base else p_holm,
                "p_equivalent": decided.p_equivalent[i] if i is not None else math.nan,
                "p_equivalent_holm": decided.p_equivalent_holm[i] if i is not None else math.nan,
                "family": math.nan if is_base else len(family),
                "pair_corr": math.nan if is_base else pair.corr,
                "unpaired_lo": math.nan if is_base else pair.lo,
                "unpaired_hi": math.nan if is_base else pair.hi,
                "pairing_efficiency": math.nan if is_base else pair.efficiency,
                "interval_used": "unpaired" if unpaired else "paired",
                "mdd": math.nan if is_base else stats.min_detectable(d.sd, d.n, alpha=alpha / m),
                "seeds_needed": math.nan
                if is_base
                else stats.seeds_needed(d.sd, min_effect, alpha=alpha / m),
                "verdict": "baseline" if is_base else decided.verdicts[i] if i is not None else d.verdict,
                **_cost(group, base, per_seed_speed, per_seed_memory, left_out, confidence, speed_floor),
                "wall_ratio": _ratio(means, group, base, "wall_s_mean"),
            }
        )
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


PAIRING_NEAR_ZERO = 0.2  # |correlation| below which pairing by seed is said to remove nothing


def _cost(group, base, per_seed_speed, per_seed_memory, left_out, confidence, floor) -> dict:
    fast = speed.paired_ratio(per_seed_speed.get(group, {}), per_seed_speed.get(base, {}), confidence)
    mem = speed.paired_ratio(per_seed_memory.get(group, {}), per_seed_memory.get(base, {}), confidence)
    return {
        "train_img_s_ratio": fast.ratio,
        "train_img_s_lo": fast.lo,
        "train_img_s_hi": fast.hi,
        "speed_pairs": fast.n,
        "speed_left_out": left_out.get(group, 0) + (left_out.get(base, 0) if group != base else 0),
        "speed_verdict": "baseline" if group == base else speed.speed_verdict(fast, floor),
        "memory_ratio": mem.ratio,
        "memory_lo": mem.lo,
        "memory_hi": mem.hi,
    }


def _simultaneous(d: stats.PairedDiff, alpha: float) -> tuple[float, float]:
    """The paired t-interval at level ``1 − alpha`` (alpha already divided by the family size)."""
    if d.n < 2 or math.isnan(d.sd):
        return math.nan, math.nan
    half = stats.t_quantile(1 - alpha / 2, d.n - 1) * d.sd / math.sqrt(d.n)
    return d.diff - half, d.diff + half


def _ratio(means: pd.DataFrame, group: str, base: str, col: str) -> float:
    if col not in means:
        return math.nan
    b = means.at[base, col]
    v = means.at[group, col]
    return float(v / b) if b and not math.isnan(b) and not math.isnan(v) else math.nan


AXIS_COLUMNS = [
    "axis", "value", "reference", "cells", "design", "seeds", "acc_delta", "acc_delta_lo", "acc_delta_hi",
    "train_img_s_ratio", "train_img_s_lo", "train_img_s_hi", "memory_mb_ratio", "memory_mb_lo", "memory_mb_hi",
    "matched",
]  # fmt: skip


def axis_table(
    variants: pd.DataFrame,
    finished: pd.DataFrame,
    axis_labels: list[str],
    base: str | None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The effect of each axis value against the baseline's value, compared only within matched
    cells: pairs of variants equal on every other axis. Over a full factorial this is the classic
    main effect (the mean of the within-cell differences); where ``exclude`` removed cells it is
    the effect within the cells that remain (``design`` says which), and a value that only an
    ``include`` entry adds has one cell, i.e. its paired comparison with one variant. Averaging
    over unmatched variants instead (the old rule) mixes in the effects of the other axes.

    ``acc_delta`` with a t-interval over the seeds every matched variant has (per seed, the mean of
    the within-cell differences); throughput and memory likewise on the log scale: per seed, the
    mean within-cell log ratio (contaminated speed measurements left out), then its geometric mean
    with a t-interval over seeds."""
    scored = variants[variants["seeds"] > 0] if "seeds" in variants else variants
    labels = [a for a in axis_labels if a in scored and scored[a].nunique() >= 2]
    if base is None or base not in set(scored["variant"]) or not labels:
        return pd.DataFrame(columns=AXIS_COLUMNS)
    ref_row = scored.set_index("variant").loc[base]
    per_seed = {
        "acc": {g: dict(zip(f["seed"], f["test/acc"])) for g, f in finished.groupby("group")},
        "speed": {g: dict(zip(f["seed"], f[speed.THROUGHPUT]))
                  for g, f in finished[~speed.contaminated(finished)].groupby("group")},
        "memory": {g: dict(zip(f["seed"], f["memory"])) for g, f in finished.groupby("group")},
    }  # fmt: skip
    rows = []
    for axis in labels:
        others = [a for a in labels if a != axis]
        cell = {tuple(r[o] for o in others): r for _, r in scored.iterrows() if r[axis] == ref_row[axis]}
        for value in dict.fromkeys(scored[axis]):
            if value == ref_row[axis]:
                continue
            side = scored[scored[axis] == value]
            pairs = [(r, cell[k]) for _, r in side.iterrows() if (k := tuple(r[o] for o in others)) in cell]
            if not pairs:
                continue
            rows.append(_axis_row(axis, value, ref_row[axis], pairs, len(side), others, ref_row, per_seed,
                                  confidence))  # fmt: skip
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)


def _axis_row(axis, value, reference, pairs, n_side, others, ref, per_seed, confidence) -> dict:
    acc = [float(v["acc_mean"] - r["acc_mean"]) for v, r in pairs]
    by_seed = _per_seed_mean(pairs, per_seed["acc"], lambda a, b: a - b)
    ci = stats.mean_ci(by_seed, confidence)
    fast = _log_ratio(pairs, per_seed["speed"], confidence)
    mem = _log_ratio(pairs, per_seed["memory"], confidence)
    return {
        "axis": axis,
        "value": value,
        "reference": reference,
        "cells": len(pairs),
        "design": _design(pairs, n_side, others, ref),
        "seeds": len(by_seed),
        "acc_delta": float(np.mean(acc)),
        "acc_delta_lo": ci.lo,
        "acc_delta_hi": ci.hi,
        "train_img_s_ratio": fast.mean,
        "train_img_s_lo": fast.lo,
        "train_img_s_hi": fast.hi,
        "memory_mb_ratio": mem.mean,
        "memory_mb_lo": mem.lo,
        "memory_mb_hi": mem.hi,
        "matched": "; ".join(f"{v['variant']} vs {r['variant']}" for v, r in pairs),
    }


def _per_seed_mean(pairs, values: dict, diff) -> list[float]:
    """Per seed that every matched variant has, the mean within-cell ``diff(variant, reference)``."""
    seeds = set.intersection(*[set(values.get(g["variant"], {})) for pair in pairs for g in pair])
    return [
        sum(diff(values[v["variant"]][s], values[r["variant"]][s]) for v, r in pairs) / len(pairs)
        for s in sorted(seeds)
    ]


def _log_ratio(pairs, values: dict, confidence: float) -> stats.Summary:
    def log_ratio(a, b):
        return math.log(a / b) if a > 0 and b > 0 else math.nan

    logs = [x for x in _per_seed_mean(pairs, values, log_ratio) if not math.isnan(x)]
    return stats.log_scale_ci(logs, confidence)


def _design(pairs, n_side: int, others: list[str], ref_row: pd.Series) -> str:
    """How the comparison is balanced: over which other axes its cells vary, and where it holds
    another axis away from the baseline's value (e.g. SWA compared only where scheduler=cosine)."""
    if len(pairs) == 1:
        return f"one cell: vs `{pairs[0][1]['variant']}` only"
    varying = [o for o in others if len({v[o] for v, _ in pairs}) > 1]
    held = [f"{o}={v[o]}" for o in others if o not in varying and (v := pairs[0][0])[o] != ref_row[o]]
    text = f"{len(pairs)} cells" + (f" over {', '.join(varying)}" if varying else "")
    if held:
        text += f", only where {', '.join(held)}"
    if len(pairs) < n_side:
        text += f"; {n_side - len(pairs)} variant(s) without a counterpart left out"
    return text if held or len(pairs) < n_side else f"balanced: {text}"
