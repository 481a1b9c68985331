"""The built-in component names, and the arguments of the built-in torch classes, as plain data.

Why: ``bench run --dry-run`` checks a recipe in well under a second, and importing torch alone
takes longer than that. The quick validation in ``bench.validate.recipe`` answers from this catalog and
falls back to the real registries (importing torch) only for a name or argument it does not list,
so a miss costs time, never a false error. ``tests/test_catalog.py`` asserts that this catalog
equals the real registries and signatures, so the two cannot drift apart.
"""

from __future__ import annotations

# name -> keyword arguments of the torch class a recipe may set (bench's own keys excluded:
# params, lr, weight_decay).
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "adagrad": ("lr_decay", "initial_accumulator_value", "eps", "foreach", "maximize", "differentiable",
                "fused"),
    "adam": ("betas", "eps", "amsgrad", "foreach", "maximize", "capturable", "differentiable", "fused",
             "decoupled_weight_decay"),
    "adamw": ("betas", "eps", "amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused"),
    "nadam": ("betas", "eps", "momentum_decay", "decoupled_weight_decay", "foreach", "maximize", "capturable",
              "differentiable"),
    "rmsprop": ("alpha", "eps", "momentum", "centered", "capturable", "foreach", "maximize", "differentiable"),
    "sgd": ("momentum", "dampening", "nesterov", "maximize", "foreach", "differentiable", "fused"),
}  # fmt: skip

# name -> keyword arguments of the torch scheduler class (optimizer and lr_lambda excluded).
SCHEDULERS: dict[str, tuple[str, ...]] = {
    "chained": ("schedulers",),
    "constant": ("last_epoch",),
    "constant_lr": ("factor", "total_iters", "last_epoch"),
    "cosine": ("T_max", "eta_min", "last_epoch"),
    "cosine_warm_restarts": ("T_0", "T_mult", "eta_min", "last_epoch"),
    "cyclic": ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_fn",
               "scale_mode", "cycle_momentum", "base_momentum", "max_momentum", "last_epoch"),
    "exponential": ("gamma", "last_epoch"),
    "lambda": ("last_epoch",),
    "linear": ("start_factor", "end_factor", "total_iters", "last_epoch"),
    "multiplicative": ("last_epoch",),
    "multistep": ("milestones", "gamma", "last_epoch"),
    "onecycle": ("max_lr", "total_steps", "epochs", "steps_per_epoch", "pct_start", "anneal_strategy",
                 "cycle_momentum", "base_momentum", "max_momentum", "div_factor", "final_div_factor",
                 "three_phase", "last_epoch"),
    "polynomial": ("total_iters", "power", "last_epoch"),
    "sequential": ("schedulers", "milestones", "last_epoch"),
    "plateau": ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"),
    "step": ("step_size", "gamma", "last_epoch"),
}  # fmt: skip

# Schedulers that can follow a linear warm-up: all but the two that ramp up by themselves (a
# composite can where each of its schedulers can).
SCHEDULERS_WITH_WARMUP: tuple[str, ...] = tuple(n for n in SCHEDULERS if n not in ("cyclic", "onecycle"))
# Per-epoch schedulers that also anneal per optimizer step (``interval: step``).
SCHEDULERS_PER_STEP: tuple[str, ...] = ("constant", "constant_lr", "cosine", "exponential", "lambda", "linear",
                                         "multistep", "polynomial", "step")  # fmt: skip
# Schedulers made of a list of schedulers (``schedulers: [{name: ..., <args>}, ...]``).
COMPOSITE_SCHEDULERS: tuple[str, ...] = ("chained", "sequential")

# Named LR factor functions for the lambda and multiplicative schedulers.
LR_LAMBDAS: tuple[str, ...] = ("constant", "constant_factor", "inverse_sqrt", "linear_decay", "poly")

LOSSES: tuple[str, ...] = ("cross_entropy", "dice", "focal")

DATASETS: tuple[str, ...] = ("cifar10", "imagefolder")

# bench's short model names -> the timm model each builds. (Any timm name, 'torchvision:<name>'
# or an import path works as well; those are checked by the full validation only.)
MODELS: dict[str, str] = {
    "airbench94": "bench.components.models.airbench:airbench94",
    "resnet10t": "resnet10t",
    "resnet18": "resnet18",
    "resnet18_cifar": "bench.components.models.cifar_resnet:resnet18_cifar",
    "tiny": "test_resnet",
}
