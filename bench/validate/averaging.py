"""SWA and EMA settings that validate but average next to nothing: a user reads ``swa`` or
``ema`` in a variant's name as a trick, while the delivered model is about the raw weights (one
SWA snapshot, an EMA that forgets at once) or about the barely trained first ones (SWA from epoch
0, an EMA far slower than the run). Warnings, not errors: a quick check on a short run may mean it.
No torch: ``bench run --dry-run`` says them too."""

from __future__ import annotations

import sys
from typing import Any

# The share of the EMA model still made of the first update's weights above which it is mostly those.
FIRST_SHARE = 0.5


def swa_warnings(train: Any) -> list[str]:
    """``train.swa`` that averages a single snapshot, or averages from the first epoch on."""
    swa = train.swa
    if swa is None:
        return []
    snapshots = train.epochs - swa.start_epoch  # one per epoch from start_epoch (the schema keeps it >= 1)
    whole = (
        "; SWALR replaces train.scheduler from epoch 0, so the recipe's schedule never runs"
        if swa.start_epoch == 0
        else ""
    )
    if snapshots == 1:
        return [
            f"train.swa: start_epoch={swa.start_epoch} with train.epochs={train.epochs} averages one snapshot, "
            f"the last epoch's weights: the delivered 'swa' model is those weights with BatchNorm recomputed, "
            f"not an average{whole}; train longer{' or start SWA earlier' if swa.start_epoch else ''} (SWA "
            "usually averages the last quarter of the epochs or more)"
        ]
    if swa.start_epoch == 0:
        return [
            f"train.swa: start_epoch=0 averages every epoch's weights from the first, barely trained one{whole}; "
            f"start it later, e.g. train.swa.start_epoch={max(1, round(0.75 * train.epochs))}"
        ]
    return []


def ema_warnings(train: Any, steps_per_epoch: int) -> list[str]:
    """``train.ema`` that the run updates too rarely to move off its first weights, or that
    forgets so fast that it is the raw weights."""
    ema = train.ema
    if ema is None:
        return []
    steps = train.epochs * steps_per_epoch
    updates = steps // ema.every
    run = f"{train.epochs} epoch(s) x {steps_per_epoch} step(s)" + (
        f", an update every {ema.every}" if ema.every > 1 else ""
    )
    if updates == 0:
        return [
            f"train.ema: every={ema.every} is more than the run's {steps} optimizer step(s): the EMA model is "
            "never updated, so the variant delivers its starting weights; lower train.ema.every"
        ]
    # the first update copies the weights; each later one keeps ``decay`` of what the EMA holds
    first = ema.decay ** (updates - 1)
    if first > FIRST_SHARE:
        return [
            f"train.ema: decay={ema.decay:g} averages over ~{1 / (1 - ema.decay):.0f} updates but the run makes "
            f"{updates} ({run}): {first:.0%} of the delivered 'ema' model is still the weights after the first "
            "optimizer step(s), barely trained; lower train.ema.decay or train longer"
        ]
    if 1 / (1 - ema.decay) < 2:
        return [
            f"train.ema: decay={ema.decay:g} averages over fewer than 2 updates: the delivered 'ema' model is "
            "effectively the latest weights, not an average; raise train.ema.decay (e.g. 0.99)"
        ]
    return []


def warn(source: str, found: dict[str, list[str]], groups: int) -> None:
    """Print each message once, naming the recipe file and, in a matrix, the variants it is about."""
    for message, names in found.items():
        where = f"variant(s) {', '.join(names)}: " if groups > 1 else ""
        print(f"warning: {source}: {where}{message}", file=sys.stderr)
