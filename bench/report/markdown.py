"""report.md: the tables as Markdown, with the numbers formatted for reading (the CSVs beside
it keep full precision)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bench.report.tables import Tables


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _nan(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def num(v, digits: int = 4) -> str:
    return "–" if _nan(v) else f"{float(v):.{digits}f}"


def mean_std_ci(row: pd.Series, short: str, digits: int) -> str:
    """``mean ± std [lo, hi]``; std/CI are left out when there is one seed."""
    m = row.get(f"{short}_mean")
    if _nan(m):
        return "–"
    text = f"{float(m):.{digits}f}"
    if not _nan(row.get(f"{short}_std")):
        text += f" ± {float(row[f'{short}_std']):.{digits}f}"
    if not _nan(row.get(f"{short}_lo")):
        text += f" [{float(row[f'{short}_lo']):.{digits}f}, {float(row[f'{short}_hi']):.{digits}f}]"
    return text


def ratio(v) -> str:
    return "–" if _nan(v) else f"{float(v):.2f}×"


def signed(v, digits: int = 4) -> str:
    return "–" if _nan(v) else f"{float(v):+.{digits}f}"


def render(
    tables: Tables,
    *,
    recipe: str,
    experiment: str,
    tracking_uri: str,
    plots: dict[str, str],
    summary_lines: list[str],
) -> str:
    t = tables
    conf = int(round(t.confidence * 100))
    out = [f"# bench report: {recipe}", ""]
    out.append(f"MLflow experiment `{experiment}` on `{tracking_uri}`. Baseline: `{t.baseline_name or '–'}`.")
    out.append("")
    if summary_lines:
        out += ["## Summary", ""] + [f"- {line}" for line in summary_lines] + [""]

    out += ["## Variants (over seeds)", ""]
    out.append(
        f"mean ± sample std [{conf}% t-interval of the mean] over the finished seeds. "
        f"Memory is `{t.memory_key or 'not recorded'}`."
        + (
            f" Time to target is the wall time until test accuracy first reaches {t.target_acc:g}, "
            "with each run's wall time spread evenly over its epochs (epoch k ends at wall_s·(k+1)/epochs); "
            "its statistics are over the seeds that reached it."
            if t.target_acc is not None
            else ""
        )
    )
    out.append("")
    header = ["variant", "seeds", "test acc"]
    has_swa = "acc_swa_mean" in t.variants
    has_ttt = "ttt_s_mean" in t.variants
    if has_swa:
        header.append("SWA test acc")
    header += ["train img/s", "peak memory MB", "wall s"]
    if has_ttt:
        header.append(f"time to {t.target_acc:g} (s)")
    header.append("runs")
    rows = []
    for _, r in t.variants.iterrows():
        row = [f"`{r['variant']}`", r["seeds"], mean_std_ci(r, "acc", 4)]
        if has_swa:
            row.append(mean_std_ci(r, "acc_swa", 4))
        row += [mean_std_ci(r, "train_img_s", 0), mean_std_ci(r, "memory_mb", 0), mean_std_ci(r, "wall_s", 1)]
        if has_ttt:
            row.append(mean_std_ci(r, "ttt_s", 1) + f" ({r['ttt_reached']}/{r['seeds']} reached)")
        row.append(r["status"])
        rows.append(row)
    out += [md_table(header, rows), ""]

    out += [f"## Against the baseline `{t.baseline_name or '–'}`", ""]
    out.append(
        f"Accuracy difference (variant − baseline) over the seeds both have, with a {conf}% paired "
        "bootstrap interval (runs paired by seed, 10,000 resamples, fixed RNG seed 0). Ratios are of the "
        "seed means. An interval that excludes 0 is a difference the seeds agree on."
    )
    out.append("")
    rows = [
        [f"`{r['variant']}`", r["pairs"], signed(r["acc_diff"]),
         "–" if _nan(r["acc_diff_lo"]) else f"[{r['acc_diff_lo']:+.4f}, {r['acc_diff_hi']:+.4f}]",
         ratio(r["train_img_s_ratio"]), ratio(r["memory_ratio"]), ratio(r["wall_ratio"])]
        for _, r in t.baseline.iterrows()
    ]  # fmt: skip
    header = [
        "variant",
        "paired seeds",
        "Δ test acc",
        f"{conf}% bootstrap CI",
        "throughput ratio",
        "memory ratio",
        "wall ratio",
    ]
    out += [md_table(header, rows), ""]

    out += ["## Per axis (marginal effects)", ""]
    out.append(
        "For each value of an axis: the mean over the variants having that value (seed means, equal weight), "
        "i.e. averaged over the other axes; Δ and ratios are against the baseline's value. Variants added by "
        "`include` count with the recipe's base value on the axes they do not set."
    )
    out.append("")
    if len(t.axes):
        rows = [
            [r["axis"], f"`{r['value']}`" + (" (ref)" if r["value"] == r["reference"] else ""), r["variants"],
             num(r.get("acc")), signed(r.get("acc_delta")), ratio(r.get("train_img_s_ratio")), ratio(r.get("memory_mb_ratio"))]
            for _, r in t.axes.iterrows()
        ]  # fmt: skip
        out += [
            md_table(
                ["axis", "value", "variants", "test acc", "Δ acc", "throughput ratio", "memory ratio"], rows
            ),
            "",
        ]
    else:
        out += ["No axis with two or more scored values.", ""]

    out += ["## Pareto fronts", ""]
    out.append(
        "A variant is on a front when no other variant is at least as good on both measures and better on one."
    )
    out.append("")
    rows = [
        [f"`{r['variant']}`", num(r["acc_mean"]), num(r["train_img_s_mean"], 0), num(r["memory_mb_mean"], 0),
         "yes" if r["front_throughput"] else "", "yes" if r["front_memory"] else ""]
        for _, r in t.pareto.iterrows()
        if not _nan(r["acc_mean"])
    ]  # fmt: skip
    out += [
        md_table(
            [
                "variant",
                "test acc",
                "train img/s",
                "memory MB",
                "front: acc vs speed",
                "front: acc vs memory",
            ],
            rows,
        ),
        "",
    ]

    out += ["## Runs not in the statistics", ""]
    if len(t.excluded):
        rows = [
            [f"`{r['variant']}`", r["seed"], r["status"], r["reason"] or "–"]
            for _, r in t.excluded.iterrows()
        ]
        out += [md_table(["run", "seed", "status", "reason"], rows), ""]
    else:
        out += ["None: every run finished.", ""]

    if plots:
        out += ["## Plots", ""]
        for title, rel in plots.items():
            out += [f"### {title}", "", f"![{title}]({rel})", ""]
    return "\n".join(out).rstrip() + "\n"
