"""ResNet-18 with a CIFAR stem: a 3x3 stride-1 first conv and no max-pool, so 32x32 images keep
their resolution into layer1 (the ImageNet stem's 4x downsampling throws most of it away). This
is the network of the classic ~95% CIFAR-10 ResNet-18 results; it is timm's ResNet otherwise, so
stages, heads and freezing work as for any timm ResNet."""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.errors import RecipeError


def resnet18_cifar(num_classes: int, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm`` resnet18 with the stem swapped for ``conv3x3(3, 64, stride=1)`` and no max-pool."""
    if pretrained:
        raise RecipeError(
            "resnet18_cifar has no pretrained weights (ImageNet weights expect the 7x7 stride-2 stem); "
            "set pretrained: false, or start from a file a bench run saved with model.weights",
            key="model.pretrained",
        )
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, **kwargs)
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as timm inits convs
    model.maxpool = nn.Identity()
    return model
