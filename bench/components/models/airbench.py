"""The airbench94 network (Keller Jordan, github.com/KellerJordan/cifar10-airbench), the
fastest known route to 94% on CIFAR-10, rebuilt as a bench model so its recipe can be varied
like any other:

    whiten   2x2 conv, 3 -> 24 channels, weights frozen at the PCA whitening of input patches
    block1-3 conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (64, 256, 256 wide)
    head     max-pool 3 -> Linear(256, classes, no bias), logits scaled by 1/9

Differences from the original, and why:
  - airbench whitens from 5,000 un-augmented training images before step 1; bench models never
    see the data before training, so the whitening is computed from the first training batch
    (1,024 augmented images in the speedrun recipe; a 12x12 patch covariance is well estimated
    by either). Loaded weights that were already whitened are kept.
  - airbench trains the whitening bias for 3 epochs, then freezes it; here it trains throughout.
  - airbench gives BatchNorm biases a 64x learning rate (``bias_scaler``) through a second param
    group; here the bias is stored divided by sqrt(64) = 8 and multiplied back in the forward
    pass, which under SGD (momentum and weight decay included) is the same update, so bench's
    ordinary param groups reproduce it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import RecipeError


class ScaledBiasBatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a bias whose effective learning rate under SGD is
    ``bias_lr_scale`` times the group's: bias = sqrt(bias_lr_scale) * stored parameter."""

    def __init__(self, channels: int, momentum: float = 0.6, bias_lr_scale: float = 64.0):
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)  # airbench's momentum is torch's 1-m
        self.weight.requires_grad_(False)
        self.bias_factor = bias_lr_scale**0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias * self.bias_factor,
            self.training, self.momentum, self.eps,
        )  # fmt: skip


class IdentityInitConv(nn.Conv2d):
    """3x3 'same' conv without bias whose first ``in_channels`` filters start as the identity
    (an implicit residual path, as in airbench)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__(channels_in, channels_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


class WhiteningConv(nn.Conv2d):
    """A frozen conv whose filters whiten ``kernel_size`` patches (+/- each eigenvector scaled
    by 1/sqrt(eigenvalue + eps)); initialised once, from the first batch seen in training mode."""

    def __init__(self, channels_in: int = 3, kernel_size: int = 2, eps: float = 5e-4):
        width = 2 * channels_in * kernel_size**2
        super().__init__(channels_in, width, kernel_size=kernel_size, padding=0, bias=True)
        self.weight.requires_grad_(False)
        self.eps = eps
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._checked = False  # Python-side cache of ``initialized``: no device read per step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._checked:
            self._init_once(x)
        return super().forward(x)

    @torch.compiler.disable
    def _init_once(self, x: torch.Tensor) -> None:
        if not bool(self.initialized):  # one device read, once per model
            self.init_from(x)
        self._checked = True

    @torch.no_grad()
    def init_from(self, images: torch.Tensor) -> None:
        c, (h, w) = images.shape[1], self.kernel_size
        with torch.autocast(images.device.type, enabled=False):
            patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
            covariance = patches.T @ patches / len(patches)
            eigenvalues, eigenvectors = torch.linalg.eigh(covariance, UPLO="U")
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        scaled = (eigenvectors / torch.sqrt(eigenvalues + self.eps).unsqueeze(1)).reshape(-1, c, h, w)
        self.weight.copy_(torch.cat((scaled, -scaled)).to(self.weight.dtype))
        self.initialized.fill_(True)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._checked = False  # re-read the loaded flag on the next training step


class ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, bn_momentum: float, bias_lr_scale: float):
        super().__init__()
        self.conv1 = IdentityInitConv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaledBiasBatchNorm(channels_out, bn_momentum, bias_lr_scale)
        self.conv2 = IdentityInitConv(channels_out, channels_out)
        self.norm2 = ScaledBiasBatchNorm(channels_out, bn_momentum, bias_lr_scale)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirBench94(nn.Module):
    """Stages for freezing and per-layer LR: whiten (stem), block1, block2, block3, head."""

    def __init__(
        self,
        num_classes: int = 10,
        base_width: int = 64,
        whiten_kernel: int = 2,
        scaling_factor: float = 1 / 9,
        bn_momentum: float = 0.6,
        bias_lr_scale: float = 64.0,
    ):
        super().__init__()
        widths = (base_width, 4 * base_width, 4 * base_width)
        self.whiten = WhiteningConv(3, whiten_kernel)
        self.block1 = ConvGroup(self.whiten.out_channels, widths[0], bn_momentum, bias_lr_scale)
        self.block2 = ConvGroup(widths[0], widths[1], bn_momentum, bias_lr_scale)
        self.block3 = ConvGroup(widths[1], widths[2], bn_momentum, bias_lr_scale)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scaling_factor = scaling_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))
        x = self.pool(self.block3(self.block2(self.block1(x))))
        return self.head(x.flatten(1)) * self.scaling_factor


def airbench94(num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    if pretrained:
        raise RecipeError(
            "airbench94 has no pretrained weights; set pretrained: false (or model.weights: PATH)",
            key="model.pretrained",
        )
    return AirBench94(num_classes=num_classes, **kwargs)
