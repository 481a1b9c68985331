"""Run-to-run variance split into initialisation, data order + augmentation, and what is left,
from a crossed design (every init seed run with every data seed, one run per cell).

Model: ``y_ij = μ + a_i + b_j + e_ij`` with ``a_i ~ N(0, σ²_init)``, ``b_j ~ N(0, σ²_data)`` and
``e_ij ~ N(0, σ²_res)``. With one run per cell the init × data interaction and the run's own
nondeterminism (non-deterministic kernels, thread scheduling) are confounded in ``e``: σ²_res is
their sum. Estimates are the ANOVA (method of moments) ones; a negative one is set to 0 and flagged.

Intervals are generalized confidence intervals (generalized pivotal quantities; Weerahandi 1993,
Burdick, Borror & Montgomery 2005 for this two-factor design): the mean squares' χ² pivots are
drawn, the moment equations solved per draw, and percentiles taken. They keep near-nominal
coverage for components and for shares (ratios) with as few as 4 levels a factor, where the
Satterthwaite interval of a difference of mean squares falls short and a bootstrap that resamples
init and data seeds has no exact form for crossed factors (McCullagh 2000) and too few levels to
resample. They rest on the normal model above; the draws are seeded, so a report is reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import BenchError

COMPONENTS = ("init", "data", "residual")
LABELS = {
    "init": "initialisation (init_seed)",
    "data": "data order + augmentation (data_seed)",
    "residual": "interaction + run nondeterminism",
    "total": "total",
}
RESIDUAL_NOTE = (
    "With one run per init × data cell the interaction cannot be told apart from a run's own "
    "nondeterminism: the residual is their sum."
)
METHOD_NOTE = (
    "Two-way random-effects ANOVA (method of moments); {pct:g}% generalized confidence intervals "
    "from {draws} seeded draws of the mean squares' χ² pivots (normal random effects assumed; they "
    "keep near-nominal coverage with few seeds, where resampling 4 init and 4 data seeds does not)."
)


class DesignError(BenchError):
    """The runs (or the recipe) lack the crossed design a variance split needs."""

    exit_code = 2


@dataclass
class Split:
    """One variant's decomposition; ``table`` has one row per component and the total."""

    n_init: int
    n_data: int
    mean: float
    table: pd.DataFrame
    dropped: list[str]  # seeds left out to keep the grid complete (failed or missing runs)


def moments(ms_init, ms_data, ms_res, a: int, b: int):
    """Solve the expected mean squares (E MS_init = σ²_res + b σ²_init, E MS_data = σ²_res + a σ²_data,
    E MS_res = σ²_res) for the components, untruncated; works on scalars and on arrays of draws."""
    return (ms_init - ms_res) / b, (ms_data - ms_res) / a, ms_res


def decompose(y: np.ndarray, confidence: float = 0.95, draws: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Variance, sd and share of the total per component (and the total), with their intervals.
    ``y``: a complete init × data table, at least 2 × 2. ``truncated``: the moment estimate was
    negative (the component is too small for this design to see) and is reported as 0."""
    y = np.asarray(y, dtype=float)
    a, b = y.shape
    if a < 2 or b < 2 or np.isnan(y).any():
        raise ValueError(f"need a complete table of at least 2 x 2 runs, got {a} x {b}")
    # sums of squares and degrees of freedom of a two-way table without replication
    grand, rows, cols = y.mean(), y.mean(axis=1), y.mean(axis=0)
    resid = y - rows[:, None] - cols[None, :] + grand
    ss = np.array([b * ((rows - grand) ** 2).sum(), a * ((cols - grand) ** 2).sum(), (resid**2).sum()])
    df = np.array([a - 1, b - 1, (a - 1) * (b - 1)])
    raw = np.array(moments(*(ss / df), a, b))
    point = np.maximum(raw, 0.0)
    total = point.sum()
    # generalized pivotal quantities: MS_c's pivot is SS_c / χ²_{df_c}, the observed SS held fixed
    rng = np.random.default_rng(seed)
    g = np.maximum(np.vstack(moments(*(ss[i] / rng.chisquare(df[i], draws) for i in range(3)), a, b)), 0.0)
    g = np.vstack([g, g.sum(axis=0)])  # the components and the total, per draw
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a share with no finite draw: NaN
        share_lo, share_hi = np.nanpercentile(np.where(g[3] > 0, g / g[3], np.nan), q, axis=1)
    if total <= 0:
        share_lo[3] = share_hi[3] = np.nan
    table = {
        "component": [*COMPONENTS, "total"],
        "variance": np.r_[point, total],
        "sd": np.sqrt(np.r_[point, total]),
        "var_lo": np.percentile(g, q[0], axis=1),
        "var_hi": np.percentile(g, q[1], axis=1),
        "share": np.r_[point, total] / total if total > 0 else np.full(4, np.nan),
        "share_lo": share_lo,
        "share_hi": share_hi,
        "truncated": np.r_[raw < 0, False],
        "moment_estimate": np.r_[raw, raw.sum()],
        "df": np.r_[df, a * b - 1],
    }
    return pd.DataFrame(table)


def complete_grid(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The init × data table (``cells``: init_seed, data_seed, value, oldest first; a cell run
    twice, e.g. under an edited recipe, keeps its latest run) cut to a complete grid: the init or
    data seed with the most missing runs is dropped until none is missing."""
    grid = cells.pivot_table(index="init_seed", columns="data_seed", values="value", aggfunc="last")
    dropped = []
    while grid.isna().to_numpy().any():
        by_row, by_col = grid.isna().sum(axis=1), grid.isna().sum(axis=0)
        if by_row.max() >= by_col.max():
            dropped.append(f"init_seed={by_row.idxmax()}")
            grid = grid.drop(index=by_row.idxmax())
        else:
            dropped.append(f"data_seed={by_col.idxmax()}")
            grid = grid.drop(columns=by_col.idxmax())
    return grid, dropped


def split_runs(
    runs: pd.DataFrame, metric: str = "test/acc", order: Iterable[str] | None = None, **kwargs
) -> dict[str, Split]:
    """Per variant (group) with at least 2 init × 2 data seeds of finished runs, its decomposition."""
    if not {"init_seed", "data_seed", metric} <= set(runs.columns):
        return {}
    done = runs[runs["status"] == "finished"].dropna(subset=["init_seed", "data_seed", metric])
    groups = list(dict.fromkeys([*(order or []), *done["group"]]))
    out = {}
    for group in groups:
        cells = done[done["group"] == group].rename(columns={metric: "value"})
        if not len(cells):
            continue
        grid, dropped = complete_grid(cells[["init_seed", "data_seed", "value"]])
        if grid.shape[0] < 2 or grid.shape[1] < 2:
            continue
        y = grid.to_numpy(dtype=float)
        out[group] = Split(grid.shape[0], grid.shape[1], float(y.mean()), decompose(y, **kwargs), dropped)
    return out


def to_frame(splits: dict[str, Split], metric: str = "test/acc") -> pd.DataFrame:
    """All variants' decompositions in one long table (the CSV)."""
    frames = [
        s.table.assign(variant=group, metric=metric, n_init=s.n_init, n_data=s.n_data, mean=s.mean,
                       dropped=", ".join(s.dropped))
        for group, s in splits.items()
    ]  # fmt: skip
    cols = ["variant", "metric", "n_init", "n_data", "mean"]
    if not frames:
        return pd.DataFrame(columns=[*cols, "component"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[[*cols, *[c for c in frame.columns if c not in cols]]]


def rows(split: Split) -> list[list[str]]:
    """Table rows for the terminal and report.md: component, sd, variance [interval], share [interval]."""
    out = []
    for r in split.table.itertuples():
        flag = " (negative estimate, set to 0)" if r.truncated else ""
        share = "–" if np.isnan(r.share) else f"{r.share:.0%} [{r.share_lo:.0%}, {r.share_hi:.0%}]"
        share = "100%" if r.component == "total" and r.share == 1 else share
        out.append([
            LABELS[r.component] + flag, f"{r.sd:.4f}",
            f"{r.variance:.2e} [{r.var_lo:.2e}, {r.var_hi:.2e}]", share,
        ])  # fmt: skip
    return out


HEADER = ["component", "sd", "variance [CI]", "share of total [CI]"]


def heading(group: str, split: Split, metric: str) -> str:
    text = f"`{group}`: {metric} over {split.n_init} init × {split.n_data} data seeds, mean {split.mean:.4f}"
    return text + (
        f" (left out to keep the grid complete: {', '.join(split.dropped)})" if split.dropped else ""
    )


def blocks(splits: dict[str, Split], metric: str, confidence: float, draws: int) -> list[tuple]:
    """The report.md section, as document blocks."""
    out: list[tuple] = [("heading", 2, "Run-to-run variance: initialisation vs data order")]
    out.append(("para", METHOD_NOTE.format(pct=confidence * 100, draws=draws) + " " + RESIDUAL_NOTE))
    for group, split in splits.items():
        out.append(("para", heading(group, split, metric)))
        out.append(("table", HEADER, rows(split)))
    return out


def require_crossed(loaded) -> None:
    """Exit 2 before reading any run unless every variant runs every init seed with every data
    seed, at least 2 of each (a seed alone drives both streams: the grid's diagonal only)."""
    by_group: dict[str, set[tuple[int, int]]] = {}
    for v in loaded.variants:
        by_group.setdefault(v.group, set()).add((v.init_stream, v.data_stream))
    inits = {i for cells in by_group.values() for i, _ in cells}
    datas = {d for cells in by_group.values() for _, d in cells}
    crossed = len(inits) >= 2 and len(datas) >= 2 and all(
        len(cells) == len({i for i, _ in cells}) * len({d for _, d in cells}) for cells in by_group.values()
    )  # fmt: skip
    if not crossed:
        raise DesignError(
            f"{loaded.source}: --variance needs a crossed design (every init seed run with every data "
            f"seed, at least 2 of each); this recipe runs {min(len(c) for c in by_group.values())} of the "
            f"{len(inits)} x {len(datas)} init x data seed pairs. Set init_seeds and data_seeds, e.g. "
            "init_seeds: [0, 1, 2, 3] and data_seeds: [0, 1, 2, 3] with seeds: [0]"
        )
