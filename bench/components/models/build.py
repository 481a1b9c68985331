"""Model building: bench's own names, timm names, ``torchvision:<name>``, or a user factory
``pkg.mod:fn``; the classifier head is sized for the data; pretrained weights come from the
library's own download or a local state-dict file."""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.components.models.torchvision_models import (
    check_torchvision_name,
    create_torchvision,
    torchvision_name,
)
from bench.components.models.weights import load_weights
from bench.components.registry import Registry, UnknownComponentError, import_object, is_import_path
from bench.components.signature import allowed_kwargs
from bench.errors import CheckpointError, RecipeError, message_line

# Bench's own short names -> a timm model name or the import path of a bench factory
# (``factory(num_classes=, pretrained=, **kwargs)``); any timm model name works as well.
MODELS: Registry[str] = Registry("model")
MODELS.register("tiny", "test_resnet")  # timm's 0.4M-param ResNet for CPU smoke runs
MODELS.register("resnet10t", "resnet10t")
MODELS.register("resnet18", "resnet18")
MODELS.register("resnet18_cifar", "bench.components.models.cifar_resnet:resnet18_cifar")
MODELS.register("airbench94", "bench.components.models.airbench:airbench94")


def check_model_name(name: str) -> str:
    import timm

    # torchvision first: 'torchvision:resnet18' also looks like an import path.
    tv_name = torchvision_name(name)
    if tv_name is not None:
        check_torchvision_name(tv_name)
        return name
    if is_import_path(name):
        import_object(name)  # a path that does not import fails here, naming it
        return name
    if name in MODELS or timm.is_model(name):
        return name
    import difflib

    close = difflib.get_close_matches(name, list(dict.fromkeys([*MODELS.names(), *timm.list_models()])), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown model '{name}'{hint}; allowed: {', '.join(MODELS.names())}, any timm model name, "
        "'torchvision:<name>', or an import path 'package.module:factory'"
    )


def _create(name: str, num_classes: int, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    tv_name = torchvision_name(name)
    if tv_name is not None:
        return create_torchvision(tv_name, num_classes, pretrained, kwargs)
    name = MODELS.get(name) if name in MODELS else name
    if is_import_path(name):
        # only the arguments the factory takes: a user's factory need not know about pretrained=
        factory = import_object(name)
        allowed = allowed_kwargs(factory)
        if allowed is None or "pretrained" in allowed:
            kwargs = {**kwargs, "pretrained": pretrained}
        elif pretrained:
            raise RecipeError(f"model '{name}' does not take pretrained=", key="model.pretrained")
        return factory(num_classes=num_classes, **kwargs)
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def build_model(cfg, num_classes: int) -> nn.Module:
    """Build ``cfg`` (a ModelConfig) with a head of ``num_classes`` outputs."""
    num_classes = cfg.num_classes or num_classes
    try:
        model = _create(cfg.name, num_classes, cfg.pretrained, dict(cfg.kwargs))
    except (UnknownComponentError, RecipeError):
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        if cfg.pretrained and _looks_offline(exc):
            raise CheckpointError(
                f"model.pretrained: could not download pretrained weights for '{cfg.name}' ({type(exc).__name__}: "
                f"{message_line(exc, 200)}). Offline? Save a state dict to a file and set "
                "'model.pretrained: false' and 'model.weights: PATH' (e.g. the model.pt a previous bench run wrote), "
                + (
                    "or copy a populated Hugging Face cache to $HF_HOME (HF_HUB_OFFLINE is set: only the cache is read)."
                    if _hub_offline()
                    else "or set HF_HUB_OFFLINE=1 with a populated Hugging Face cache."
                )
            ) from None
        raise
    except TypeError as exc:
        raise RecipeError(f"cannot build model '{cfg.name}': {exc}", key="model.kwargs") from None
    if cfg.weights:
        load_weights(model, cfg.weights)
    return model


def _hub_offline() -> bool:
    """Whether the Hugging Face client is already offline (it reads HF_HUB_OFFLINE once, at import):
    then "set HF_HUB_OFFLINE=1" is no advice."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _looks_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    words = ("connect", "resolve", "offline", "network", "hub", "urlopen", "timed out", "localentrynotfound",
             "http")  # fmt: skip
    return any(w in text for w in words)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
