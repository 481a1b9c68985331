"""The report's text: the tables as a ``Doc`` (document.py renders it as Markdown and HTML), with
the numbers formatted for reading (the CSVs beside it keep full precision)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.report import environment
from bench.report.document import Doc, to_markdown
from bench.report.plots import memory_label
from bench.report.stats import missing
from bench.report.tables import Tables


def num(v, digits: int = 4, sign: str = "") -> str:
    return "–" if missing(v) else f"{float(v):{sign}.{digits}f}"


def signed(v, digits: int = 4) -> str:
    return num(v, digits, "+")


def mean_std_ci(row: pd.Series, short: str, digits: int) -> str:
    """``mean ± std [lo, hi]``; std/CI are left out when there is one seed."""
    m = row.get(f"{short}_mean")
    if missing(m):
        return "–"
    text = f"{float(m):.{digits}f}"
    if not missing(row.get(f"{short}_std")):
        text += f" ± {float(row[f'{short}_std']):.{digits}f}"
    if not missing(row.get(f"{short}_lo")):
        text += f" [{float(row[f'{short}_lo']):.{digits}f}, {float(row[f'{short}_hi']):.{digits}f}]"
    return text


def median_range(row: pd.Series, short: str, digits: int = 0) -> str:
    """``median [min–max]``; the range is left out with one seed."""
    m = row.get(f"{short}_median")
    if missing(m):
        return "–"
    lo, hi = row.get(f"{short}_min"), row.get(f"{short}_max")
    rng = "" if missing(lo) or lo == hi else f" [{float(lo):.{digits}f}–{float(hi):.{digits}f}]"
    return f"{float(m):.{digits}f}{rng}"


def ratio(v, lo=None, hi=None) -> str:
    """``1.23× [1.10, 1.37]``; the interval is left out where it cannot be computed."""
    if missing(v):
        return "–"
    return f"{float(v):.2f}×" + ("" if missing(lo) or missing(hi) else f" [{float(lo):.2f}, {float(hi):.2f}]")


def interval(lo, hi) -> str:
    """``[+0.0012, +0.0034]``, or ``–`` where it cannot be computed."""
    return "–" if missing(lo) else f"[{float(lo):+.4f}, {float(hi):+.4f}]"


def noise_floor_text(t: Tables) -> str:
    if missing(t.speed_floor):
        return f"(not measurable here: {t.speed_floor_source})"
    return f"±{(t.speed_floor - 1) * 100:.1f}% (from {t.speed_floor_source})"


def seeds_text(v) -> str:
    if missing(v):
        return "–"
    return f"> {1000}" if math.isinf(float(v)) else str(int(v))


def document(
    tables: Tables, *, recipe: str, experiment: str, tracking_uri: str, plots: dict[str, str | Path],
    summary_lines: list[str], extra: list[tuple] | None = None, changes: list[tuple] | None = None,
) -> Doc:  # fmt: skip
    """The whole report; ``changes`` blocks (bench.report.changes) follow the variants, ``extra``
    blocks (side-by-side comparisons) go before the plots."""
    t = tables
    doc = Doc(f"bench report: {recipe}")
    from bench.tracking.uris import redact_uri

    doc.para(
        f"MLflow experiment `{experiment}` on `{redact_uri(tracking_uri)}`. Baseline: `{t.baseline_name or '–'}`."
    )
    doc.heading("Provenance")
    finished = bool(len(t.variants) and t.variants["seeds"].gt(0).any())
    doc.bullets(environment.header_lines(t.provenance, finished=finished))
    for warning in t.warnings:
        doc.para(f"**Warning:** {warning}.")
    if summary_lines:
        doc.heading("Summary")
        doc.bullets(summary_lines)
    variants_section(doc, t)
    doc.blocks.extend(changes or [])
    baseline_section(doc, t)
    sequential_section(doc, t)
    axes_section(doc, t)
    pareto_section(doc, t)
    doc.heading("Runs not in the statistics")
    if len(t.excluded):
        rows = [
            [f"`{r['variant']}`", r["seed"], r["status"], r["reason"] or "–"]
            for _, r in t.excluded.iterrows()
        ]
        doc.table(["run", "seed", "status", "reason"], rows)
    else:
        doc.para("None: every run finished.")
    doc.blocks.extend(extra or [])
    if plots:
        doc.heading("Plots")
        for title, rel in plots.items():
            doc.heading(title, 3)
            doc.image(title, Path(rel))
    return doc


def render(tables: Tables, **kwargs) -> str:
    """report.md's text (images referenced relative to report.md)."""
    return to_markdown(document(tables, **kwargs), Path("."))


def variants_section(doc: Doc, t: Tables) -> None:
    conf = int(round(t.confidence * 100))
    doc.heading("Variants (over seeds)")
    doc.para(
        f"Accuracies: mean ± sample std [{conf}% t-interval of the mean] over the finished seeds. Test accuracy "
        "is the final one of the model the variant delivers: SWA's averaged model, EMA's model, else the trained "
        "weights (column 'delivers'); the trained weights' own accuracy is given beside it where they differ. "
        "Where a validation split exists, the validation accuracy and the test accuracy at the epoch with the "
        "best validation accuracy are given too. The best test accuracy over epochs (`test/acc_oracle`) is "
        "left out: picking an epoch on the test set overstates accuracy. Train throughput: median [min–max] "
        "over the seeds the contention monitor found clean (runs timed on a busy machine are left out). "
        f"{memory_sentence(t.memory_key)} Wall s and train s (training steps only): "
        f"geometric mean [{conf}% interval on the log scale]."
        + (f" Time to target: training seconds (setup and evaluation excluded) until the validation accuracy "
           f"(test where no validation split exists) first reaches {t.target_acc:g}; geometric mean [{conf}% "
           "interval on the log scale] over the seeds that reached it and were not timed on a busy machine."
           if t.target_acc is not None else "")
    )  # fmt: skip
    optional = [(s, h) for s, h in (("acc_raw", "trained weights' test acc"), ("val_acc", "val acc"),
                                    ("acc_valsel", "test acc @ best val")) if f"{s}_mean" in t.variants]  # fmt: skip
    has_ttt = "ttt_s_mean" in t.variants
    has_train = "train_s_mean" in t.variants
    header = ["variant", "seeds", "delivers", "test acc (final)", *[h for _, h in optional], "train img/s",
              "memory MB", "wall s"] + (["train s"] if has_train else []) \
        + ([f"time to {t.target_acc:g} (s)"] if has_ttt else []) + ["runs"]  # fmt: skip
    rows = []
    for _, r in t.variants.iterrows():
        name = f"`{r['variant']}`" + (" (bf16 emulated)" if r["variant"] in t.emulated_bf16 else "")
        delivered = r.get("delivered")
        row = [name, r["seeds"], delivered if isinstance(delivered, str) and delivered else "–", mean_std_ci(r, "acc", 4),
               *[mean_std_ci(r, s, 4) for s, _ in optional],
               median_range(r, "train_img_s"), mean_std_ci(r, "memory_mb", 0), mean_std_ci(r, "wall_s", 1)]  # fmt: skip
        if has_train:
            row.append(mean_std_ci(r, "train_s", 1))
        if has_ttt:
            # the time is over the clean runs only: say how many, where contention left some out
            clean = f", {r['ttt_s_n']} timed clean" if r["ttt_s_n"] < r["ttt_reached"] else ""
            row.append(mean_std_ci(r, "ttt_s", 1) + f" ({r['ttt_reached']}/{r['seeds']} reached{clean})")
        rows.append(row + [r["status"]])
    doc.table(header, rows)
    if t.emulated_bf16:
        names = ", ".join(f"`{g}`" for g in t.emulated_bf16)
        doc.para(f"**Warning:** {names}: {environment.EMULATED_NOTE}; their speed says little about bf16 "
                 "on hardware that has it.")  # fmt: skip


def baseline_section(doc: Doc, t: Tables) -> None:
    conf = int(round(t.confidence * 100))
    alpha = 1 - t.confidence
    b, family = t.baseline, t.family
    doc.heading(f"Against the baseline `{t.baseline_name or '–'}`")
    doc.para(
        f"Δ = variant − baseline test accuracy (of the delivered models) over the seeds both have, with the "
        f"{conf}% paired t-interval mean(d) ± t(1−α/2, n−1)·sd(d)/√n, and the same interval made simultaneous "
        f"over the family (Bonferroni, α/{max(family, 1)}). The {family} comparison(s) with at least 3 paired "
        "seeds form one family. Each has two unadjusted p-values: the paired t-test's and the exact sign-flip "
        "permutation test's (all 2^n sign patterns; it cannot go below 2/2^n, so 0.25 with 3 seeds). "
        f"Holm p adjusts the t-test's over the family; 'better'/'worse' when it is ≤ {alpha:g} and the sign-flip p "
        f"is too, so the chance of any false better/worse in this report is at most {alpha:g}; 'equivalent' when the paired "
        f"equivalence test (TOST, margin ±report.min_effect = {t.min_effect:g}), Holm-adjusted, is ≤ {alpha:g}: the "
        "difference is shown to be smaller than the margin (the 'no harm' answer for speed tricks); 'leaning' "
        "when the Holm-adjusted t-test is but the sign-flip test does not agree. Pairing: r is the correlation of the two variants' per-seed "
        "accuracies, and ×k says the paired comparison needs 1/k of the seeds an unpaired one would (below 1: "
        "pairing cost seeds); where r is near zero (|r| < 0.2) and the unpaired (Welch) interval is tighter, it "
        "is shown instead, marked 'unpaired' (the verdicts stay on the paired tests). Smallest detectable Δ: (t(1−α'/2, n−1) + t(0.8, n−1))·sd(d)/√n at the "
        "family's level α' = α/family, the difference these seeds would find with 80% power; seeds needed: the "
        f"fewest paired seeds with which report.min_effect = {t.min_effect:g} would be found at that spread. "
        f"Throughput and memory: paired ratios, the geometric mean of the per-seed ratios (the same seed block "
        f"of the run order) with a {conf}% t-interval on the log scale; speed measurements the contention "
        "monitor marked contaminated are left out and counted. A speed difference is called ('faster'/"
        f"'slower') only when the interval clears the noise floor {noise_floor_text(t)}; 'same within the "
        "noise floor' when the interval lies inside it. Wall ratio: paired the same way, over the runs not "
        "marked contaminated."
    )
    rows = []
    for _, r in b.iterrows():
        ci = interval(r["acc_diff_lo"], r["acc_diff_hi"])
        if r.get("interval_used") == "unpaired":
            ci = interval(r["unpaired_lo"], r["unpaired_hi"]) + " unpaired"
        pairing = (
            "–" if missing(r.get("pair_corr")) else f"r={r['pair_corr']:.2f}, ×{r['pairing_efficiency']:.2g}"
        )
        wide = interval(r["acc_diff_lo_family"], r["acc_diff_hi_family"])
        speed = ratio(r["train_img_s_ratio"], r["train_img_s_lo"], r["train_img_s_hi"])
        if r["verdict"] != "baseline":
            speed += f" {r['speed_verdict']}"
            if r["speed_left_out"]:
                speed += f", {r['speed_left_out']} seed pair(s) left out (timed under load)"
        rows.append([f"`{r['variant']}`", r["pairs"], signed(r["acc_diff"]), ci, wide, num(r["p_t"], 3),
                     num(r["p_sign_flip"], 3), num(r["p_holm"], 3), num(r.get("p_equivalent_holm"), 3),
                     r["verdict"], pairing, num(r["mdd"]),
                     seeds_text(r["seeds_needed"]), speed, ratio(r["memory_ratio"], r["memory_lo"], r["memory_hi"]),
                     ratio(r["wall_ratio"], r["wall_lo"], r["wall_hi"])])  # fmt: skip
    doc.table(["variant", "paired seeds", "Δ test acc", f"{conf}% t-interval", "simultaneous interval", "t p",
               "sign-flip p", f"Holm p (family {family})", f"Holm p, within ±{t.min_effect:g}", "verdict",
               "pairing", "smallest detectable Δ",
               f"seeds for Δ={t.min_effect:g}", "throughput ratio", "memory ratio", "wall ratio"], rows)  # fmt: skip


def axes_section(doc: Doc, t: Tables) -> None:
    conf = int(round(t.confidence * 100))
    doc.heading("Per axis (effects within matched cells)")
    doc.para(
        "Each axis value against the baseline's value, compared only between variants equal on every other "
        "axis (a cell). Over a full factorial this is the main effect; where `exclude` removed cells the "
        "comparison stays within the cells that remain, and a value added by `include` has one cell: its "
        f"paired comparison with one variant ('design' says which). Δ acc: mean within-cell difference with a "
        f"{conf}% t-interval over the seeds all its variants share (no family correction: descriptive; the "
        "verdicts are in the baseline table). Ratios: per seed, the mean within-cell log ratio; geometric mean with a "
        f"{conf}% t-interval over seeds."
    )
    if not len(t.axes):
        doc.para("No axis with two or more scored values in matched cells.")
        return
    rows = []
    for _, r in t.axes.iterrows():
        ci = interval(r["acc_delta_lo"], r["acc_delta_hi"])
        value = f"`{r['value']}` vs `{r['reference']}`"
        if r.get("bundle") is not None and not pd.isna(r.get("bundle")) and bool(r.get("bundle")):
            keys = [part.split(" ")[0].split(".")[-1] for part in str(r["beyond"]).split("; ") if part]
            value += f" (bundle, also: {', '.join(keys)})"  # the values are in the changes table
        rows.append([r["axis"], value, r["design"], r["seeds"],
                     signed(r["acc_delta"]), ci, ratio(r["train_img_s_ratio"], r["train_img_s_lo"], r["train_img_s_hi"]),
                     ratio(r["memory_mb_ratio"], r["memory_mb_lo"], r["memory_mb_hi"])])  # fmt: skip
    doc.table(["axis", "value", "design", "seeds", "Δ acc", f"{conf}% t-interval", "throughput ratio",
               "memory ratio"], rows)  # fmt: skip


def memory_sentence(memory_key: str | None) -> str:
    """What the memory column holds; runs without peak GPU memory or peak RSS leave it empty."""
    if memory_key is None:
        return "Memory: not recorded (no run has peak GPU memory or `memory/peak_rss_mb`)."
    return f"Memory: {memory_label(memory_key)}, mean over seeds."


def pareto_section(doc: Doc, t: Tables) -> None:
    doc.heading("Pareto fronts")
    text = "A variant is on a front when no other variant is at least as good on both measures and better on one."
    if t.memory_key is None:
        text += " Memory was not recorded, so it is on no front."
    elif not t.memory_front:
        text += (f" Memory here is the {memory_label(t.memory_key)}, not a device's memory, so it is left off "
                 "the fronts (`bench report --memory-front` puts it on).")  # fmt: skip
    doc.para(text)
    header = ["variant", "test acc", "train img/s (median)", "memory MB", "front: acc vs speed"]
    header += ["front: acc vs memory"] if t.memory_front else []
    rows = []
    for _, r in t.pareto.iterrows():
        if missing(r["acc_mean"]):
            continue
        row = [f"`{r['variant']}`", num(r["acc_mean"]), num(r["train_img_s_median"], 0),
               num(r["memory_mb_mean"], 0), "yes" if r["front_throughput"] else ""]  # fmt: skip
        rows.append(row + (["yes" if r["front_memory"] else ""] if t.memory_front else []))
    doc.table(header, rows)


def sequential_section(doc: Doc, t: Tables) -> None:
    """The verdicts of a ``bench run --until-decided`` run (bench/report/sequential.py)."""
    if t.sequential is None or "sequential_verdict" not in t.baseline:
        return
    s = t.sequential
    doc.heading("Sequential verdicts (--until-decided)")
    doc.para(
        f"These runs added seeds where undecided (at most {s['max_seeds']} per variant), so the seed count "
        "depends on the results: the verdicts to read are these, from a group-sequential design with a look at "
        "every seed count up to the cap (Lan–DeMets Pocock-type α-spending; repeated confidence intervals, "
        "valid at every look at once; per-run spread pooled over the study's arms, never below the pair's), "
        f"each at α/family = {s['alpha']:g}/{s['family']} (Bonferroni). 'better'/'worse': the interval "
        f"excludes 0; 'equivalent': it lies inside ±{s['min_effect']:g}; 'undecided': neither (the cap was "
        "reached)."
    )
    rows = [[f"`{r['variant']}`", int(r["seq_pairs"]), signed(r["acc_diff"]),
             interval(r["seq_lo"], r["seq_hi"]),
             r["sequential_verdict"], "–" if missing(r.get("pair_corr")) else f"{r['pair_corr']:.2f}"]
            for _, r in t.baseline.iterrows() if r["verdict"] != "baseline"]  # fmt: skip
    doc.table(["variant", "paired seeds", "Δ test acc", "repeated confidence interval", "sequential verdict", "pairing r"],
              rows)  # fmt: skip
