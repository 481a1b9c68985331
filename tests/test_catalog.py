"""``bench.components.catalog`` (torch-free names and arguments for quick validation) equals the real
registries and the installed torch's signatures, so the two never drift apart."""

from __future__ import annotations

from bench.components import catalog
from bench.components.losses import LOSSES
from bench.components.models import MODELS
from bench.components.optimizers import OPTIMIZERS, OWN_KEYS
from bench.components.schedulers import LR_LAMBDAS, SCHEDULERS
from bench.components.signature import allowed_kwargs
from bench.data.registry import DATASETS

HINT = "update bench/components/catalog.py to match the registry (it is what `bench run --dry-run` checks against)"


def test_optimizers_and_their_arguments():
    assert sorted(catalog.OPTIMIZERS) == OPTIMIZERS.names(), HINT
    for name, args in catalog.OPTIMIZERS.items():
        assert args == allowed_kwargs(OPTIMIZERS.get(name), OWN_KEYS), (name, HINT)


def test_schedulers_their_arguments_and_warmup():
    assert sorted(catalog.SCHEDULERS) == SCHEDULERS.names(), HINT
    for name, args in catalog.SCHEDULERS.items():
        assert args == allowed_kwargs(SCHEDULERS.get(name).cls, ("optimizer", "lr_lambda")), (name, HINT)
    warmup = sorted(n for n in SCHEDULERS.names() if SCHEDULERS.get(n).warmup)
    assert sorted(catalog.SCHEDULERS_WITH_WARMUP) == warmup, HINT
    per_step = sorted(n for n in SCHEDULERS.names() if SCHEDULERS.get(n).per_step is not None)
    assert sorted(catalog.SCHEDULERS_PER_STEP) == per_step, HINT
    assert sorted(catalog.LR_LAMBDAS) == LR_LAMBDAS.names(), HINT


def test_losses_datasets_and_models():
    import timm

    assert sorted(catalog.LOSSES) == LOSSES.names(), HINT
    assert sorted(catalog.DATASETS) == DATASETS.names(), HINT
    assert catalog.MODELS == {n: MODELS.get(n) for n in MODELS.names()}, HINT
    assert all(timm.is_model(target) or ":" in target for target in catalog.MODELS.values())
