"""Every axis changes only what it names (issue: hidden confounds). Each test here fails on the
behaviour it guards against: decisions on the test set, momentum changed by a scheduler, a
warm-up that jumps, restarts that end mid-cycle, TF32 labelled fp32, normalisation that ignores
the weights, an oracle figure shown as a result, emulated bf16 presented as a normal run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from bench.cli import main as cli
from bench.components.schedulers import build_scheduler
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.recipe.schema import SchedulerConfig
from tests.helpers import bench_cli as bench
from tests.recipes import tiny_recipe, write_recipe

SPE = 4


def load(tmp_path, data_root, **dotted):
    return load_recipe(write_recipe(tmp_path / "r.yaml", tiny_recipe(data_root, **dotted)))


# 1. ReduceLROnPlateau and best.ckpt decide on validation, never on test ----------------------------


def test_plateau_without_a_validation_split_is_a_recipe_error(tmp_path, tiny_image_folder):
    with pytest.raises(RecipeError) as err:
        load(tmp_path, tiny_image_folder, **{"train.scheduler": {"name": "plateau"}})
    assert err.value.key == "data.val_size" and "validation split" in str(err.value)
    proc = bench("run", str(tmp_path / "r.yaml"), "--results-dir", str(tmp_path / "res"))
    assert proc.returncode == 2 and "data.val_size" in proc.stderr and not (tmp_path / "res").exists()
    assert load(tmp_path, tiny_image_folder, **{"train.scheduler": {"name": "plateau"}, "data.val_size": 16})


def test_keep_best_without_a_validation_split_is_a_recipe_error(tmp_path, tiny_image_folder):
    with pytest.raises(RecipeError) as err:
        load(tmp_path, tiny_image_folder, **{"train.checkpoint.keep_best": True})
    assert err.value.key == "data.val_size"


def test_plateau_never_steps_on_a_missing_metric():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_scheduler(opt, SchedulerConfig(name="plateau"), epochs=5, steps_per_epoch=SPE)
    with pytest.raises(RuntimeError, match="no validation metric"):
        schedule.after_epoch(None)
    for _ in range(5):  # a flat validation metric cuts the LR after `patience` epochs, as it should
        schedule.after_epoch(0.5)
    assert opt.param_groups[0]["lr"] < 0.1


# 5. OneCycle and Cyclic leave momentum alone; momentum is logged -----------------------------------


def stepped_momenta(opt_cls, name, sched_kwargs=None, **opt_kwargs):
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = opt_cls([{"params": params, "lr": 0.1, "lr_scale": 1.0}], lr=0.1, **opt_kwargs)
    cfg = SchedulerConfig(name=name, **(sched_kwargs or {}))
    schedule = build_scheduler(opt, cfg, epochs=3, steps_per_epoch=SPE)
    seen = []
    for epoch in range(3):
        for i in range(SPE):
            g = opt.param_groups[0]
            seen.append(g["betas"][0] if "betas" in g else g.get("momentum"))
            schedule.begin_step()
            opt.step()
            schedule.end_step(True, epoch, i, hold=False)
    return seen


@pytest.mark.parametrize("name", ["onecycle", "cyclic"])
def test_cyclic_schedules_do_not_change_momentum_unless_asked(name):
    assert set(stepped_momenta(torch.optim.SGD, name)) == {0}  # plain SGD stays plain
    assert set(stepped_momenta(torch.optim.SGD, name, momentum=0.9)) == {0.9}
    assert set(stepped_momenta(torch.optim.AdamW, name)) == {0.9}  # β1 untouched
    assert stepped_momenta(torch.optim.Adagrad, name)  # torch's default would raise here
    asked = stepped_momenta(torch.optim.SGD, name, {"cycle_momentum": True}, momentum=0.9)
    assert len(set(asked)) > 1  # the recipe can still ask for it


@pytest.mark.slow
def test_momentum_is_logged_per_epoch_and_group(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant

    [variant] = load(tmp_path, tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1,
                                                      "train.optimizer.head_lr_mult": 5.0}).variants  # fmt: skip
    record = run_variant(variant).history[0]
    assert record["train/momentum"] == 0.9
    assert record["train/momentum/head"] == 0.9 and record["train/lr/head"] == pytest.approx(
        5 * record["train/lr"]
    )


def test_plan_csv_has_momentum_and_per_step_interval(tmp_path):
    recipe = tiny_recipe(tmp_path / "data", name="mom", data__subset=100, train__epochs=3,
                         matrix={"train.scheduler": [{"name": "cosine"}, {"name": "cosine", "interval": "step"}]})  # fmt: skip
    assert (
        cli(["plan", str(write_recipe(tmp_path / "r.yaml", recipe)), "--results-dir", str(tmp_path / "res")])
        == 0
    )
    table = pd.read_csv(tmp_path / "res" / "mom" / "plan.csv")
    assert (table["momentum"] == 0.9).all()
    per_epoch, per_step = (table[table["variant"] == v] for v in sorted(set(table["variant"])))
    per_epoch, per_step = sorted((per_epoch, per_step), key=lambda t: t["lr"].nunique())
    per_epoch, per_step = (t[t["param_group"] == "all"] for t in (per_epoch, per_step))
    assert per_epoch.groupby("epoch")["lr"].nunique().eq(1).all()  # flat within an epoch
    assert per_step["lr"].is_monotonic_decreasing and per_step["lr"].nunique() == len(per_step)


# 7. cosine warm restarts end their last cycle at the last step -------------------------------------


@pytest.mark.parametrize("epochs", [3, 4, 7, 10, 12])
def test_warm_restarts_default_ends_at_the_bottom_of_a_cycle(epochs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = build_scheduler(
        opt, SchedulerConfig(name="cosine_warm_restarts"), epochs=epochs, steps_per_epoch=SPE
    )
    lrs = []
    for epoch in range(epochs):
        for i in range(SPE):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.end_step(True, epoch, i, hold=False)
    assert lrs[-1] < 0.2  # the last step is near the bottom, not just after a restart
    if epochs in (3, 7):  # prime: one cycle over the whole run, never a restart every epoch
        assert lrs == sorted(lrs, reverse=True)
    else:
        assert max(lrs[len(lrs) // 2 :]) > 0.9  # and it does restart


# 8. the precision axis names exactly what runs ------------------------------------------------------


def test_fp32_turns_tf32_off_explicitly_and_records_it():
    from bench.engine.precision import Precision

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = (
        True  # what a GPU may default to
    )
    precision = Precision("fp32", torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert precision.params()["backend.cudnn_allow_tf32"] == "False"
    assert precision.params()["backend.float32_matmul_precision"] == "highest"


def test_tf32_on_cpu_is_skipped_with_a_reason(tmp_path, tiny_image_folder):
    from bench.engine.errors import VariantSkipped
    from bench.engine.loop import run_variant

    [variant] = load(
        tmp_path, tiny_image_folder, **{"train.device": "cpu", "train.precision": "tf32"}
    ).variants
    with pytest.raises(VariantSkipped, match="tf32"):
        run_variant(variant)


# 9. normalisation follows the start weights ----------------------------------------------------------


@pytest.mark.slow
def test_normalisation_follows_the_weights_a_bench_run_saved(tmp_path, tiny_image_folder):
    from bench.engine.loop import run_variant

    [pre] = load(tmp_path, tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1, "data.classes": ["red", "green"]}).variants  # fmt: skip
    weights = run_variant(pre, run_dir=tmp_path / "pre").weights_path
    saved = json.loads((tmp_path / "pre" / "model.pt.json").read_text())
    assert saved["normalize"] == "train" and len(saved["mean"]) == 3

    class Grab:
        def on_start(self, state):
            self.stats, self.source = state.input_stats, state.normalize

        def on_epoch_end(self, *a):
            pass

        def on_end(self, *a):
            pass

    def stats(**dotted):
        [v] = load(tmp_path, tiny_image_folder, **{"train.device": "cpu", "train.epochs": 1, "model.weights": weights,
                                                    "data.classes": ["blue", "gray"], **dotted}).variants  # fmt: skip
        grab = Grab()
        run_variant(v, hooks=[grab])
        return grab

    auto = stats()
    assert auto.source.startswith("weights:") and list(auto.stats[0]) == pytest.approx(saved["mean"])
    own = stats(**{"data.normalize": "train"})
    assert own.source == "train" and list(own.stats[0]) != pytest.approx(
        saved["mean"]
    )  # other classes, other mean
    explicit = stats(**{"data.normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    assert explicit.source == "explicit" and explicit.stats[1] == (0.25, 0.25, 0.25)


def test_pretrained_normalisation_without_statistics_is_an_error(tmp_path, tiny_image_folder):
    from bench.data.normalize import resolve

    [v] = load(tmp_path, tiny_image_folder, **{"data.normalize": "pretrained"}).variants
    with pytest.raises(RecipeError, match="data.normalize"):
        resolve(v.body.data, v.body.model, torch.nn.Linear(1, 1), ((0.5,) * 3, (0.2,) * 3))


# 10. no oracle figure passes as a result ------------------------------------------------------------


def test_final_accuracies_name_the_oracle_and_select_on_validation():
    from bench.engine.loop import final_accuracies

    history = [
        {"val/acc": 0.5, "test/acc": 0.9},
        {"val/acc": 0.7, "test/acc": 0.6},
        {"val/acc": 0.6, "test/acc": 0.65},
    ]
    out = final_accuracies(history)
    assert out["test/acc"] == 0.65 and out["test/acc_at_best_val"] == 0.6 and out["test/acc_oracle"] == 0.9
    assert "test/acc_best" not in out


# 13. emulated bf16 is said, and skipped unless asked for ---------------------------------------------


def test_emulated_bf16_is_said_in_dry_run_and_plan_and_skipped_by_default(
    tmp_path, tiny_image_folder, monkeypatch
):
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "1")
    monkeypatch.setenv("BENCH_EMULATED_BF16", "")  # unset here and after the test (bench sets it)
    path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.precision": "amp_bf16"})
    )
    proc = bench("run", str(path), "--dry-run")
    assert proc.returncode == 0 and "emulated (no avx512_bf16/amx_bf16)" in proc.stdout, proc.stdout
    assert "--emulated-bf16 run" in proc.stdout  # the way to train it anyway
    proc = bench("run", str(path), "--dry-run", "--emulated-bf16", "run")
    assert proc.returncode == 0 and "trained emulated" in proc.stdout, proc.stdout
    from bench.plan.schedule import plan_variant

    [v] = load_recipe(path).variants
    assert any("emulated" in w for w in plan_variant(v, SPE, num_classes=4, cuda=False).warnings)
    from bench.engine.precision import unavailable_reason

    assert "--emulated-bf16 run" in unavailable_reason("amp_bf16", torch.device("cpu"))  # the default: skip
    monkeypatch.setenv("BENCH_EMULATED_BF16", "run")
    assert unavailable_reason("amp_bf16", torch.device("cpu")) is None
    # "0" pretends native bf16, whatever this CPU has (an AMD EPYC without avx512_bf16 too)
    monkeypatch.setenv("BENCH_EMULATED_BF16", "skip")
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "0")
    assert unavailable_reason("amp_bf16", torch.device("cpu")) is None
    assert not any("emulated" in w for w in plan_variant(v, SPE, num_classes=4, cuda=False).warnings)
