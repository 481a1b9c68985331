"""``bench calibrate``: simulated studies run through bench's own decision code (the report's
family verdicts and TOST from bench/report/stats.py, and the ``--until-decided`` rounds deciding
with bench/report/sequential.py's ``decide_stats``), so the error rates and seed counts the README
quotes are measured, not assumed. Model: each (arm, seed) accuracy is normal with a common spread
``sd`` (or, to check the pooled spread's homogeneity assumption, one drawn per arm), arms
independent given the seed (pairing removes nothing, as is typical of runs that decorrelate).
The sequential studies are simulated all at once (numpy arrays: study × arm × seed). The speed
verdict is simulated too: paired throughput ratios against the noise floor."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bench.report import sequential, speed, stats

ALPHA = 0.05
UNEQUAL = 2.0  # the unequal-spread check: each arm's sd drawn log-uniformly in sd/2 .. sd·2


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
    speed_cv: float = 0.08  # per-run throughput noise (log scale) left after pairing by seed block
    speed_ratio: float = 1.25  # planted speed-up for the speed verdict's power
    neutral: int = 3  # compute-neutral variants that set the speed noise floor


def _arms(rng, s: Setting, effects: np.ndarray, seeds: int, studies: int, spread: float = 1.0) -> np.ndarray:
    """Accuracies (study, arm, seed) centred on 0 (the decisions are shift-invariant); arm 0 is the
    baseline, arm i+1 has ``effects[i]``. ``spread`` > 1: each arm's sd is s.sd·spread^U(−1, 1)."""
    arms = len(effects) + 1
    sd = s.sd * spread ** rng.uniform(-1, 1, (studies, arms, 1)) if spread != 1.0 else s.sd
    return np.r_[0.0, effects][None, :, None] + rng.normal(0.0, 1.0, (studies, arms, seeds)) * sd


def until_decided(rng, s: Setting, effects: np.ndarray, studies: int | None = None, spread: float = 1.0):
    """``studies`` studies run as ``--until-decided`` runs them: ``start_seeds`` for every arm, then
    one seed more per round for every undecided comparison (and the baseline) up to ``max_seeds``;
    each round decided by ``sequential.decide_stats`` on the data that round has. Returns the final
    verdicts and seed counts, both (study, comparison) arrays."""
    n_studies = s.studies if studies is None else studies
    x = _arms(rng, s, np.asarray(effects, dtype=float), s.max_seeds, n_studies, spread)
    csum = np.concatenate([np.zeros(x.shape[:2] + (1,)), np.cumsum(x, axis=2)], axis=2)
    csq = np.concatenate([np.zeros(x.shape[:2] + (1,)), np.cumsum(x * x, axis=2)], axis=2)
    m = len(effects)
    count = np.full((n_studies, m), s.start_seeds)
    verdict = np.full((n_studies, m), sequential.UNDECIDED, dtype=object)
    live = np.ones((n_studies, m), dtype=bool)
    study = np.arange(n_studies)[:, None]
    while live.any():
        # every arm's seeds so far: a comparison's own count, the baseline's the largest of them
        have = np.concatenate([count.max(axis=1, keepdims=True), count], axis=1)
        k = np.minimum(have[:, None, :], count[:, :, None])  # (study, comparison, arm) seeds at its look
        arm = np.arange(m + 1)[None, None, :]
        total, squares = csum[study[..., None], arm, k], csq[study[..., None], arm, k]
        ss = np.where(k >= 2, squares - total**2 / np.maximum(k, 1), 0.0)  # each arm's, own mean out
        df = np.clip(k - 1, 0, None)
        # the baseline (arm 0) and the comparison's own variant (arm c + 1)
        ss_pair = ss[..., 0] + ss[:, np.arange(m), np.arange(1, m + 1)]
        var = sequential.spread(ss.sum(axis=2), df.sum(axis=2), ss_pair, 2 * (count - 1))
        diff = (csum[study, np.arange(1, m + 1)[None, :], count] - csum[study, 0, count]) / count
        _, _, v = sequential.decide_stats(diff, count, var, df.sum(axis=2), first=s.start_seeds,
                                          last=s.max_seeds, alpha=ALPHA / m, margin=s.margin)  # fmt: skip
        verdict[live] = v[live]
        live &= np.isin(v, (sequential.UNDECIDED, sequential.TOO_FEW)) & (count < s.max_seeds)
        count = count + live
    return verdict, count


def fixed(rng, s: Setting, effects: np.ndarray, seeds: int) -> list[list[str]]:
    """The report's family verdicts (Holm over the family) at a fixed number of seeds, per study."""
    out = []
    for x in _arms(rng, s, np.asarray(effects, dtype=float), seeds, s.studies):
        b = dict(enumerate(x[0]))
        diffs = [stats.paired_test(dict(enumerate(a)), b, min_effect=s.margin) for a in x[1:]]
        out.append(stats.decide_family(diffs, [a - x[0] for a in x[1:]], s.margin, ALPHA).verdicts)
    return out


def speed_verdicts(rng, s: Setting, ratio: float, seeds: int, studies: int) -> np.ndarray:
    """The report's speed verdict (bench/report/speed.py: noise floor from the compute-neutral arms,
    paired ratio, verdict) for one more variant with true throughput ratio ``ratio``, per study.
    Throughput: a drift per seed block shared by every arm (what pairing removes) times per-run
    noise of ``speed_cv``."""
    names = ["base", *(f"neutral{i}" for i in range(s.neutral)), "other"]
    truth = np.log([1.0] * (s.neutral + 1) + [ratio])[:, None]
    out = []
    for _ in range(studies):
        logs = truth + rng.normal(0, 0.1, seeds) + rng.normal(0, s.speed_cv, (len(names), seeds))
        runs = pd.DataFrame({"group": np.repeat(names, seeds), "seed": np.tile(np.arange(seeds), len(names)),
                             speed.THROUGHPUT: 1000 * np.exp(logs).ravel()})  # fmt: skip
        floor, _ = speed.noise_floor(runs, "base", set(names[1:-1]))
        fast = stats.by_seed(runs, speed.THROUGHPUT)
        out.append(speed.speed_verdict(speed.paired_ratio(fast["other"], fast["base"], 1 - ALPHA), floor))
    return np.array(out)


WRONG_DIRECTION = ("better", "worse")


def calibrate(s: Setting = Setting(), seed: int = 0, fixed_design: bool = True) -> list[dict]:
    """The calibration table: one row per measured quantity, sequential and fixed side by side.
    Power is for one comparison (a family of 1, α = 0.05) and for one planted among ``variants``
    (α/variants each); the family-wise error rates are for ``variants`` comparisons."""
    rng = np.random.default_rng(seed)
    m = s.variants
    seq = f"until-decided ({s.start_seeds}..{s.max_seeds} seeds)"
    fix = f"fixed {s.fixed_seeds} seeds (report)"
    rows: list[dict] = []

    def row(quantity, design, value, seeds=float("nan")):
        rows.append(
            {"quantity": quantity, "design": design, "value": float(value), "seeds_median": float(seeds)}
        )

    def fixed_row(quantity, effects, hit):
        if fixed_design:
            hits = [hit(v) for v in fixed(rng, s, effects, s.fixed_seeds)]
            row(quantity, fix, np.mean(hits), s.fixed_seeds)

    null = np.zeros(m)
    v, k = until_decided(rng, s, null)
    aa = f"A/A, {m} variants: P(any false better/worse)"
    row(aa, seq, np.isin(v, WRONG_DIRECTION).any(axis=1).mean(), np.median(k))
    fixed_row(aa, null, lambda vs: any(x in WRONG_DIRECTION for x in vs))
    row(f"A/A, {m} variants: share ending equivalent", seq, (v == "equivalent").mean(), np.median(k))
    row(f"A/A, {m} variants: share at the cap undecided", seq, (v == sequential.UNDECIDED).mean())
    v, k = until_decided(rng, s, null, spread=UNEQUAL)
    row(f"A/A, {m} variants, unequal sd (×½..×2 per arm): P(any false better/worse)", seq,
        np.isin(v, WRONG_DIRECTION).any(axis=1).mean(), np.median(k))  # fmt: skip
    many = 20 * s.studies  # an error rate near α: 2,000 studies would measure it to ±0.5 points only
    v, k = until_decided(rng, replace(s, margin=1e-12), np.zeros(1), studies=many)
    row(f"A/A, 1 comparison, equivalence off: P(false better/worse) ({many:,} studies)", seq,
        np.isin(v, WRONG_DIRECTION).mean(), np.median(k))  # fmt: skip
    edge = np.array([s.margin])
    tost = f"true Δ = margin {s.margin:g}, 1 comparison: P(equivalent) (TOST type I)"
    row(tost, seq, (until_decided(rng, s, edge)[0] == "equivalent").mean())
    fixed_row(tost, edge, lambda vs: vs[0] == "equivalent")
    tost_m = f"true Δ = margin for all {m}: P(any equivalent) (TOST type I)"
    v, _ = until_decided(rng, s, np.full(m, s.margin))
    row(tost_m, seq, (v == "equivalent").any(axis=1).mean())
    planted = np.array([s.effect])
    power = f"power at Δ {s.effect:g}, sd {s.sd:g}, 1 comparison (family of 1)"
    v, k = until_decided(rng, s, planted)
    row(power, seq, (v[:, 0] == "better").mean(), np.median(k[:, 0]))
    also_true = f"Δ {s.effect:g}, 1 comparison: P(equivalent within ±{s.margin:g}), also true"
    row(also_true, seq, (v[:, 0] == "equivalent").mean())
    fixed_row(power, planted, lambda vs: vs[0] == "better")
    in_family = np.r_[s.effect, np.zeros(m - 1)]
    power_m = f"power at Δ {s.effect:g}, 1 planted among {m} (α/{m} each)"
    v, k = until_decided(rng, s, in_family)
    row(power_m, seq, (v[:, 0] == "better").mean(), np.median(k[:, 0]))
    fixed_row(power_m, in_family, lambda vs: vs[0] == "better")
    v, k = until_decided(rng, s, np.zeros(1))
    row("true Δ 0, 1 comparison: P(equivalent)", seq, (v[:, 0] == "equivalent").mean(), np.median(k[:, 0]))
    noise = f"run noise {s.speed_cv:g}, floor from {s.neutral} compute-neutral variants"
    for seeds in dict.fromkeys((s.start_seeds, s.fixed_seeds, s.max_seeds)):
        design = f"speed, {seeds} seed blocks"
        v = speed_verdicts(rng, s, 1.0, seeds, s.studies // 2)
        row(f"speed A/A ({noise}): P(faster/slower)", design, np.isin(v, ("faster", "slower")).mean(), seeds)
        v = speed_verdicts(rng, s, s.speed_ratio, seeds, s.studies // 2)
        row(f"speed {s.speed_ratio:g}× faster ({noise}): P(faster)", design, (v == "faster").mean(), seeds)
    return rows


def table_text(rows: list[dict]) -> str:
    width = max(len(r["quantity"]) for r in rows)
    dwidth = max(len(r["design"]) for r in rows)
    lines = [f"{'quantity'.ljust(width)}  {'design'.ljust(dwidth)}  value   median seeds/arm"]
    for r in rows:
        med = "" if r["seeds_median"] != r["seeds_median"] else f"{r['seeds_median']:g}"
        lines.append(f"{r['quantity'].ljust(width)}  {r['design'].ljust(dwidth)}  {r['value']:.3f}   {med}")
    return "\n".join(lines)
