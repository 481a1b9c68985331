"""``torchvision:<name>`` models: built with torchvision's own weights enum, the ImageNet head
replaced by one sized for the data, and freezing stages for the families bench knows:

    ResNet / ResNeXt / Wide ResNet   stem (conv1, bn1), layer1..layer4, head fc
    MobileNetV2/V3, EfficientNet     features.0 (stem), features.1..N, classifier body, head
    VisionTransformer                stem (conv_proj, class_token, pos_embedding), each encoder
                                     layer, final encoder.ln, head heads.head

Other torchvision models get their top-level children as stages. A model whose classifier does
not end in a Linear (e.g. SqueezeNet's 1x1 conv) cannot get a new head when pretrained: that is
an error rather than a silently kept 1000-class head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from bench.errors import RecipeError

PREFIX = "torchvision:"
SUPPORTED_FAMILIES = "ResNet/ResNeXt/Wide ResNet, MobileNetV2/V3, EfficientNet/EfficientNetV2, ViT"


def torchvision_name(name: str) -> str | None:
    """``torchvision:resnet18`` -> ``resnet18``; None for any other model name."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None


def check_torchvision_name(tv_name: str) -> None:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if tv_name not in known:
        import difflib

        close = difflib.get_close_matches(tv_name, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown torchvision model '{tv_name}'{hint}; see torchvision.models.list_models()")


def is_torchvision_model(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.")


def create_torchvision(tv_name: str, num_classes: int, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    """Build ``tv_name``; with ``pretrained`` the DEFAULT weights are loaded (downloaded on first
    use) and the final Linear is replaced by a freshly initialised one of ``num_classes``."""
    import torchvision

    check_torchvision_name(tv_name)
    if not pretrained:
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
    model = torchvision.models.get_model(tv_name, weights="DEFAULT", **kwargs)
    replace_head(model, num_classes, tv_name)
    return model


def replace_head(model: nn.Module, num_classes: int, tv_name: str) -> None:
    """Swap the final Linear for a new one with ``num_classes`` outputs; a model whose last
    parameterised layer is not a Linear is refused (its ImageNet head would silently stay)."""
    path = head_path(model)
    head = model.get_submodule(path) if path else None
    if not isinstance(head, nn.Linear):
        kind = type(head).__name__ if head is not None else "no parameterised layer"
        raise RecipeError(
            f"cannot replace the classifier head of pretrained 'torchvision:{tv_name}': its last layer is "
            f"{kind}, not a Linear, so it would keep its 1000 ImageNet classes. Supported families: "
            f"{SUPPORTED_FAMILIES} (and others ending in a Linear); or use a timm model, or "
            "pretrained: false",
            key="model.name",
        )
    if head.out_features != num_classes:
        model.set_submodule(path, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))


def _family(model: nn.Module) -> str:
    from torchvision import models as tvm

    families = {"resnet": tvm.ResNet, "features": (tvm.MobileNetV2, tvm.MobileNetV3, tvm.EfficientNet),
                "vit": tvm.VisionTransformer}  # fmt: skip
    return next((family for family, classes in families.items() if isinstance(model, classes)), "other")


def head_path(model: nn.Module) -> str | None:
    """Dotted module name of the classifier: the family's known head, else the last module that
    holds parameters directly (torchvision registers the classifier last)."""
    family = _family(model)
    if family == "resnet":
        return "fc"
    if family == "vit":
        return "heads.head"
    if family == "features":
        return f"classifier.{len(model.classifier) - 1}"
    holders = [
        name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))
    ]
    return holders[-1] if holders else None


def _resnet_key(name: str) -> str:
    top = name.split(".")[0]
    return "stem" if top in ("conv1", "bn1") else top


def _features_key(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "features" else parts[0]


def _vit_key(name: str) -> str:
    if name == "class_token" or name == "encoder.pos_embedding" or name.startswith("conv_proj."):
        return "stem"
    parts = name.split(".")
    if parts[:2] == ["encoder", "layers"]:
        return ".".join(parts[:3])
    return ".".join(parts[:2])  # encoder.ln, heads.pre_logits


STAGE_KEYS: dict[str, Callable[[str], str]] = {
    "resnet": _resnet_key,
    "features": _features_key,
    "vit": _vit_key,
    "other": lambda name: name.split(".")[0],
}


def torchvision_stage_key(model: nn.Module) -> Callable[[str], str]:
    """Parameter name -> stage name for this torchvision model's family."""
    return STAGE_KEYS[_family(model)]
