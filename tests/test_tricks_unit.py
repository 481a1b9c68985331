"""Every registered trick, as a unit: two training batches on CPU, then an assertion that the
trick took effect. A trick registered without a case here fails the completeness test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.recipe.load import load_recipe
from bench.tricks import TRICKS, load_all
from tests.recipes import tiny_recipe, write_recipe


def _train(tmp_path, folder, hook, settings: dict, probe=None):
    from bench.engine.loop import run_variant

    dotted = {
        "train.device": "cpu",
        "train.epochs": 1,
        "data.subset": 64,
        "train.warmup_steps": 0,
        **settings,
    }
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(folder, **dotted))).variants
    watch = hook(probe)
    run_variant(variant, hooks=[watch], run_dir=tmp_path / "run")
    assert watch.state.step == 2  # two batches of 32
    return watch


def _trick(state, name):
    return next(t for t in state.tricks if t.name == name)


def _batch(state):
    state.train_loader.set_epoch(0)
    return next(iter(state.train_loader))


@pytest.mark.slow
def test_precision_is_loop_state_and_runs_the_forward_in_bf16(
    tmp_path, tiny_image_folder, capture_hook, monkeypatch
):
    """Precision is not a trick (autocast and the GradScaler belong to the loop), but the
    precision axis must take effect all the same."""
    monkeypatch.setenv("BENCH_EMULATED_BF16", "run")  # a CPU without native bf16 would skip it by default
    w = _train(tmp_path, tiny_image_folder, capture_hook, {"train.precision": "amp_bf16"})
    assert "precision" not in {t.name for t in w.state.tricks}
    x, _ = _batch(w.state)
    with w.state.precision.autocast():
        assert w.state.model(x).dtype == torch.bfloat16  # the forward really ran in bf16


def check_freeze(tmp_path, folder, hook):
    w = _train(tmp_path, folder, hook, {"train.freeze": 1})
    params = dict(w.state.model.named_parameters())
    frozen = [k for k, p in params.items() if not p.requires_grad]
    assert frozen and all(torch.equal(params[k].detach(), w.initial[k]) for k in frozen)
    assert any(not torch.equal(p.detach(), w.initial[k]) for k, p in params.items() if p.requires_grad)
    from bench.components.freeze import frozen_norm_names

    stats = [f"{n}.running_mean" for n in frozen_norm_names(w.state.model)]
    live = w.state.model.state_dict()
    assert stats and all(torch.equal(live[k], w.initial[k]) for k in stats)  # frozen BN keeps its statistics


def check_channels_last(tmp_path, folder, hook):
    w = _train(tmp_path, folder, hook, {"train.channels_last": True})
    convs = [m.weight for m in w.state.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x, _ = _batch(w.state)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def check_compile(tmp_path, folder, hook):
    from bench.engine.state import build_state

    recipe = tiny_recipe(folder, **{"train.device": "cpu", "train.compile": True})
    [variant] = load_recipe(write_recipe(tmp_path / "r.yaml", recipe)).variants
    state = build_state(variant)  # compiling for real takes a minute on CPU: the wiring is the unit
    compiled = state.forward.fn  # the forward the loop calls goes through torch.compile of the model
    assert type(compiled).__name__ == "OptimizedModule" and compiled._orig_mod is state.model


def check_label_smoothing(tmp_path, folder, hook):
    w = _train(tmp_path, folder, hook, {"train.label_smoothing": 0.2})
    x, y = _batch(w.state)
    with torch.no_grad():
        logits = w.state.model(x)
    smoothed, plain = w.state.criterion(logits, y), nn.functional.cross_entropy(logits, y)
    assert w.state.criterion.label_smoothing == 0.2 and not torch.isclose(smoothed, plain)


def check_grad_clip(tmp_path, folder, hook):
    norms = []

    def probe(state):
        trick = _trick(state, "grad_clip")
        inner = trick.after_backward

        def measured(s):
            inner(s)
            grads = [p.grad for p in s.model.parameters() if p.grad is not None]
            norms.append(
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            )

        trick.after_backward = measured

    _train(tmp_path, folder, hook, {"train.grad_clip": 1e-3}, probe)
    assert len(norms) == 2 and all(n <= 1e-3 * (1 + 1e-4) for n in norms)


def check_swa(tmp_path, folder, hook):
    w = _train(tmp_path, folder, hook, {"train.swa": {"start_epoch": 0, "lr_factor": 0.5}})
    swa = _trick(w.state, "swa")
    assert int(swa.model.n_averaged) == 1 and w.result.delivered == "swa"
    averaged, live = swa.model.module.state_dict(), w.state.model.state_dict()
    assert any(not torch.equal(averaged[k], w.initial[k]) for k in live if k.endswith("weight"))


def check_ema(tmp_path, folder, hook):
    w = _train(tmp_path, folder, hook, {"train.ema": {"decay": 0.5, "every": 1}})
    ema = _trick(w.state, "ema").model.module.state_dict()
    live = w.state.model.state_dict()
    weights = [k for k in live if k.endswith("weight")]
    # after two updates: ema = 0.25·w1 + 0.5·... — neither the start nor the live weights
    assert any(not torch.equal(ema[k], live[k]) for k in weights)
    assert any(not torch.equal(ema[k], w.initial[k]) for k in weights)
    assert w.result.delivered == "ema"


CASES = {name.removeprefix("check_"): fn for name, fn in globals().items() if name.startswith("check_")}


def test_every_registered_trick_has_a_unit_test():
    assert set(load_all().names()) == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_trick_takes_effect(name, tmp_path, tiny_image_folder, capture_hook, monkeypatch):
    monkeypatch.delenv("BENCH_EMULATED_BF16", raising=False)  # restored after the case sets it
    load_all()
    assert name in TRICKS.names()
    CASES[name](tmp_path, tiny_image_folder, capture_hook)
