"""``make_report``: MLflow runs -> tables (CSV) -> plots (PNG) -> report.md, and the plots
logged as artifacts of the recipe's latest parent run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report import fetch, markdown, plots
from bench.report.tables import Tables, add_time_to_target, build_tables

HISTORY_KEYS = ("test/acc", "train/loss")


@dataclass
class Report:
    path: Path  # report.md
    tables: Tables
    files: list[Path]  # CSVs and PNGs beside it
    runs: pd.DataFrame


def make_report(
    client,
    *,
    experiment: str,
    out_dir: Path,
    tracking_uri: str,
    recipe_name: str | None = None,
    group_order: list[str] | None = None,
    baseline: str | None = None,
    target_acc: float | None = None,
    log_artifacts: bool = True,
) -> Report:
    fetched = fetch.fetch_runs(client, experiment)
    if fetched.runs.empty:
        from bench.errors import BenchError

        raise BenchError(f"experiment '{experiment}' has no variant runs yet; run the recipe first")
    runs = fetched.runs
    lr_keys = sorted({c for c in runs.columns if c.startswith("train/lr/")})
    history = fetch.fetch_histories(client, runs["run_id"].tolist(), [*HISTORY_KEYS, *lr_keys])
    runs = add_time_to_target(runs, history, target_acc)
    tables = build_tables(
        runs, fetched.axes, group_order=group_order, baseline=baseline, target_acc=target_acc
    )

    out_dir = Path(out_dir)
    files_dir = out_dir / "report"
    files_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, frame in (("variants", tables.variants), ("baseline", tables.baseline), ("axes", tables.axes),
                        ("pareto", tables.pareto), ("excluded", tables.excluded)):  # fmt: skip
        path = files_dir / f"{name}.csv"
        frame.to_csv(path, index=False)
        files.append(path)
    order = list(tables.variants["variant"])
    drawn = {
        "Accuracy vs throughput and memory (Pareto fronts)": plots.tradeoff_plot(
            tables.pareto,
            tables.variants,
            files_dir / "tradeoff.png",
            tables.memory_key,
            tables.baseline_name,
        ),
        "Learning curves": plots.curves_plot(history, runs, order, files_dir / "curves.png"),
        "LR schedule per variant": plots.lr_plot(history, runs, order, files_dir / "lr.png"),
    }
    pngs = {title: p for title, p in drawn.items() if p is not None}
    files += list(pngs.values())
    text = markdown.render(
        tables,
        recipe=recipe_name or experiment,
        experiment=experiment,
        tracking_uri=tracking_uri,
        plots={title: f"report/{p.name}" for title, p in pngs.items()},
        summary_lines=summary_lines(tables),
    )
    report_path = out_dir / "report.md"
    report_path.write_text(text)
    if log_artifacts and fetched.parent_id:
        for path in [report_path, *files]:
            client.log_artifact(fetched.parent_id, str(path), artifact_path="report")
    return Report(report_path, tables, files, runs)


def summary_lines(t: Tables) -> list[str]:
    """The answer in a few sentences: best, fastest, what beats the baseline, what is missing."""
    lines = []
    v = t.variants[t.variants["seeds"] > 0] if len(t.variants) else t.variants
    if len(v) and v["acc_mean"].notna().any():
        best = v.loc[v["acc_mean"].idxmax()]
        lines.append(
            f"Most accurate: `{best['variant']}` at {best['acc_mean']:.4f} test accuracy ({best['seeds']} seed(s))."
        )
        if v["train_img_s_mean"].notna().any():
            fast = v.loc[v["train_img_s_mean"].idxmax()]
            lines.append(f"Fastest to train: `{fast['variant']}` at {fast['train_img_s_mean']:.0f} img/s.")
    if len(t.baseline):
        b = t.baseline[t.baseline["variant"] != t.baseline_name]
        better = b[(b["acc_diff_lo"] > 0)]
        worse = b[(b["acc_diff_hi"] < 0)]
        if len(better):
            lines.append("Better than the baseline on every resample of the seeds: "
                         + ", ".join(f"`{r.variant}` ({r.acc_diff:+.4f})" for r in better.itertuples()) + ".")  # fmt: skip
        if len(worse):
            lines.append("Worse than the baseline on every resample of the seeds: "
                         + ", ".join(f"`{r.variant}` ({r.acc_diff:+.4f})" for r in worse.itertuples()) + ".")  # fmt: skip
        unsure = len(b) - len(better) - len(worse)
        if unsure:
            lines.append(f"{unsure} variant(s) differ from the baseline by less than the seed-to-seed noise "
                         "(bootstrap interval includes 0, or one seed only).")  # fmt: skip
    if len(t.pareto):
        front = t.pareto[t.pareto["front_throughput"]]
        if len(front):
            lines.append(
                "Pareto front, accuracy vs throughput: " + ", ".join(f"`{n}`" for n in front["variant"]) + "."
            )
    if len(t.excluded):
        counts = t.excluded["status"].value_counts()
        lines.append(
            "Not in the statistics: "
            + ", ".join(f"{n} {s}" for s, n in counts.items())
            + " run(s); see 'Runs not in the statistics' for the reasons."
        )
    if t.target_acc is not None and "ttt_s_mean" in t.variants and len(v):
        reached = v[v["ttt_s_mean"].notna()]
        if len(reached):
            quick = reached.loc[reached["ttt_s_mean"].idxmin()]
            lines.append(
                f"First to {t.target_acc:g} test accuracy: `{quick['variant']}` after {quick['ttt_s_mean']:.1f} s."
            )
        else:
            lines.append(f"No variant reached the target accuracy {t.target_acc:g}.")
    return [line for line in lines if line and not (isinstance(line, float) and math.isnan(line))]
