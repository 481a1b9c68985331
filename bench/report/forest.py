"""The per-trick cost card: a forest plot of each variant's test-accuracy difference from the
baseline with its paired t-interval, beside its throughput and memory ratios, so what a trick
buys and what it costs read off one row."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.report.plots import _pyplot, _short, memory_label, save_figure

VERDICT_COLORS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "leaning better": "yellowgreen",
                  "leaning worse": "salmon"}  # fmt: skip


def cost_card(
    baseline: pd.DataFrame,
    path: Path,
    *,
    baseline_name: str | None,
    memory_key: str | None,
    min_effect: float,
    emulated_bf16: list[str] = (),
) -> Path | None:
    rows = baseline[baseline["variant"] != baseline_name] if len(baseline) else baseline
    if rows.empty or baseline_name is None:
        return None
    plt = _pyplot()
    rows = rows.iloc[::-1]  # the first variant at the top
    y = list(range(len(rows)))
    fig, (acc, speed, mem) = plt.subplots(
        1, 3, figsize=(14, 1.6 + 0.45 * len(rows)), sharey=True, gridspec_kw={"width_ratios": [2.2, 1, 1]}
    )
    _accuracy_panel(acc, rows, y, min_effect)
    labels = [_short(v, 44) + ("\n(bf16 emulated)" if v in emulated_bf16 else "") for v in rows["variant"]]
    acc.set_yticks(y, labels, fontsize=8)
    _ratio_panel(speed, y, rows["train_img_s_ratio"], rows["train_img_s_lo"].tolist(), rows["train_img_s_hi"].tolist(),
                 "train throughput ratio (paired over seeds, interval)")  # fmt: skip
    for yi, r, verdict in zip(y, rows["train_img_s_ratio"], rows["speed_verdict"]):
        if not math.isnan(r):
            speed.annotate(str(verdict), (r, yi), textcoords="offset points", xytext=(0, 6), fontsize=6,
                           ha="center", color="0.4")  # fmt: skip
    _ratio_panel(mem, y, rows["memory_ratio"], rows["memory_lo"].tolist(), rows["memory_hi"].tolist(),
                 f"{memory_label(memory_key)} ratio (paired, interval)")  # fmt: skip
    title = f"Cost card: each variant against the baseline `{_short(baseline_name, 60)}`"
    return save_figure(fig, title, path, fontsize=10)


def _accuracy_panel(ax, rows: pd.DataFrame, y: list[int], min_effect: float) -> None:
    ax.axvline(0, color="0.3", lw=1)
    ax.axvspan(-min_effect, min_effect, color="0.9", zorder=0, label=f"±min_effect ({min_effect:g})")
    for yi, r in zip(y, rows.itertuples()):
        color = VERDICT_COLORS.get(r.verdict, "0.45")
        if not math.isnan(r.acc_diff_lo):
            ax.plot([r.acc_diff_lo, r.acc_diff_hi], [yi, yi], color=color, lw=2)
        if not math.isnan(r.acc_diff):
            ax.plot(r.acc_diff, yi, "o", color=color, ms=6)
            ax.annotate(f"{r.verdict}, n={r.pairs}", (r.acc_diff, yi), textcoords="offset points",
                        xytext=(0, 6), fontsize=6, ha="center")  # fmt: skip
    ax.set_xlabel("Δ test accuracy vs baseline (paired t-interval)", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=6, loc="lower right")


def _ratio_panel(ax, y, ratios, lo, hi, label: str) -> None:
    ax.axvline(1, color="0.3", lw=1)
    for i, (yi, r) in enumerate(zip(y, ratios)):
        if lo is not None and not (math.isnan(lo[i]) or math.isnan(hi[i])):
            ax.plot([lo[i], hi[i]], [yi, yi], color="tab:blue", lw=2, alpha=0.5)
        if not math.isnan(r):
            ax.plot(r, yi, "s", color="tab:blue", ms=5)
            ax.annotate(f"{r:.2f}×", (r, yi), textcoords="offset points", xytext=(6, -3), fontsize=7)
    ax.set_xlabel(label, fontsize=8)
    ax.grid(alpha=0.3, axis="x")
