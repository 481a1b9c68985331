"""What a recipe's shape cannot tell by itself, checked before anything is recorded: component
names and arguments against the registries and the torch/optuna signatures, ``train.freeze``
against the model's real depth.

Why a layer of its own: ``bench.recipe`` is a leaf (no torch, timm, torchvision or optuna) and the
components know nothing of recipe files; this sits above both and imports them lazily.
``full=False`` (``bench run --dry-run``) answers from ``bench.components.catalog`` without torch,
falling back to the registries for what it does not list; timm/torchvision model names and the
freeze depth need ``full=True``."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.components import catalog
from bench.components.registry import import_object, is_import_path
from bench.errors import RecipeError
from bench.recipe.load import LoadedRecipe, _validate, load_recipe
from bench.recipe.schema import ModelConfig, OptimizerConfig, RecipeBody, SchedulerConfig
from bench.recipe.tune import TuneConfig

# The optuna class behind each sampler and pruner name, and the options bench sets itself.
OPTUNA_CLASSES = {
    "sampler": {
        "tpe": "optuna.samplers:TPESampler",
        "random": "optuna.samplers:RandomSampler",
        "grid": "optuna.samplers:GridSampler",
        "cmaes": "optuna.samplers:CmaEsSampler",
    },
    "pruner": {
        "median": "optuna.pruners:MedianPruner",
        "hyperband": "optuna.pruners:HyperbandPruner",
        "none": "optuna.pruners:NopPruner",
        "auto": "bench.tune.pruners:AutoPruner",
        "wilcoxon": "bench.tune.pruners:SeedPruner",
    },
}
OPTUNA_OWN_KEYS = {"sampler": ("seed", "search_space"), "pruner": ()}


def load_validated(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    overlays: list[str] | tuple[str, ...] = (),
    *,
    full: bool = True,
) -> LoadedRecipe:
    """``load_recipe`` followed by ``validate_recipe``: what every command reads a recipe with."""
    loaded = load_recipe(path, overrides, overlays)
    validate_recipe(loaded, full=full)
    return loaded


def validate_recipe(loaded: LoadedRecipe, *, full: bool = True, warnings: bool = True) -> None:
    """Check every variant's components (each distinct one once) and the tune section; a
    RecipeError (exit 2) names the file, the dotted key, the variant and what is allowed.
    ``warnings=False``: a second, full pass over a recipe a torch-free pass already warned about."""
    from bench.components.user_code import add_import_paths

    add_import_paths(loaded.source)  # the recipe's folder and the current one, as Hydra users expect
    from bench.validate.averaging import swa_warnings, warn

    checks = Checks(loaded.source, full=full)
    groups = {v.group: v.body for v in loaded.variants}
    averaging: dict[str, list[str]] = {}
    for group, body in groups.items():
        checks.body(body, where=f"variant {group}" if len(groups) > 1 else "")
        for message in swa_warnings(body.train):
            averaging.setdefault(message, []).append(group)
    if warnings:
        warn(loaded.source, averaging, len(groups))
    if loaded.recipe.tune is not None:
        checks.tune(loaded.recipe.tune)


def validate_config(
    model: type[BaseModel], data: Any, source: str, where: str = "", *, full: bool = True
) -> Any:
    """The schema's validation (``bench.recipe.load._validate``) plus the component checks for a
    resolved setup (a ``RecipeBody``), e.g. a tuning trial's."""
    obj = _validate(model, data, source, where)
    if model is RecipeBody:
        Checks(source, full=full).body(obj, where=where)
    return obj


class Checks:
    """The component checks of one recipe; each distinct (key, value) is checked once."""

    def __init__(self, source: str, *, full: bool):
        self.source = source
        self.full = full
        self._done: set[str] = set()

    def body(self, body: RecipeBody, where: str = "") -> None:
        train = body.train
        self._check("data.name", body.data.name, self._dataset, where)
        self._check("model.name", body.model, self._model, where)
        self._check("train.loss", (train.loss, train.label_smoothing), self._loss, where)
        self._check("train.optimizer", train.optimizer, self._optimizer, where)
        self._check("train.scheduler", train.scheduler, self._scheduler, where)
        if self.full:  # the values too: torch checks them only when it builds the scheduler
            value = (train.optimizer, train.scheduler, train.epochs)
            self._check("train.scheduler", value, self._scheduler_values, where)
        if self.full and train.freeze:
            self._check("train.freeze", (body.model, train.freeze), self._freeze, where)

    def tune(self, tune: TuneConfig) -> None:
        for kind in ("sampler", "pruner"):
            self._check(f"tune.{kind}", (kind, getattr(tune, kind)), self._optuna_options, "")

    def _check(self, key: str, value: Any, check: Callable[[Any], None], where: str) -> None:
        token = f"{key}={json.dumps(value, sort_keys=True, default=lambda m: m.model_dump(mode='json'))}"
        if token in self._done:
            return
        try:
            check(value)
        except (ValueError, RecipeError) as exc:  # UnknownComponentError is a ValueError
            detail, key = (exc.detail, exc.key or key) if isinstance(exc, RecipeError) else (str(exc), key)
            raise RecipeError(
                f"{where}: {detail}" if where else detail, source=self.source, key=key
            ) from None
        self._done.add(token)

    # -- one check per component kind: the catalog first, the real registry when it does not know

    def _dataset(self, name: str) -> None:
        if name not in catalog.DATASETS:
            from bench.data.registry import DATASETS

            DATASETS.get(name)

    def _model(self, cfg: ModelConfig) -> None:
        name = cfg.name
        if name in catalog.MODELS or name in catalog.MODELS.values():
            return
        if self.full:
            from bench.components.models import check_model_name

            check_model_name(name)
        if is_import_path(name) and not name.startswith("torchvision:"):
            from bench.components.user_code import check_model_factory

            check_model_factory(name, cfg.pretrained, cfg.kwargs)

    def _loss(self, value: tuple[Any, float]) -> None:
        loss, label_smoothing = value
        if not (isinstance(loss, str) and loss in catalog.LOSSES):  # the built-in ones take label_smoothing
            from bench.components.losses import check_loss

            check_loss(loss, label_smoothing)

    def _optimizer(self, cfg: OptimizerConfig) -> None:
        known = catalog.OPTIMIZERS.get(cfg.name)
        if known is None or not set(cfg.kwargs) <= set(known):
            from bench.components.optimizers import check_optimizer

            check_optimizer(cfg.name, cfg.kwargs)
        if self.full:  # the values too: torch checks them only when it builds the optimizer
            from bench.components.optimizers import try_optimizer

            try_optimizer(cfg)

    def _scheduler(self, cfg: SchedulerConfig) -> None:
        warmup = cfg.warmup_epochs > 0
        if not _clear_in_catalog(cfg.name, cfg.kwargs, warmup=warmup, interval=cfg.interval):
            from bench.components.schedulers import check_scheduler

            check_scheduler(cfg.name, cfg.kwargs, warmup=warmup, interval=cfg.interval)
            if "lambda_kwargs" in cfg.kwargs:
                _check_lambda_kwargs(cfg)

    def _scheduler_values(self, value: tuple[OptimizerConfig, SchedulerConfig, int]) -> None:
        from bench.components.schedulers import try_scheduler

        optimizer, scheduler, epochs = value
        try_scheduler(optimizer, scheduler, epochs=epochs)

    def _freeze(self, value: tuple[ModelConfig, int]) -> None:
        from bench.components.freeze import freeze_stages

        model_cfg, depth = value
        freeze_stages(_model_without_weights(model_cfg.model_dump_json()), depth)

    def _optuna_options(self, value: tuple[str, Any]) -> None:
        kind, cfg = value
        if self.full:
            from bench.components.signature import check_kwargs

            cls = import_object(OPTUNA_CLASSES[kind][cfg.name])
            check_kwargs(cls, cfg.kwargs, what=f"{kind} '{cfg.name}'", skip=OPTUNA_OWN_KEYS[kind])


def _clear_in_catalog(name: str, kwargs: dict[str, Any], *, warmup: bool, interval: str) -> bool:
    """True where the catalog alone clears a scheduler's name and keys (no torch import); False
    sends it to the full check."""
    known = catalog.SCHEDULERS.get(name)
    return not (
        known is None
        or not set(kwargs) <= set(known)
        or (warmup and name not in catalog.SCHEDULERS_WITH_WARMUP)
        or (interval == "step" and name not in catalog.SCHEDULERS_PER_STEP)
        or name in catalog.COMPOSITE_SCHEDULERS  # how its schedulers step, its milestones: the full check
    )


def _check_lambda_kwargs(cfg: SchedulerConfig) -> None:
    """Call the named LR factor function once with ``lambda_kwargs``, so that a misspelt
    argument fails here rather than when the scheduler is built inside a recorded run."""
    from bench.components.schedulers import LR_LAMBDAS, SCHEDULERS, SchedulerSpec

    spec, kwargs = SCHEDULERS.get(cfg.name), cfg.kwargs["lambda_kwargs"]
    if not isinstance(spec, SchedulerSpec):
        return  # a user's scheduler class: its signature was checked
    if not isinstance(kwargs, dict):
        raise ValueError(f"lambda_kwargs must be a mapping of argument -> value, got {kwargs!r}")
    name = str(cfg.kwargs.get("lr_lambda") or spec.defaults(None)["lr_lambda"])
    try:
        LR_LAMBDAS.get(name)(1, **kwargs)(0)
    except TypeError as exc:
        raise ValueError(f"lambda_kwargs do not fit lr_lambda '{name}': {exc}") from None


@functools.lru_cache(maxsize=16)
def _model_without_weights(model_json: str) -> Any:
    """The model a ModelConfig describes, built once per config on the ``meta`` device (no memory,
    no weights, milliseconds) to count its stages; on the CPU when a factory cannot build on meta.
    The head's size does not change the stages, so any class count will do."""
    import torch

    from bench.components.models import build_model

    cfg = ModelConfig.model_validate_json(model_json).model_copy(
        update={"pretrained": False, "weights": None}
    )
    failure: Exception | None = None
    for device in ("meta", "cpu"):  # some factories do work that meta tensors cannot: then the CPU
        try:
            with torch.device(device):
                return build_model(cfg, cfg.num_classes or 10)
        except RecipeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user factory may raise anything
            failure = exc
    raise RecipeError(
        f"cannot build model '{cfg.name}' to count its stages: {type(failure).__name__}: {failure}",
        key="model",
    ) from None
