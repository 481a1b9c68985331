"""Training tricks as units that plug into the one loop at a few named points.

Each trick is one module: a ``Trick`` subclass registered in ``TRICKS`` with ``from_config``
returning an instance when the recipe turns it on (else None). The loop (bench/engine/loop.py)
builds the active ones in registration order and calls them at these points:

    on_model(state)                 model built and on its device; before the optimizer exists
    on_setup(state)                 optimizer, schedule and loss built; before a checkpoint is restored
    on_epoch_start(state)           before training one epoch (after model.train())
    after_backward(state)           gradients ready, before the optimizer step
    after_step(state, stepped)      after the optimizer step -> False holds the per-batch scheduler
    on_epoch_end(state, record)     after evaluation -> False holds the per-epoch scheduler
    finish(state, metrics)          after the last epoch: evaluate averaged models, choose the export
    state_dict() / load_state_dict  saved in and restored from every checkpoint

A new trick is one file plus its line in ``_MODULES`` below; nothing else in the loop changes.
"""

from __future__ import annotations

import importlib

from bench.components.registry import Registry

TRICKS: Registry[type] = Registry("trick")

# Registration (and call) order: freezing before anything that reads parameters, averaging last.
# Precision is not a trick: autocast and the GradScaler are loop state (bench/engine/precision.py).
_MODULES = (
    "freeze",
    "channels_last",
    "compile",
    "label_smoothing",
    "grad_clip",
    "swa",
    "ema",
)


def load_all() -> Registry[type]:
    for name in _MODULES:
        importlib.import_module(f"bench.tricks.{name}")
    return TRICKS


def active_tricks(train_cfg) -> list:
    """Instances of every trick the recipe's ``train`` section turns on, in call order."""
    load_all()
    out = []
    for name in _MODULES:  # each module registers itself under its own name
        trick = TRICKS.get(name).from_config(train_cfg)
        if trick is not None:
            out.append(trick)
    return out
