"""``bench calibrate``: simulated studies run through bench's own decision code (the report's
family verdicts and TOST from bench/report/stats.py, and the ``--until-decided`` loop of
bench/report/sequential.py), so the error rates and seed counts the README quotes are measured,
not assumed. Model: each (arm, seed) accuracy is normal with a common spread ``sd``, arms
independent given the seed (pairing removes nothing, as is typical of runs that decorrelate)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.report import sequential, stats

ALPHA = 0.05


@dataclass(frozen=True)
class Setting:
    sd: float = 0.0014  # per-run accuracy spread (0.14 points)
    effect: float = 0.002  # planted difference for power (0.2 points)
    margin: float = 0.003  # equivalence margin, report.min_effect (0.3 points)
    variants: int = 10  # comparisons with the baseline in one family
    start_seeds: int = 3  # the recipe's seeds
    max_seeds: int = 12  # --max-seeds
    fixed_seeds: int = 8  # the fixed design it is compared with
    studies: int = 2000


def _arms(rng, s: Setting, effects: np.ndarray, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(baseline[seeds], variants[len(effects), seeds]) accuracies around 0.9."""
    base = 0.9 + rng.normal(0, s.sd, seeds)
    return base, 0.9 + effects[:, None] + rng.normal(0, s.sd, (len(effects), seeds))


def until_decided(rng, s: Setting, effects: np.ndarray) -> tuple[list[str], list[int]]:
    """One study run as ``--until-decided`` runs it: start seeds for all, then one seed more per
    round for every undecided comparison (and the baseline) up to ``max_seeds``. Returns each
    comparison's final verdict and its seeds."""
    base, arms = _arms(rng, s, effects, s.max_seeds)
    names = [f"v{i}" for i in range(len(effects))]
    attempted = dict.fromkeys(names, s.start_seeds)
    while True:
        by_seed = {g: dict(enumerate(arms[i, : attempted[g]])) for i, g in enumerate(names)}
        by_seed["base"] = dict(enumerate(base[: max(attempted.values())]))
        grow, verdicts = sequential.next_round(
            by_seed, "base", names, attempted, s.max_seeds, ALPHA, s.margin
        )
        if not grow:
            return [verdicts[g].verdict for g in names], [attempted[g] for g in names]
        for g in grow:
            attempted[g] += 1


def fixed(rng, s: Setting, effects: np.ndarray, seeds: int) -> list[str]:
    """The report's family verdicts (Holm over the family) at a fixed number of seeds."""
    base, arms = _arms(rng, s, effects, seeds)
    b = dict(enumerate(base))
    diffs = [stats.paired_test(dict(enumerate(a)), b, min_effect=s.margin) for a in arms]
    return stats.decide_family(diffs, [a - base for a in arms], s.margin, ALPHA).verdicts


WRONG_DIRECTION = ("better", "worse")


def calibrate(s: Setting = Setting(), seed: int = 0) -> list[dict]:
    """The calibration table: one row per measured quantity, sequential and fixed side by side."""
    rng = np.random.default_rng(seed)
    n = s.studies
    null = np.zeros(s.variants)
    aa = [until_decided(rng, s, null) for _ in range(n)]
    aa_fixed = [fixed(rng, s, null, s.fixed_seeds) for _ in range(n)]
    at_margin = np.array([s.margin])
    tost_seq = [until_decided(rng, s, at_margin)[0][0] for _ in range(n)]
    tost_fixed = [fixed(rng, s, at_margin, s.fixed_seeds)[0] for _ in range(n)]
    planted = np.array([s.effect])
    one = [until_decided(rng, s, planted) for _ in range(n)]
    one_fixed = [fixed(rng, s, planted, s.fixed_seeds)[0] for _ in range(n)]
    in_family = np.r_[s.effect, np.zeros(s.variants - 1)]
    fam = [until_decided(rng, s, in_family) for _ in range(n)]
    zero = [until_decided(rng, s, np.zeros(1)) for _ in range(n)]

    def rate(flags) -> float:
        return float(np.mean(flags))

    seq, fix = (
        f"until-decided ({s.start_seeds}..{s.max_seeds} seeds)",
        f"fixed {s.fixed_seeds} seeds (report)",
    )
    return [
        {"quantity": f"A/A, {s.variants} variants: P(any false better/worse)", "design": seq,
         "value": rate([any(v in WRONG_DIRECTION for v in vs) for vs, _ in aa]),
         "seeds_median": float(np.median([k for _, ks in aa for k in ks]))},
        {"quantity": f"A/A, {s.variants} variants: P(any false better/worse)", "design": fix,
         "value": rate([any(v in WRONG_DIRECTION for v in vs) for vs in aa_fixed]), "seeds_median": s.fixed_seeds},
        {"quantity": f"A/A, {s.variants} variants: share ending equivalent", "design": seq,
         "value": rate([v == "equivalent" for vs, _ in aa for v in vs]), "seeds_median": float("nan")},
        {"quantity": f"true Δ = margin {s.margin:g}: P(equivalent) (TOST type I)", "design": seq,
         "value": rate([v == "equivalent" for v in tost_seq]), "seeds_median": float("nan")},
        {"quantity": f"true Δ = margin {s.margin:g}: P(equivalent) (TOST type I)", "design": fix,
         "value": rate([v == "equivalent" for v in tost_fixed]), "seeds_median": s.fixed_seeds},
        {"quantity": f"power at Δ {s.effect:g}, sd {s.sd:g}, 1 comparison", "design": seq,
         "value": rate([vs[0] == "better" for vs, _ in one]),
         "seeds_median": float(np.median([ks[0] for _, ks in one]))},
        {"quantity": f"power at Δ {s.effect:g}, sd {s.sd:g}, 1 comparison", "design": fix,
         "value": rate([v == "better" for v in one_fixed]), "seeds_median": s.fixed_seeds},
        {"quantity": f"power at Δ {s.effect:g}, 1 planted among {s.variants}", "design": seq,
         "value": rate([vs[0] == "better" for vs, _ in fam]),
         "seeds_median": float(np.median([ks[0] for _, ks in fam]))},
        {"quantity": "true Δ 0, 1 comparison: P(equivalent)", "design": seq,
         "value": rate([vs[0] == "equivalent" for vs, _ in zero]),
         "seeds_median": float(np.median([ks[0] for _, ks in zero]))},
    ]  # fmt: skip


def table_text(rows: list[dict]) -> str:
    width = max(len(r["quantity"]) for r in rows)
    dwidth = max(len(r["design"]) for r in rows)
    lines = [f"{'quantity'.ljust(width)}  {'design'.ljust(dwidth)}  value   median seeds/arm"]
    for r in rows:
        med = "" if r["seeds_median"] != r["seeds_median"] else f"{r['seeds_median']:g}"
        lines.append(f"{r['quantity'].ljust(width)}  {r['design'].ljust(dwidth)}  {r['value']:.3f}   {med}")
    return "\n".join(lines)
