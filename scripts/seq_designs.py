"""Explore group-sequential designs for ``--until-decided`` (issue 17): which spending function,
look schedule, equivalence rule and spread estimate could give power ≥ 0.8 at Δ 0.2 points
(sd 0.14) in a median ≤ 6 seeds per arm while the A/A family-wise error and the TOST type-I error
stay ≤ 5%. Same model and round logic as bench/report/calibrate.py (vectorised over studies);
the bounds generalise bench/report/sequential.py's ``z_bounds`` to other spending functions and
look schedules. Run: ``PYTHONPATH=. python scripts/seq_designs.py``."""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize
from scipy import stats as st

GRID = 401


def spend(t, alpha, kind):
    t = np.minimum(np.asarray(t, dtype=float), 1.0)
    name, *p = kind
    if name == "pocock":
        return alpha * np.log1p((math.e - 1.0) * t)
    if name == "obf":
        return 2.0 * st.norm.sf(st.norm.isf(alpha / 2) / np.sqrt(np.maximum(t, 1e-12)))
    if name == "power":
        return alpha * t ** p[0]
    if name == "hsd":
        g = p[0]
        return alpha * t if g == 0 else alpha * (1 - np.exp(-g * t)) / (1 - np.exp(-g))
    raise ValueError(name)


@functools.cache
def z_bounds(looks: tuple[int, ...], alpha: float, kind: tuple) -> np.ndarray:
    """Two-sided z bounds at the looks (information ∝ seeds), spending ``kind`` (J&T ch. 19)."""
    info = np.asarray(looks, dtype=float)
    step = np.diff(spend(info / info[-1], alpha, kind), prepend=0.0)
    step = np.maximum(step, 1e-15)
    c = [float(st.norm.isf(step[0] / 2))]
    simpson = np.ones(GRID)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    x = np.linspace(-c[0] * math.sqrt(info[0]), c[0] * math.sqrt(info[0]), GRID)
    density = st.norm.pdf(x, scale=math.sqrt(info[0]))
    for k in range(1, len(info)):
        sd, root = math.sqrt(info[k] - info[k - 1]), math.sqrt(info[k])
        mass = density * simpson * (x[1] - x[0]) / 3.0

        ck = optimize.brentq(_gap, 1e-3, 60.0, args=(mass, x, sd, root, step[k]), xtol=1e-12)
        c.append(float(ck))
        new = np.linspace(-ck * root, ck * root, GRID)
        density = mass @ st.norm.pdf((new[None, :] - x[:, None]) / sd) / sd
        x = new
    return np.asarray(c)


def _gap(ck, mass, x, sd, root, target):
    """P(still running, then |Z_k| ≥ ck) − the α this look may spend."""
    b = ck * root
    return float(mass @ (st.norm.sf((b - x) / sd) + st.norm.cdf((-b - x) / sd))) - target


@dataclass(frozen=True)
class Design:
    name: str
    first: int = 3
    last: int = 12
    step: int = 1
    spend: tuple = ("pocock",)
    equiv: str = "rci"  # rci | half | cap | none | sep
    eq_spend: tuple = ("obf",)  # equiv == "sep": its own repeated interval
    eq_alpha: float = 0.05  # two-sided level of that interval (0.10: one-sided 0.05, as TOST)
    eq_from: int = 0  # equivalence stops allowed from this many seeds on
    eq_until: int = 0  # > 0: equivalence stops only up to this many seeds (and at the cap)
    eq_late: float = 1.0  # < 1: after eq_until, equivalence needs the interval inside ±eq_late·margin
    lev_scale: float = 1.0  # < 1: nominal levels shrunk (to offset the t approximation's excess type I)
    var: str = "guard"  # guard (pooled, never below the pair) | pair | pooled | known


SD, EFFECT, MARGIN, ALPHA = 0.0014, 0.002, 0.003, 0.05


def looks_of(d: Design) -> tuple[int, ...]:
    looks = list(range(d.first, d.last + 1, d.step))
    if looks[-1] != d.last:
        looks.append(d.last)
    return tuple(looks)


def simulate(rng, d: Design, effects, studies=2000, spread=1.0):
    """Final verdicts and seeds (study, comparison) of ``studies`` studies played in rounds."""
    effects = np.asarray(effects, dtype=float)
    m = len(effects)
    arms = m + 1
    sd = SD * spread ** rng.uniform(-1, 1, (studies, arms, 1)) if spread != 1.0 else SD
    x = np.r_[0.0, effects][None, :, None] + rng.normal(0.0, 1.0, (studies, arms, d.last)) * sd
    z = np.zeros(x.shape[:2] + (1,))
    csum = np.concatenate([z, np.cumsum(x, axis=2)], axis=2)
    csq = np.concatenate([z, np.cumsum(x * x, axis=2)], axis=2)
    looks = looks_of(d)
    a = ALPHA / m
    lev = 2 * st.norm.sf(z_bounds(looks, a, d.spend)) * d.lev_scale
    eq_lev = 2 * st.norm.sf(z_bounds(looks, d.eq_alpha / m, d.eq_spend)) if d.equiv == "sep" else lev
    index = {n: i for i, n in enumerate(looks)}
    count = np.full((studies, m), d.first)
    verdict = np.full((studies, m), "undecided", dtype=object)
    live = np.ones((studies, m), dtype=bool)
    study = np.arange(studies)[:, None]
    while live.any():
        have = np.concatenate([count.max(axis=1, keepdims=True), count], axis=1)
        k = np.minimum(have[:, None, :], count[:, :, None])
        arm = np.arange(arms)[None, None, :]
        total, squares = csum[study[..., None], arm, k], csq[study[..., None], arm, k]
        ss = np.where(k >= 2, squares - total**2 / np.maximum(k, 1), 0.0)
        df = np.clip(k - 1, 0, None)
        own = np.arange(1, arms)[None, :, None]
        ss_pair = ss[..., 0] + np.take_along_axis(ss, np.broadcast_to(own, ss.shape[:2] + (1,)), 2)[..., 0]
        df_pair = 2 * (count - 1)
        if d.var == "known":
            var, dof = np.full(count.shape, SD**2), np.full(count.shape, np.inf)
        elif d.var == "pair":
            var, dof = ss_pair / df_pair, df_pair
        elif d.var == "pooled":
            var, dof = ss.sum(axis=2) / df.sum(axis=2), df.sum(axis=2)
        else:
            var, dof = np.maximum(ss.sum(axis=2) / df.sum(axis=2), ss_pair / df_pair), df.sum(axis=2)
        diff = (csum[study, np.arange(1, arms)[None, :], count] - csum[study, 0, count]) / count
        li = np.vectorize(index.get)(count)
        se = np.sqrt(var * 2.0 / count)
        half = st.t.isf(lev[li] / 2, dof) * se
        eq_half = st.t.isf(eq_lev[li] / 2, dof) * se
        lo, hi = diff - half, diff + half
        at_cap = count >= d.last
        if d.equiv == "half":
            eq = (diff - eq_half > -MARGIN / 2) & (diff + eq_half < MARGIN / 2)
        else:
            eq = (diff - eq_half > -MARGIN) & (diff + eq_half < MARGIN)
        if d.equiv == "none":
            eq &= False
        elif d.equiv == "cap":
            eq &= at_cap
        eq &= (count >= d.eq_from) | at_cap
        if d.eq_until > 0 and d.eq_late < 1.0:
            tight = (diff - eq_half > -d.eq_late * MARGIN) & (diff + eq_half < d.eq_late * MARGIN)
            eq &= (count <= d.eq_until) | at_cap | tight
        elif d.eq_until > 0:
            eq &= (count <= d.eq_until) | at_cap
        v = np.select([lo > 0, hi < 0, eq], ["better", "worse", "equivalent"], "undecided")
        verdict[live] = v[live]
        live &= (v == "undecided") & ~at_cap
        count = np.where(live, np.minimum(count + d.step, d.last), count)
    return verdict, count


def measure(d: Design, studies=4000, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    v, k = simulate(rng, d, [EFFECT], studies)
    out = {
        "design": d.name,
        "power": (v[:, 0] == "better").mean(),
        "p_equiv": (v[:, 0] == "equivalent").mean(),
        "med": np.median(k[:, 0]),
    }
    out["correct"] = out["power"] + out["p_equiv"]
    out["p_by6"] = (k[:, 0] <= 6).mean()
    out["mean"] = k[:, 0].mean()
    v, _ = simulate(rng, replace(d, equiv="none"), [0.0], studies)
    out["typeI1"] = np.isin(v, ("better", "worse")).mean()
    v, k = simulate(rng, d, np.zeros(10), studies)
    out["fwer"] = np.isin(v, ("better", "worse")).any(axis=1).mean()
    out["aa_equiv"] = (v == "equivalent").mean()
    out["aa_med"] = np.median(k)
    out["aa_mean"] = k.mean()
    v, _ = simulate(rng, d, np.zeros(10), studies, spread=2.0)
    out["fwer_uneq"] = np.isin(v, ("better", "worse")).any(axis=1).mean()
    v, _ = simulate(rng, d, [MARGIN], studies)
    out["tost1"] = (v[:, 0] == "equivalent").mean()
    v, _ = simulate(rng, d, np.full(10, MARGIN), studies)
    out["tost10"] = (v == "equivalent").any(axis=1).mean()
    v, k = simulate(rng, d, np.r_[EFFECT, np.zeros(9)], studies)
    out["power_in10"] = (v[:, 0] == "better").mean()
    out["med_in10"] = np.median(k[:, 0])
    return out


BASE = Design("current: Pocock 3..12 step 1, equiv RCI, guard")
DESIGNS = {
    "base": BASE,
    "known": replace(BASE, name="reference: spread known (z), Pocock 3..12", var="known"),
    "known_noeq": replace(BASE, name="reference: spread known, no equiv stop", var="known", equiv="cap"),
    "obf": replace(BASE, name="OBF-type spending 3..12", spend=("obf",)),
    "pow1": replace(BASE, name="power spending rho=1 3..12", spend=("power", 1.0)),
    "pow2": replace(BASE, name="power spending rho=2 3..12", spend=("power", 2.0)),
    "hsd2": replace(BASE, name="HSD gamma=2 3..12", spend=("hsd", 2.0)),
    "hsdm2": replace(BASE, name="HSD gamma=-2 3..12", spend=("hsd", -2.0)),
    "start4": replace(BASE, name="Pocock 4..12", first=4),
    "cap8": replace(BASE, name="Pocock 3..8", last=8),
    "cap10": replace(BASE, name="Pocock 3..10", last=10),
    "cap16": replace(BASE, name="Pocock 3..16", last=16),
    "cap20": replace(BASE, name="Pocock 3..20", last=20),
    "step2": replace(BASE, name="Pocock 4,6,..,12 (rounds of 2)", first=4, step=2),
    "step2_3": replace(BASE, name="Pocock 3,5,..,11 (rounds of 2)", last=11, step=2),
    "eq_cap": replace(BASE, name="equiv only at the cap", equiv="cap"),
    "eq_half": replace(BASE, name="equiv only inside +-D/2", equiv="half"),
    "eq_none": replace(BASE, name="no equiv verdict at all", equiv="none"),
    "eq_sep_obf": replace(BASE, name="equiv: own OBF-type RCI (95%)", equiv="sep"),
    "eq_sep_obf90": replace(
        BASE, name="equiv: own OBF-type RCI (90%, TOST level)", equiv="sep", eq_alpha=0.10
    ),
    "eq_from6": replace(BASE, name="equiv stops from 6 seeds on", eq_from=6),
    "eq_from8": replace(BASE, name="equiv stops from 8 seeds on", eq_from=8),
    "hsd4_20": Design("HSD gamma=4, 4..20", first=4, last=20, spend=("hsd", 4.0)),
    "hsd6_20_from6": Design(
        "HSD gamma=6, 4..20, equiv from 6", first=4, last=20, spend=("hsd", 6.0), eq_from=6
    ),
    "hsd4_20_from6": Design(
        "HSD gamma=4, 4..20, equiv from 6", first=4, last=20, spend=("hsd", 4.0), eq_from=6
    ),
    "poc16_4": Design("Pocock 4..16", first=4, last=16),
    "poc16_4_from6": Design("Pocock 4..16, equiv from 6", first=4, last=16, eq_from=6),
    "hsd4_20_tost": Design(
        "HSD gamma=4 4..20, equiv own 90% RCI (HSD 4)",
        first=4,
        last=20,
        spend=("hsd", 4.0),
        equiv="sep",
        eq_spend=("hsd", 4.0),
        eq_alpha=0.10,
    ),
    "start4_tost": replace(
        BASE,
        name="Pocock 4..12, equiv own 90% RCI (Pocock)",
        first=4,
        equiv="sep",
        eq_spend=("pocock",),
        eq_alpha=0.10,
    ),
    "hsd4_20_w6": Design(
        "HSD gamma=4 4..20; equiv only <=6 seeds, at cap, or inside +-0.75D",
        first=4,
        last=20,
        spend=("hsd", 4.0),
        eq_until=6,
        eq_late=0.75,
    ),
    "poc16_w6_tost": Design(
        "Pocock 4..16; equiv own 90% Pocock RCI, only <=6 seeds, at cap, or inside +-0.75D",
        first=4,
        last=16,
        equiv="sep",
        eq_spend=("pocock",),
        eq_alpha=0.10,
        eq_until=6,
        eq_late=0.75,
    ),
    "hsd4_20_w6_cap": Design(
        "HSD gamma=4 4..20; equiv only <=6 seeds or at cap", first=4, last=20, spend=("hsd", 4.0), eq_until=6
    ),
    "best_held": Design(
        "HSD gamma=6 4..20; equiv <=6 seeds/cap/inside +-0.75D; levels x0.9",
        first=4,
        last=20,
        spend=("hsd", 6.0),
        eq_until=6,
        eq_late=0.75,
        lev_scale=0.9,
    ),
    "pair": replace(BASE, name="spread: the pair's own (no pooling)", var="pair"),
    "pooled": replace(BASE, name="spread: pooled over all arms, no guard", var="pooled"),
}


def main(names):
    cols = ["power", "med", "p_by6", "mean", "p_equiv", "correct", "typeI1", "fwer", "fwer_uneq", "tost1", "tost10", "aa_equiv",
            "aa_med", "aa_mean", "power_in10", "med_in10"]  # fmt: skip
    print("| key | design | " + " | ".join(cols) + " |")
    for key in names or DESIGNS:
        r = measure(DESIGNS[key])
        print(f"| {key} | {r['design']} | " + " | ".join(f"{r[c]:.3g}" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
