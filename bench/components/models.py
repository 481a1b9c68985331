"""Model building: timm names, ``torchvision:<name>``, or a user factory ``pkg.mod:fn``; the
classifier head is sized for the data; pretrained weights come from the library's own download
or a local state-dict file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CheckpointError, RecipeError
from bench.registry import Registry, UnknownComponentError, import_object, is_import_path

TORCHVISION_PREFIX = "torchvision:"

# Bench's own short names; any timm model name works as well.
MODELS: Registry[str] = Registry("model")
MODELS.register("tiny", "test_resnet")  # timm's 0.4M-param ResNet for CPU smoke runs
MODELS.register("resnet10t", "resnet10t")
MODELS.register("resnet18", "resnet18")


def check_model_name(name: str) -> str:
    import timm

    if name in MODELS or is_import_path(name):
        if is_import_path(name):
            import_object(name)
        return name
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX) :]
        if tv_name not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"unknown torchvision model '{tv_name}'; see torchvision.models.list_models()")
        return name
    if timm.is_model(name):
        return name
    import difflib

    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown model '{name}'{hint}; allowed: {', '.join(MODELS.names())}, any timm model name, "
        "'torchvision:<name>', or an import path 'package.module:factory'"
    )


def _create(name: str, num_classes: int, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    name = MODELS.get(name) if name in MODELS else name
    if is_import_path(name):
        return import_object(name)(num_classes=num_classes, pretrained=pretrained, **kwargs)
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX) :]
        weights = "DEFAULT" if pretrained else None
        model = torchvision.models.get_model(tv_name, weights=weights, **kwargs)
        replace_head(model, num_classes)
        return model
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def build_model(cfg, num_classes: int) -> nn.Module:
    """Build ``cfg`` (a ModelConfig) with a head of ``num_classes`` outputs."""
    num_classes = cfg.num_classes or num_classes
    try:
        model = _create(cfg.name, num_classes, cfg.pretrained, dict(cfg.kwargs))
    except UnknownComponentError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        if cfg.pretrained and _looks_offline(exc):
            raise CheckpointError(
                f"model.pretrained: could not download pretrained weights for '{cfg.name}' ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Offline? Save a state dict to a file and set "
                "'model.pretrained: false' and 'model.weights: PATH' (e.g. the model.pt a previous bench run wrote), "
                "or set HF_HUB_OFFLINE=1 with a populated Hugging Face cache."
            ) from None
        raise
    except TypeError as exc:
        raise RecipeError(f"cannot build model '{cfg.name}': {exc}", key="model.kwargs") from None
    if cfg.weights:
        load_weights(model, cfg.weights)
    return model


def _looks_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        w in text
        for w in (
            "connect",
            "resolve",
            "offline",
            "network",
            "hub",
            "urlopen",
            "timed out",
            "localentrynotfound",
            "http",
        )
    )


def classifier_names(model: nn.Module) -> set[str]:
    """Parameter-name prefixes of the classifier head."""
    if hasattr(model, "pretrained_cfg") and model.pretrained_cfg.get("classifier"):
        cls = model.pretrained_cfg["classifier"]
        return set(cls) if isinstance(cls, (list, tuple)) else {cls}
    for attr in ("fc", "classifier", "head"):
        if isinstance(getattr(model, attr, None), nn.Module):
            return {attr}
    last = list(model.named_children())[-1][0]
    return {last}


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap a torchvision-style final Linear for one with ``num_classes`` outputs."""
    for attr in ("fc", "classifier", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            if head.out_features != num_classes:
                setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            last = head[-1]
            if last.out_features != num_classes:
                head[-1] = nn.Linear(last.in_features, num_classes)
            return


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model``; the head is kept as built (sized for this data).

    Loaded with ``weights_only=True``: a file carrying pickled code is refused. Every non-head
    tensor must match by name and shape, else the file is for another architecture.
    """
    path = expand_path(path)
    if not path.is_file():
        raise CheckpointError(
            f"model.weights: file not found: {path} (a bench run writes one per variant as "
            "results/<recipe>/weights/<variant>.pt; run the recipe that produces it first)"
        )
    state = read_state_dict(path)
    head = classifier_names(model)
    own = model.state_dict()
    is_head = lambda k: any(k == h or k.startswith(h + ".") for h in head)  # noqa: E731
    wanted = {k for k in own if not is_head(k)}
    given = {k for k in state if not is_head(k)}
    missing, unexpected = sorted(wanted - given), sorted(given - wanted)
    mismatched = sorted(k for k in wanted & given if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise CheckpointError(f"model.weights: {path} is for another architecture: " + "; ".join(parts))
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)


def expand_path(path: str | Path) -> Path:
    """Expand ``~`` and ``$VARS``; ``$BENCH_RESULTS_DIR`` defaults to ``results`` (the CLI sets it
    to ``--results-dir``), so a recipe can start from weights an earlier recipe wrote."""
    env = {"BENCH_RESULTS_DIR": "results", **os.environ}
    text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), str(path))
    return Path(text).expanduser()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        text = str(exc)
        why = (
            "it holds pickled code or objects (refused for safety)"
            if "weights_only" in text.lower()
            else text.splitlines()[0][:200]
        )
        raise CheckpointError(f"cannot load weights from {path}: {why}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a bench checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict (name -> tensor)")
    return obj


def model_stages(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped into stages, input first, classifier head last.

    timm models describe their stages with ``group_matcher`` (stem, then blocks); for others
    the top-level children in definition order are the stages, the head being the last.
    """
    names = [n for n, _ in model.named_parameters()]
    head = classifier_names(model)
    is_head = lambda n: any(n == h or n.startswith(h + ".") for h in head)  # noqa: E731
    body = [n for n in names if not is_head(n)]
    head_params = [n for n in names if is_head(n)]
    stages: list[list[str]]
    if hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        groups = group_parameters(model, model.group_matcher(coarse=True))
        stages = [[n for n in groups[g] if not is_head(n)] for g in sorted(groups)]
    else:
        order: dict[str, list[str]] = {}
        for n in body:
            order.setdefault(n.split(".")[0], []).append(n)
        stages = list(order.values())
    stages = [s for s in stages if s]
    # torchvision ResNets: conv1 and bn1 are separate children; they form one stem.
    if len(stages) > 1 and all(n.split(".")[0] in {"conv1", "bn1"} for n in stages[0] + stages[1]):
        stages = [stages[0] + stages[1], *stages[2:]]
    return [*stages, head_params]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
