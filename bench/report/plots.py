"""Report plots (matplotlib, Agg backend, PNG): the cost card, the accuracy/throughput and
accuracy/memory trade-offs with their Pareto fronts, the per-epoch curves, and the LR schedule per
variant."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def panel_grid(count: int, width: float = 5.0, height: float = 3.2):
    """A figure with ``count`` panels, three to a row."""
    plt = _pyplot()
    cols = min(3, count)
    rows = (count + cols - 1) // cols
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def style_lr_panel(ax, title: str, xlabel: str, *, title_color: str = "black", legend: bool = True) -> None:
    """The look shared by every LR panel (bench plan and bench report)."""
    ax.set_title(title, fontsize=8, color=title_color)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("LR", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=6)


def save_figure(fig, title: str, path: Path, dpi: int = 110, top: float = 1.0, **title_kw) -> Path:
    """Title the figure, write the PNG and free it (pyplot keeps every figure until closed).
    ``top`` < 1 keeps a tall title clear of the panels."""
    fig.suptitle(title, **title_kw)
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def save_grid(fig, axes, used: int, title: str, path: Path, top: float = 1.0) -> Path:
    """Blank the unused panels, then save as ``save_figure``."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    return save_figure(fig, title, path, dpi=100, top=top)


def memory_label(memory_key: str | None) -> str:
    """Peak GPU memory, or on a CPU the process's peak resident set size (not a device cost)."""
    if memory_key == "memory/peak_rss_mb":
        return "process peak RSS (memory/peak_rss_mb)"
    return f"peak GPU memory ({memory_key})" if memory_key else "memory (not recorded)"


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def tradeoff_plot(
    pareto: pd.DataFrame,
    variants: pd.DataFrame,
    path: Path,
    memory_key: str | None,
    baseline: str | None,
    memory_front: bool = True,
) -> Path | None:
    """Accuracy (mean with its CI) against median throughput and, when ``memory_front``, against
    peak memory; the Pareto front is the line through the variants nothing beats on both axes."""
    data = variants[variants["seeds"] > 0] if "seeds" in variants else variants
    if data.empty or data["acc_mean"].isna().all():
        return None
    plt = _pyplot()
    panels = [("train_img_s_median", "front_throughput", "train throughput (median img/s, higher is better)")]
    if memory_front and memory_key and data["memory_mb_mean"].notna().any():
        panels.append(("memory_mb_mean", "front_memory", f"{memory_label(memory_key)} (MB, lower is better)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    err = None
    if "acc_lo" in data and data["acc_lo"].notna().any():
        err = [(data["acc_mean"] - data["acc_lo"]).fillna(0), (data["acc_hi"] - data["acc_mean"]).fillna(0)]
    marks = pareto.set_index("variant")
    for ax, (x, front, xlabel) in zip(axes[0], panels):
        ax.errorbar(
            data[x], data["acc_mean"], yerr=err, fmt="o", color="tab:blue", ecolor="0.6", capsize=3, zorder=2
        )
        on = marks.loc[data["variant"], front].to_numpy(dtype=bool)
        f = data[on].sort_values(x)
        ax.plot(f[x], f["acc_mean"], "-", color="tab:red", lw=1.5, zorder=1, label="Pareto front")
        ax.scatter(f[x], f["acc_mean"], s=90, facecolors="none", edgecolors="tab:red", zorder=3)
        for _, row in data.iterrows():
            bold = row["variant"] == baseline
            ax.annotate(_short(row["variant"]) + (" (baseline)" if bold else ""), (row[x], row["acc_mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7,
                        fontweight="bold" if bold else "normal")  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (mean over seeds, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, "Accuracy vs cost per variant", path)


def _mean_curves(history: pd.DataFrame, runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per variant and epoch: the mean over seeds (finished runs) of ``key``."""
    h = history[history["key"] == key].merge(runs[["run_id", "group"]], on="run_id")
    h = h.assign(step=h["step"] + 1)  # logged at step = 0-based epoch; plotted as epochs done
    return h.groupby(["group", "step"], sort=False)["value"].agg(["mean", "min", "max"]).reset_index()


def curves_plot(history: pd.DataFrame, runs: pd.DataFrame, order: list[str], path: Path) -> Path | None:
    """Test accuracy and train loss per epoch, one line per variant (mean over seeds, band =
    min..max over seeds)."""
    done = runs[runs["status"] == "finished"]
    if history.empty or done.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    cmap = plt.get_cmap("tab20")
    for ax, key, label in ((axes[0], "test/acc", "test accuracy"), (axes[1], "train/loss", "train loss")):
        curves = _mean_curves(history, done, key)
        for i, group in enumerate(g for g in order if g in set(curves["group"])):
            c = curves[curves["group"] == group].sort_values("step")
            color, style = (
                cmap(i % 20),
                ("-", "--", ":", "-.")[i % 4],
            )  # identical curves stay distinguishable
            ax.plot(
                c["step"], c["mean"], ls=style, marker="os^vDx"[i % 6], ms=4, color=color, label=_short(group)
            )
            ax.fill_between(c["step"], c["min"], c["max"], color=color, alpha=0.15)
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.set_ylabel(label + " (mean over seeds; band: min–max)")
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7, loc="upper right")
    return save_figure(fig, "Learning curves per variant", path)


def lr_plot(history: pd.DataFrame, runs: pd.DataFrame, order: list[str], path: Path) -> Path | None:
    """The LR each variant's param groups used per epoch (as logged at the start of every
    epoch), one panel per variant, from the first seed that recorded it."""
    keys = sorted(k for k in history["key"].unique() if k.startswith("train/lr/")) if len(history) else []
    if not keys:
        return None
    h = history[history["key"].isin(keys)].merge(runs[["run_id", "group", "seed"]], on="run_id")
    groups = [g for g in order if g in set(h["group"])]
    if not groups:
        return None
    fig, axes = panel_grid(len(groups))
    for ax, group in zip(axes.flat, groups):
        g = h[h["group"] == group]
        first = g.sort_values("seed")["run_id"].iloc[0]
        g = g[g["run_id"] == first]
        for key in sorted(g["key"].unique()):
            c = g[g["key"] == key].sort_values("step")
            ax.plot(c["step"] + 1, c["value"], "-o", ms=3, label=key[len("train/lr/") :])
        style_lr_panel(ax, _short(group, 48), "epoch")
        integer_epochs(ax)
    title = "LR per param group at the start of each epoch (bench plan shows every step)"
    return save_grid(fig, axes, len(groups), title, path)


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
    acc.axvline(0, color="0.3", lw=1)
    acc.axvspan(-min_effect, min_effect, color="0.9", zorder=0, label=f"±min_effect ({min_effect:g})")
    for yi, r in zip(y, rows.itertuples()):
        color = VERDICT_COLORS.get(r.verdict, "0.45")
        if not math.isnan(r.acc_diff_lo):
            acc.plot([r.acc_diff_lo, r.acc_diff_hi], [yi, yi], color=color, lw=2)
        if not math.isnan(r.acc_diff):
            acc.plot(r.acc_diff, yi, "o", color=color, ms=6)
            acc.annotate(f"{r.verdict}, n={r.pairs}", (r.acc_diff, yi), textcoords="offset points",
                         xytext=(0, 6), fontsize=6, ha="center")  # fmt: skip
    acc.set_xlabel("Δ test accuracy vs baseline (paired t-interval)", fontsize=8)
    acc.grid(alpha=0.3, axis="x")
    acc.legend(fontsize=6, loc="lower right")
    labels = [_short(v, 44) + ("\n(bf16 emulated)" if v in emulated_bf16 else "") for v in rows["variant"]]
    acc.set_yticks(y, labels, fontsize=8)
    _ratio_panel(speed, y, rows, "train_img_s", "train throughput ratio (paired over seeds, interval)")
    for yi, r, verdict in zip(y, rows["train_img_s_ratio"], rows["speed_verdict"]):
        if not math.isnan(r):
            speed.annotate(str(verdict), (r, yi), textcoords="offset points", xytext=(0, 6), fontsize=6,
                           ha="center", color="0.4")  # fmt: skip
    _ratio_panel(mem, y, rows, "memory", f"{memory_label(memory_key)} ratio (paired, interval)")
    title = f"Cost card: each variant against the baseline `{_short(baseline_name, 60)}`"
    return save_figure(fig, title, path, fontsize=10)


def _ratio_panel(ax, y, rows: pd.DataFrame, prefix: str, label: str) -> None:
    """Columns ``<prefix>_ratio`` with its interval ``<prefix>_lo``..``<prefix>_hi``."""
    ax.axvline(1, color="0.3", lw=1)
    for yi, r, lo, hi in zip(y, rows[f"{prefix}_ratio"], rows[f"{prefix}_lo"], rows[f"{prefix}_hi"]):
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, hi], [yi, yi], color="tab:blue", lw=2, alpha=0.5)
        if not math.isnan(r):
            ax.plot(r, yi, "s", color="tab:blue", ms=5)
            ax.annotate(f"{r:.2f}×", (r, yi), textcoords="offset points", xytext=(6, -3), fontsize=7)
    ax.set_xlabel(label, fontsize=8)
    ax.grid(alpha=0.3, axis="x")
