"""What each variant changes against the baseline, read back from the store alone: every child run
logs its resolved config as MLflow params (``bench.execution.recorded.open_run``), so a report can
show that ``optimizer=adamw`` also changed the learning rate, weight decay and momentum, and mark
the axis values that are bundles (``bench.recipe.changes`` holds the rule, shared with dry runs)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from bench.recipe.changes import axis_value_changes, change_text, config_changes, unflatten
from bench.report.document import Doc

NOT_CONFIG = ("seed",)  # params logged beside the resolved config


def group_configs(runs: pd.DataFrame, params: Mapping[str, Mapping[str, str]]) -> dict[str, dict]:
    """Variant (group) -> its resolved config as a tree of param strings, from the group's latest
    run that logged params (seeds of a group share their config but for ``seed``)."""
    logged = runs[[bool(params.get(r)) for r in runs["run_id"]]]
    latest = logged.sort_values("start_time", kind="stable", ascending=False).drop_duplicates("group")
    out = {
        r.group: {k: v for k, v in params[r.run_id].items() if k not in NOT_CONFIG}
        for r in latest.itertuples()
    }
    return {g: unflatten(out[g]) for g in dict.fromkeys(runs["group"]) if g in out}


def group_axis_values(runs: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Variant -> axis label -> value label, from the runs' ``axis.*`` tags (its first run's)."""
    axes = runs.drop_duplicates("group").set_index("group").filter(regex=r"^axis\.", axis=1)
    return {
        g: {c[len("axis.") :]: v for c, v in row.items() if isinstance(v, str)} for g, row in axes.iterrows()
    }


def changes_table(
    runs: pd.DataFrame, params: Mapping[str, Mapping[str, str]], baseline: str | None
) -> pd.DataFrame:
    """One row per variant with recorded params: ``variant``, ``n_keys`` (resolved config keys that
    differ from the baseline's), ``keys`` (their dotted names, ", "-joined) and ``changes``
    ("key old->new; ..."; ``unset`` where one side lacks the key). Empty without the baseline's params."""
    configs = group_configs(runs, params)
    columns = ["variant", "n_keys", "keys", "changes"]
    if baseline not in configs:
        return pd.DataFrame(columns=columns)
    rows = []
    for group, config in configs.items():
        found = config_changes(configs[baseline], config)
        text = "; ".join(change_text(k, old, new) for k, (old, new) in found.items())
        rows.append([group, len(found), ", ".join(found), text])
    return pd.DataFrame(rows, columns=columns)


def bundle_axes(
    runs: pd.DataFrame, params: Mapping[str, Mapping[str, str]], baseline: str | None
) -> pd.DataFrame:
    """Per (axis, value) other than the baseline's value on that axis, what the value changes and
    whether it is a bundle (the rule: ``bench.recipe.changes.named_keys``). ``n_keys``: resolved
    config keys that differ between a variant with the value and the one equal but for the
    baseline's value on this axis, the pair nearest the baseline (NA when none was recorded);
    ``beyond``: those beyond the key the label names, old->new; ``compared``: the pair."""
    configs = group_configs(runs, params)
    rows = []
    if baseline in configs:
        for a in axis_value_changes(configs, group_axis_values(runs), baseline):
            known = a.changes is not None
            rows.append({
                "axis": a.axis, "value": a.value, "reference": a.reference,
                "n_keys": a.n_keys if known else pd.NA, "bundle": a.bundle if known else pd.NA,
                "beyond": "; ".join(change_text(k, o, n) for k, (o, n) in a.beyond.items()),
                "changes": "; ".join(change_text(k, o, n) for k, (o, n) in (a.changes or {}).items()),
                "compared": " vs ".join(a.compared) if a.compared else "",
            })  # fmt: skip
    columns = ["axis", "value", "reference", "n_keys", "bundle", "beyond", "changes", "compared"]
    return pd.DataFrame(rows, columns=columns).astype({"n_keys": "Int64", "bundle": "boolean"})


def blocks(runs: pd.DataFrame, params: Mapping[str, Mapping[str, str]], baseline: str | None) -> list[tuple]:
    """The report's section "What each variant changes against the baseline" as ``Doc`` blocks."""
    doc = Doc("")
    doc.heading("What each variant changes against the baseline")
    table = changes_table(runs, params, baseline)
    if table.empty:
        doc.para(f"No resolved config recorded for the baseline `{baseline or '–'}`: nothing to compare.")
        return doc.blocks
    doc.para(
        "Every key of the resolved config (defaults applied, as each run logged it in its MLflow params) "
        "that differs from the baseline's; `unset`: the key is absent on that side. A short label can stand "
        "for several changed keys."
    )
    axes = bundle_axes(runs, params, baseline)
    bundles = axes[axes["bundle"].fillna(False)]
    if len(bundles):
        doc.para(
            "**Bundles** (axis values that change keys beyond the one their label names): "
            + "; ".join(
                f"`{r.axis}={r.value}` ({r.n_keys} keys; also {_ticks(r.beyond)})"
                for r in bundles.itertuples()
            )
            + "."
        )
    rows = [
        [f"`{r.variant}`", "baseline" if r.variant == baseline else r.n_keys, _ticks(r.changes) or "–"]
        for r in table.itertuples()
    ]
    doc.table(["variant", "keys changed", "changes (baseline -> variant)"], rows)
    return doc.blocks


def _ticks(text: str) -> str:
    """``a.b 1->2; c 3->4`` -> ```a.b` 1->2; `c` 3->4``: the keys as code."""
    return "; ".join(
        f"`{key}` {rest}" for key, _, rest in (part.partition(" ") for part in text.split("; ") if part)
    )
