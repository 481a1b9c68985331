"""``build_report``: MLflow runs -> DataFrames (no files). ``make_report``: those tables as CSVs,
plots as PNGs, report.md and a self-contained report.html, optionally beside other studies, and
the files logged as artifacts of the recipe's latest parent run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import changes, compare, fetch, markdown, plots, sequential
from bench.report import variance as variance_mod
from bench.report.document import to_html, to_markdown
from bench.report.tables import Tables, add_epoch_columns, build_tables

HISTORY_KEYS = ("test/acc", "val/acc", "train/loss", "time/train_epoch_s")
VARIANCE_METRIC, VARIANCE_DRAWS = "test/acc", 20000
CSV_TABLES = ("variants", "baseline", "axes", "pareto", "excluded", "provenance")


@dataclass
class Built:
    """The report's numbers, before anything is written."""

    tables: Tables
    runs: pd.DataFrame  # one row per child run (latest per run_key), metrics and env.* tags
    history: pd.DataFrame  # run_id, key, step, value: the per-epoch metrics
    parent_id: str | None
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # run_id -> resolved config

    def frames(self) -> dict[str, pd.DataFrame]:
        out = {name: getattr(self.tables, name) for name in CSV_TABLES}
        return {**out, "runs": self.runs, "history": self.history}


@dataclass
class Report:
    path: Path  # report.md
    html: Path  # report.html
    tables: Tables
    files: list[Path]  # CSVs and PNGs beside it
    runs: pd.DataFrame
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)
    variance: dict = field(default_factory=dict)  # variant -> variance.Split (with --variance)


def build_report(
    client,
    *,
    experiment: str,
    group_order: list[str] | None = None,
    baseline: str | None = None,
    target_acc: float | None = None,
    min_effect: float = 0.005,
    memory_front: bool | None = None,
) -> Built:
    fetched = fetch.fetch_runs(client, experiment)
    runs = fetched.runs
    lr_keys = sorted({c for c in runs.columns if c.startswith("train/lr/")})
    history = fetch.fetch_histories(client, runs["run_id"].tolist(), [*HISTORY_KEYS, *lr_keys])
    runs = add_epoch_columns(runs, history, target_acc)
    settings = dict(
        group_order=group_order, target_acc=target_acc, min_effect=min_effect, memory_front=memory_front
    )
    tables = build_tables(
        runs, fetched.axes, baseline=baseline, compute_neutral=compute_neutral(runs, fetched.params, baseline),
        **settings,
    )  # fmt: skip
    if tables.baseline_name not in (baseline, None):  # no finished baseline run: compared against another
        # variant, so 'compute-neutral' (the speed noise floor's A/A arms) means neutral to that one
        neutral = compute_neutral(runs, fetched.params, tables.baseline_name)
        tables = build_tables(runs, fetched.axes, baseline=baseline, compute_neutral=neutral, **settings)
    # first: unfinished, trials counted, superseded, then the tables' own
    tables.warnings[:0] = [w for w in (fetched.unfinished, fetched.trials_counted, fetched.superseded) if w]
    tables.axes = mark_bundles(tables.axes, changes.bundle_axes(runs, fetched.params, tables.baseline_name))
    until = sequential.recorded_settings(client, fetched.experiment_id)
    if until is not None:  # runs from --until-decided: the decision it stopped on
        finished = runs[runs["status"] == "finished"]
        tables.baseline = sequential.add_sequential(tables.baseline, finished, tables.baseline_name, until)
        tables.sequential = until
    return Built(tables, runs, history, fetched.parent_id, fetched.params)


def compute_neutral(runs: pd.DataFrame, params: dict, baseline: str | None) -> set[str]:
    """Variants that change only keys the per-step computation does not depend on (their speed
    ratio to the baseline measures the machine's noise, see ``bench.report.speed``)."""
    from bench.report.speed import COMPUTE_NEUTRAL_PREFIXES

    table = changes.changes_table(runs, params, baseline)
    return {
        r.variant for r in table.itertuples()
        if r.n_keys and all(k.startswith(COMPUTE_NEUTRAL_PREFIXES) for k in r.keys.split(", "))
    }  # fmt: skip


def mark_bundles(axes: pd.DataFrame, bundles: pd.DataFrame) -> pd.DataFrame:
    """The per-axis table with ``bundle`` (the value changes keys beyond the one its label names)
    and ``beyond`` (those keys), so an axis effect is read as the effect of everything it changes."""
    if not len(axes) or not len(bundles):
        return axes.assign(bundle=pd.NA, beyond="")
    extra = bundles[["axis", "value", "bundle", "beyond"]].astype({"value": str})
    out = axes.astype({"value": str}).merge(extra, on=["axis", "value"], how="left")
    out["beyond"] = out["beyond"].fillna("")
    return out


def as_study(name: str, source: str, tables: Tables) -> compare.Study:
    prov = pd.concat(
        [tables.provenance, pd.DataFrame([{"key": compare.MEMORY_KEY, "value": tables.memory_key or "n/a", "runs": ""}])],
        ignore_index=True,
    )  # fmt: skip
    return compare.Study(name, source, tables.variants, prov)


def make_report(
    client,
    *,
    out_dir: Path,
    tracking_uri: str,
    recipe_name: str | None = None,
    others: list[compare.Study] = (),
    log_artifacts: bool = True,
    variance: bool = False,
    **settings,
) -> Report:
    """``settings``: ``build_report``'s (``experiment`` and the statistics' settings)."""
    built = build_report(client, **settings)
    tables, history, runs, experiment = built.tables, built.history, built.runs, settings["experiment"]
    splits, order = {}, list(tables.variants["variant"])
    if variance:  # before anything is written: it may refuse
        splits = variance_mod.split_runs(
            runs, VARIANCE_METRIC, order, confidence=tables.confidence, draws=VARIANCE_DRAWS
        )
        if not splits:
            raise variance_mod.DesignError(
                f"experiment '{experiment}': --variance found no variant with finished runs on at least "
                "2 init x 2 data seeds; set init_seeds and data_seeds in the recipe and run it"
            )
    out_dir = Path(out_dir)
    files_dir = out_dir / "report"
    files_dir.mkdir(parents=True, exist_ok=True)
    name = recipe_name or experiment
    this = as_study(name, tracking_uri, tables)
    comparisons = {other.name: compare.side_by_side(this, other) for other in others}
    csvs = {t: getattr(tables, t) for t in CSV_TABLES} | {"provenance": this.provenance}
    csvs |= {f"compare_{other}": side for other, side in comparisons.items()}
    extra = [block for other in others for block in compare.blocks(this, other, comparisons[other.name])]
    if variance:
        csvs["variance"] = variance_mod.to_frame(splits, VARIANCE_METRIC)
        extra = variance_mod.blocks(splits, VARIANCE_METRIC, tables.confidence, VARIANCE_DRAWS) + extra
    files = [files_dir / f"{t}.csv" for t in csvs]
    for path, frame in zip(files, csvs.values()):
        frame.to_csv(path, index=False)
    drawn = {
        "Cost card: accuracy difference, throughput and memory against the baseline": plots.cost_card(
            tables.baseline, files_dir / "cost_card.png", baseline_name=tables.baseline_name,
            memory_key=tables.memory_key, min_effect=tables.min_effect, emulated_bf16=tables.emulated_bf16,
        ),
        "Accuracy vs cost (Pareto fronts)": plots.tradeoff_plot(
            tables.pareto, tables.variants, files_dir / "tradeoff.png", tables.memory_key,
            tables.baseline_name, tables.memory_front,
        ),
        "Learning curves": plots.curves_plot(history, runs, order, files_dir / "curves.png"),
        "LR schedule per variant": plots.lr_plot(history, runs, order, files_dir / "lr.png"),
    }  # fmt: skip
    pngs = {title: p for title, p in drawn.items() if p is not None}
    files += list(pngs.values())
    doc = markdown.document(
        tables, recipe=name, experiment=experiment, tracking_uri=tracking_uri, plots=pngs,
        summary_lines=summary_lines(tables), extra=extra,
        changes=changes.blocks(runs, built.params, tables.baseline_name),
    )  # fmt: skip
    report_path, html_path = out_dir / "report.md", out_dir / "report.html"
    report_path.write_text(to_markdown(doc, out_dir))
    html_path.write_text(to_html(doc))
    if log_artifacts and built.parent_id:
        for path in [report_path, html_path, *files]:
            client.log_artifact(built.parent_id, str(path), artifact_path="report")
    return Report(report_path, html_path, tables, files, runs, comparisons, splits)


WHY = {  # what backs a verdict, by whether it is only leaning
    False: " (Holm-adjusted t-test, confirmed by the exact sign-flip test)",
    True: " (Holm-adjusted t-test; the exact sign-flip test does not confirm: with under 6 seeds it cannot)",
}


UNDECIDED = {
    "too few seeds": "share fewer than 3 seeds with the baseline: no verdict on accuracy (see the seeds "
    "needed per comparison)",
    "within noise": "differ from the baseline by less than the seed-to-seed noise",
}


def summary_lines(t: Tables) -> list[str]:
    """The answer in a few sentences: best, fastest, what differs from the baseline, what is missing."""
    lines = []
    v = t.variants[t.variants["seeds"] > 0] if len(t.variants) else t.variants
    if not len(v):  # every run failed or was skipped: say so first, not only in the closing count
        lines.append("No run finished: there is nothing to compare yet.")
    if len(v) and v["acc_mean"].notna().any():
        best = v.loc[v["acc_mean"].idxmax()]
        delivered = (
            "" if best.get("delivered") in (None, "weights") else f", scored on its {best['delivered']} model"
        )
        lines.append(
            f"Highest mean final test accuracy: `{best['variant']}` at {best['acc_mean']:.4f} "
            f"({best['seeds']} seed(s){delivered}){_caveat(v, best, 'acc', higher=True)}."
        )
        if v["train_img_s_median"].notna().any():
            fast = v.loc[v["train_img_s_median"].idxmax()]
            lines.append(
                f"Fastest to train: `{fast['variant']}` at {fast['train_img_s_median']:.0f} img/s (median)"
                f"{_caveat(v, fast, 'train_img_s', higher=True)}."
            )
    if len(v) and (busy := _busy_machine(v)):
        lines.append(busy)
    if len(t.baseline) and t.sequential is not None and "sequential_verdict" in t.baseline:
        lines += _sequential_lines(t)
    elif len(t.baseline):
        b = t.baseline[t.baseline["variant"] != t.baseline_name]
        if family := t.family:
            lines.append(f"{family} comparison(s) with the baseline form one family: verdicts are Holm-adjusted, "
                         f"so the chance of any false better/worse in this report is at most {1 - t.confidence:g}.")  # fmt: skip
        for verdict in ("better", "worse", "leaning better", "leaning worse"):
            hit = b[b["verdict"] == verdict]
            if len(hit):
                names = ", ".join(f"`{r.variant}` ({r.acc_diff:+.4f}, n={r.pairs}, Holm p={r.p_holm:.3g})"
                                  for r in hit.itertuples())  # fmt: skip
                lines.append(
                    f"{verdict.capitalize()} than the baseline{WHY[verdict.startswith('leaning')]}: {names}."
                )
        same = b[b["verdict"] == "equivalent"]
        if len(same):
            names = ", ".join(f"`{r.variant}` ({r.acc_diff:+.4f}, n={r.pairs})" for r in same.itertuples())
            lines.append(
                f"Equivalent to the baseline within ±{t.min_effect:g} (Holm-adjusted TOST): {names}."
            )
        for verdict, says in UNDECIDED.items():
            if count := int((b["verdict"] == verdict).sum()):
                lines.append(f"{count} variant(s) {says}.")
    if len(t.pareto):
        front = t.pareto[t.pareto["front_throughput"]]
        if len(front):
            lines.append(
                "Pareto front, accuracy vs throughput: " + ", ".join(f"`{n}`" for n in front["variant"]) + "."
            )
    if t.emulated_bf16:
        lines.append("bf16 was emulated for " + ", ".join(f"`{g}`" for g in t.emulated_bf16)
                     + ": their throughput is not what bf16 hardware gives.")  # fmt: skip
    if len(t.excluded):
        counts = t.excluded["status"].value_counts()
        lines.append("Not in the statistics: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                     + " run(s); see 'Runs not in the statistics' for the reasons.")  # fmt: skip
    if t.target_acc is not None and "ttt_s_mean" in t.variants and len(v):
        reached = v[v["ttt_s_mean"].notna()]
        if len(reached):
            # its time is over the seeds that got there: a variant that missed the target in some
            # seeds is named first only where none reached it in every seed, and says so
            every = reached[reached["ttt_reached"] >= reached["seeds"]]
            pool = every if len(every) else reached
            quick = pool.loc[pool["ttt_s_mean"].idxmin()]
            split = "validation" if quick.get("ttt_on") == "val" else "test (no validation split)"
            missed = ""
            if quick["ttt_reached"] < quick["seeds"]:
                missed = f", reached in {int(quick['ttt_reached'])} of {int(quick['seeds'])} seeds"
            lines.append(
                f"First to {t.target_acc:g} {split} accuracy: `{quick['variant']}` after {quick['ttt_s_mean']:.1f} s "
                f"of training (geometric mean{missed}){_caveat(pool, quick, 'ttt_s', higher=False)}."
            )
        elif v["ttt_reached"].sum():
            lines.append(f"No run that reached the target accuracy {t.target_acc:g} was timed on a quiet "
                         "machine: no variant is named first to it.")  # fmt: skip
        else:
            lines.append(f"No variant reached the target accuracy {t.target_acc:g}.")
    return lines


def _sequential_lines(t: Tables) -> list[str]:
    """Runs of ``--until-decided`` stopped on their results: the summary gives the sequential
    verdicts. The fixed-design ones assume a seed count fixed in advance; read after adaptive
    stopping they overclaim (a comparison the sequential design left undecided read 'equivalent')."""
    b = t.baseline[t.baseline["variant"] != t.baseline_name]
    margin = t.sequential.get("min_effect", t.min_effect)
    says = {
        "better": "Better than the baseline",
        "worse": "Worse than the baseline",
        "equivalent": f"Equivalent to the baseline within ±{float(margin):g}",
        "undecided": "Undecided at the seed cap",
        "too few seeds": "Too few paired seeds for a verdict",
    }
    lines = [
        "Seeds were added until decided (--until-decided): the verdicts are the sequential ones (repeated "
        "confidence intervals, table 'Sequential verdicts'); the fixed-design verdicts assume a seed count "
        "fixed in advance and are not read here."
    ]
    for verdict, text in says.items():
        hit = b[b["sequential_verdict"] == verdict]
        if len(hit):
            names = ", ".join(
                f"`{r.variant}` (no seed paired with the baseline)"  # it printed '(+nan, n=0)'
                if pd.isna(r.acc_diff)
                else f"`{r.variant}` ({r.acc_diff:+.4f}"
                + (f", [{r.seq_lo:+.4f}, {r.seq_hi:+.4f}]" if np.isfinite([r.seq_lo, r.seq_hi]).all() else "")
                + (f", n={r.seq_pairs:.0f})" if pd.notna(r.seq_pairs) else ")")
                for r in hit.itertuples()
            )
            lines.append(f"{text} (sequential): {names}.")
    return lines


def _busy_machine(v: pd.DataFrame) -> str:
    """Says how many runs were timed while other processes used the machine: they are left out of
    the img/s medians, the fastest variant and the Pareto front, and a variant with no clean run has
    no median at all (the paired ratios leave them out too)."""
    dirty = int(v["speed_contaminated"].sum()) if "speed_contaminated" in v else 0
    if not dirty:
        return ""
    # every run marked: a variant whose clean runs were too short to time has no img/s either, but
    # not for this reason
    unmeasured = [f"`{u}`" for u in v.loc[v["speed_contaminated"] >= v["seeds"], "variant"]]
    if len(unmeasured) == len(v):
        none_clean = "; no run was clean, so there are no img/s medians"
    elif unmeasured:
        more = f" and {len(unmeasured) - 3} more" if len(unmeasured) > 3 else ""
        none_clean = f"; {', '.join(unmeasured[:3])}{more} had no clean run, so no img/s"
    else:
        none_clean = ""
    return (
        f"Speed measured on a busy machine: {dirty} of {int(v['seeds'].sum())} finished run(s) were timed "
        "while other processes used its cores or GPU (contention/speed_contaminated) and are left out of "
        f"the img/s medians, the fastest variant, the time to target and the accuracy-vs-throughput Pareto "
        f"front{none_clean}. "
        "`bench speed RECIPE` re-times every variant in fresh, interleaved processes."
    )


def _caveat(v: pd.DataFrame, top: pd.Series, short: str, *, higher: bool) -> str:
    """A caveat when the runner-up's seed range reaches the winner's: the ranking is inside the
    run-to-run spread. Ranges: [lo, hi] of the mean's interval, or [min, max] over seeds."""
    lo_col, hi_col = (
        (f"{short}_min", f"{short}_max") if f"{short}_min" in v else (f"{short}_lo", f"{short}_hi")
    )
    mid = f"{short}_median" if f"{short}_median" in v else f"{short}_mean"
    rest = v[(v["variant"] != top["variant"]) & v[mid].notna()]
    if not len(rest) or lo_col not in v:
        return ""
    second = rest.loc[rest[mid].idxmax() if higher else rest[mid].idxmin()]
    if top.get(f"{short}_n", 2) < 2:  # its [min, max] is one value: no range to overlap, yet no evidence
        return f"; from one run of `{top['variant']}` only, so not told apart from `{second['variant']}`"
    if pd.isna(top[lo_col]) or pd.isna(second[hi_col]):  # one seed has no interval: nothing overlaps
        return f"; not told apart from `{second['variant']}`: one seed gives no range to compare"
    if (second[hi_col] >= top[lo_col]) if higher else (second[lo_col] <= top[hi_col]):
        return f"; not told apart from `{second['variant']}` by these seeds (their ranges overlap)"
    return ""
