"""The best, re-checked. A study's best trial won a search over many configurations on the tuning
seeds, so its value is biased upwards (the winner's curse) and its lead over the runners-up may
be seed noise. After the study, the top ``tune.recheck_top`` distinct configurations are re-run
on ``tune.recheck_seeds`` fresh seeds (never a tuning seed) and compared with bench's paired
statistics: the winner is the best mean on the fresh seeds, with its t-interval, paired
t-tests against it (Holm-adjusted over the runners-up), and the probability that it is the best
of the k, from a bootstrap over the fresh seeds (the same resampled seeds for every configuration,
keeping the pairing). Each re-check run is an MLflow child run (``bench.kind=recheck``) and its
value is kept in the study (``bench.recheck.<trial>.<seed>``), so a killed re-check resumes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.tune.plan import TunePlan, say

ATTR = "bench.recheck"
BOOTSTRAP = 4000
BOOTSTRAP_SEED = 0  # fixed: the same runs always give the same probability
ALPHA = 0.05


@dataclass
class Rival:
    number: int
    mean: float
    diff: float  # rival - winner (in the objective's units, sign as the metric)
    lo: float
    hi: float
    p_holm: float
    distinguished: bool  # the winner is better at Holm-adjusted p < ALPHA


@dataclass
class Recheck:
    seeds: list[int]
    winner: int  # trial number
    values: dict[int, dict[int, float]]  # trial -> seed -> objective
    mean: float
    lo: float
    hi: float
    p_best: float
    rivals: list[Rival] = field(default_factory=list)
    tests: dict[int, float] = field(default_factory=dict)  # trial -> mean test/acc (reported only)

    @property
    def indistinguishable(self) -> list[int]:
        return [r.number for r in self.rivals if not r.distinguished]


def ranked(plan: TunePlan, complete: list[Any]) -> tuple[list[tuple[Any, dict[str, Any]]], list[str]]:
    """Completed trials best first (ties: the earlier), each with its values as recipe values.
    Trials with values this recipe's space does not declare (written by another recipe into a
    shared storage) are left out, with a note each."""
    from bench.recipe.tune import OutsideSpace

    out, notes = [], []
    for t in complete:
        try:
            out.append((t, plan.space.from_optuna(t.params)))
        except OutsideSpace as exc:
            notes.append(f"trial {t.number} ignored for best.yaml: {exc}")
    sign = 1.0 if plan.tune.objective.direction == "maximize" else -1.0
    return sorted(out, key=lambda tv: (-sign * tv[0].value, tv[0].number)), notes


def top_trials(plan: TunePlan, study: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The best ``recheck_top`` completed trials with distinct parameters this space declares
    (none under ``recheck_top: 0``)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out, seen = [], set()
    for t, values in ranked(plan, complete)[0]:
        key = repr(sorted(t.params.items()))
        if key not in seen and len(out) < plan.tune.recheck_top:
            seen.add(key)
            out.append((t, values))
    return out


def stored(study: Any) -> dict[int, dict[int, dict[str, float]]]:
    out: dict[int, dict[int, dict[str, float]]] = {}
    for key, value in study.user_attrs.items():
        if key.startswith(ATTR + "."):
            _, _, number, seed = key.rsplit(".", 3)
            out.setdefault(int(number), {})[int(seed)] = value
    return out


def run_recheck(ctx: Any) -> None:
    """Re-run the top configurations on the fresh seeds that have no stored value yet."""
    from bench.tune.objective import PruneHook, record_trial

    plan, study = ctx.plan, ctx.study
    top = top_trials(plan, study)
    done = stored(study)
    todo = [(t, v, s) for t, v in top for s in plan.recheck_seeds if s not in done.get(t.number, {})]
    if todo:
        say(f"re-check: top {len(top)} configuration(s) on fresh seeds {plan.recheck_seeds} "
            f"({len(todo)} run(s) to go)")  # fmt: skip
    for t, values, seed in todo:
        hook = PruneHook(None, plan.tune.objective)
        result = record_trial(ctx, "recheck", t.number, values, seed, hook, {})
        value = hook.value if result.status == "finished" else math.nan
        record = {"value": value, "epochs": hook.epochs}
        if result.metrics.get("test/acc") is not None:
            record["test"] = float(result.metrics["test/acc"])
        study.set_user_attr(f"{ATTR}.{t.number}.{seed}", record)
        say(f"re-check trial {t.number} seed {seed}: {plan.tune.objective.metric}={value:.4f}")


def analyse(plan: TunePlan, study: Any) -> Recheck | None:
    """The comparison of the re-checked configurations; None until every one has every fresh seed."""
    top = [t.number for t, _ in top_trials(plan, study)]
    done, seeds = stored(study), plan.recheck_seeds
    if not top or any(s not in done.get(n, {}) for n in top for s in seeds):
        return None
    values = {n: {s: float(done[n][s]["value"]) for s in seeds} for n in top}
    tests = {n: sum(done[n][s]["test"] for s in seeds) / len(seeds)
             for n in top if all("test" in done[n][s] for s in seeds)}  # fmt: skip
    return compare(values, seeds, plan.tune.objective.direction, tests)


def compare(values: dict[int, dict[int, float]], seeds: list[int], direction: str,
            tests: dict[int, float] | None = None) -> Recheck:  # fmt: skip
    import numpy as np

    from bench.report.stats import holm, mean_ci, paired_test

    sign = 1.0 if direction == "maximize" else -1.0
    numbers = list(values)
    means = {n: float(np.nanmean([values[n][s] for s in seeds])) for n in numbers}
    winner = max(numbers, key=lambda n: (sign * means[n], -numbers.index(n)))
    ci = mean_ci([values[winner][s] for s in seeds])
    rivals = [n for n in numbers if n != winner]
    tested = [paired_test(values[n], values[winner]) for n in rivals]
    adjusted = holm([d.p_t for d in tested])
    out = []
    for n, d, p in zip(rivals, tested, adjusted, strict=True):
        worse = (d.hi < 0) if sign > 0 else (d.lo > 0)
        out.append(Rival(n, means[n], d.diff, d.lo, d.hi, p, bool(worse and p < ALPHA)))
    table = np.asarray([[values[n][s] for s in seeds] for n in numbers], dtype=float) * sign
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(seeds), size=(BOOTSTRAP, len(seeds)))
    boot = table[:, picks].mean(axis=2)  # configuration x resample
    best = boot.max(axis=0)
    ties = (boot == best).sum(axis=0)
    p_best = float(np.mean((boot[numbers.index(winner)] == best) / ties))
    return Recheck(list(seeds), winner, values, means[winner], ci.lo, ci.hi, p_best, out, dict(tests or {}))


def p_best_text(rc: Recheck) -> str:
    """``P(best of k) = p`` and what it is. A bootstrap over a few seeds reads 1.00 whenever the
    winner led on every seed (3 of 3 by +0.21, +0.04, +0.04 on the first-hour smoke_tune), beside
    paired tests that cannot tell the two apart: said so, or the 1.00 reads as certainty."""
    text = f"P(best of {len(rc.values)}) = {rc.p_best:.2f} (bootstrap over {len(rc.seeds)} seeds"
    if rc.rivals and len(rc.indistinguishable) == len(rc.rivals) and rc.p_best >= 0.95:
        text += "; overconfident here: the paired tests below tell no rival apart from the winner"
    return text + ")"


def describe(rc: Recheck, metric: str) -> list[str]:
    lines = [
        f"re-check on fresh seeds {rc.seeds} (never tuned on): winner trial {rc.winner}, {metric} "
        f"{rc.mean:.4f} [95% CI {rc.lo:.4f}, {rc.hi:.4f}], {p_best_text(rc)}"
    ]
    for r in rc.rivals:
        verdict = "worse" if r.distinguished else "indistinguishable"
        lines.append(
            f"  trial {r.number}: {r.mean:.4f}, {r.diff:+.4f} vs the winner [{r.lo:+.4f}, {r.hi:+.4f}], "
            f"Holm p={r.p_holm:.3f}: {verdict}"
        )
    if rc.rivals and len(rc.indistinguishable) == len(rc.rivals):
        lines.append(
            f"the top {len(rc.values)} configurations are indistinguishable on {len(rc.seeds)} fresh seeds: "
            "the winner is not established (more seeds, or take any of them)"
        )
    elif rc.indistinguishable:
        lines.append(f"indistinguishable from the winner: trial(s) {rc.indistinguishable}")
    return lines
