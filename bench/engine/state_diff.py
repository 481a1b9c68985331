"""Comparing two training states part by part (``bench verify-resume``): the largest absolute
difference per section (model, optimizer, scheduler, precision (the GradScaler), each trick, metrics), NaN equal to NaN."""

from __future__ import annotations

import math
from typing import Any

SECTIONS = ("model", "optimizer", "scheduler", "precision", "tricks", "metrics")


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two nested structures (inf where they do not match)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
            return math.inf
        if a.numel() == 0:
            return 0.0
        if a.dtype == torch.bool or b.dtype == torch.bool:
            return 0.0 if torch.equal(a, b) else math.inf
        x, y = a.detach().double().cpu(), b.detach().double().cpu()
        both_nan = torch.isnan(x) & torch.isnan(y)
        same = (x == y) | both_nan  # equal infinities count as equal
        diff = torch.where(same, torch.zeros_like(x), (x - y).abs())
        return float(diff.max())
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return math.inf
        return max((max_abs_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return math.inf
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, (int, float))
        or not isinstance(b, (int, float))
    ):
        return 0.0 if a == b else math.inf
    if math.isnan(a) and math.isnan(b) or a == b:
        return 0.0
    return abs(float(a) - float(b))


def compare_states(straight: dict[str, Any], resumed: dict[str, Any]) -> dict[str, float]:
    """Max abs difference per section: model, optimizer, scheduler, each trick, metrics."""
    diffs = {}
    for section in SECTIONS:
        a, b = straight.get(section), resumed.get(section)
        if section == "tricks" and isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b):
            diffs.update({f"trick:{name}": max_abs_diff(a[name], b[name]) for name in a})
        else:
            diffs[section] = max_abs_diff(a, b)
    return diffs


def verdict_text(diffs: dict[str, float], atol: float) -> tuple[bool, str]:
    lines = [f"{'part':<16} {'max abs diff':>14}  result"]
    ok = True
    for section, diff in diffs.items():
        good = diff <= atol
        ok &= good
        lines.append(f"{section:<16} {diff:>14.6g}  {'ok' if good else 'MISMATCH'}")
    lines.append(("PASS" if ok else "FAIL") + f": resumed run {'matches' if ok else 'differs from'} the straight run"
                 + (f" (atol {atol:g})" if atol else " (bit for bit)"))  # fmt: skip
    return ok, "\n".join(lines)
