"""Loss registry. A loss is built with the recipe's arguments (``train.loss: {name: focal, gamma:
2}``) and, when its constructor takes it, ``label_smoothing``; the label-smoothing trick sets the
same attribute, so a loss that takes it keeps the recipe's value either way."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.components.registry import Registry
from bench.components.signature import allowed_kwargs, check_kwargs

LOSSES: Registry[Any] = Registry("loss", {"cross_entropy": nn.CrossEntropyLoss})


def _targets(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """One-hot targets with ``label_smoothing`` of the mass spread over all classes (as
    ``nn.CrossEntropyLoss`` does)."""
    n = logits.shape[1]
    onehot = F.one_hot(target, n).to(logits.dtype)
    return onehot * (1.0 - label_smoothing) + label_smoothing / n if label_smoothing else onehot


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017), multi-class: ``-sum_c q_c (1 - p_c)^gamma log p_c`` averaged over
    the batch, with ``q`` the (smoothed) one-hot target. ``gamma=0`` is cross-entropy; a larger gamma
    down-weights the examples the model already gets right."""

    def __init__(self, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal loss: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        q = _targets(logp, target, self.label_smoothing)
        weight = (1.0 - logp.exp()).pow(self.gamma) if self.gamma else 1.0
        return -(q * weight * logp).sum(dim=1).mean()


@LOSSES.register("dice")
class DiceLoss(nn.Module):
    """Soft Dice loss over the batch: ``1 - mean_c (2 sum_i p_ic q_ic + smooth) / (sum_i p_ic +
    sum_i q_ic + smooth)`` with ``p`` the softmax and ``q`` the (smoothed) one-hot target; for
    imbalanced classes, every class counts alike whatever its frequency."""

    def __init__(self, smooth: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        if smooth < 0:
            raise ValueError(f"dice loss: smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits.float(), dim=1)
        q = _targets(p, target, self.label_smoothing)
        inter = (p * q).sum(dim=0)
        dice = (2.0 * inter + self.smooth) / (p.sum(dim=0) + q.sum(dim=0) + self.smooth)
        return 1.0 - dice.mean()


def loss_spec(loss: Any) -> tuple[str, dict[str, Any]]:
    """``train.loss`` (a name, or a ``LossConfig``) as (name, arguments)."""
    return (loss, {}) if isinstance(loss, str) else (loss.name, loss.kwargs)


def takes_label_smoothing(component: Any) -> bool:
    allowed = allowed_kwargs(component)
    return allowed is None or "label_smoothing" in allowed


def check_loss(loss: Any, label_smoothing: float) -> None:
    """The loss class or factory ``loss`` names, with its arguments bound to its signature: a
    misspelt argument, a ``label_smoothing`` the loss cannot take, or arguments it refuses fail
    here (exit 2) rather than inside a recorded run."""

    name, kwargs = loss_spec(loss)
    component = LOSSES.get(name)
    if not callable(component):
        raise ValueError(f"loss '{name}' is not a class or function (a loss is built as {name}(**arguments))")
    if "label_smoothing" in kwargs:
        raise ValueError("set label smoothing as train.label_smoothing (the trick), not as a loss argument")
    check_kwargs(component, kwargs, what=f"loss '{name}'", skip=("label_smoothing",))
    no_smoothing = (
        f"train.label_smoothing: loss '{name}' does not take label_smoothing; a loss used with label "
        "smoothing must accept label_smoothing= in its constructor (or set train.label_smoothing: 0)"
    )
    if label_smoothing and not takes_label_smoothing(component):
        raise ValueError(no_smoothing)
    try:
        built = build_loss(loss, label_smoothing)
    except Exception as exc:  # noqa: BLE001 - a user's loss may raise anything
        if label_smoothing and isinstance(exc, TypeError) and "label_smoothing" in str(exc):
            # a constructor taking **kwargs it does not accept (nn.Module's own) hides it from the signature
            raise ValueError(no_smoothing) from None
        raise ValueError(f"cannot build loss '{name}' with {kwargs}: {type(exc).__name__}: {exc}") from None
    try:  # the contract: loss(logits [batch, classes], targets [batch] of class indices) -> scalar
        out = built(torch.zeros(2, 3), torch.tensor([0, 2]))
        ok = isinstance(out, torch.Tensor) and out.numel() == 1
    except Exception as exc:  # noqa: BLE001
        out, ok = f"{type(exc).__name__}: {exc}", False
    if not ok:
        raise ValueError(
            f"loss '{name}' must be called as loss(logits [batch, classes], targets [batch] of class "
            f"indices) and return a scalar tensor; on a test batch it gave {str(out)[:200]}"
        )


def build_loss(loss: Any, label_smoothing: float = 0.0) -> nn.Module:
    """``loss`` built with its arguments, and ``label_smoothing`` when it takes it."""
    name, kwargs = loss_spec(loss)
    component = LOSSES.get(name)
    if takes_label_smoothing(component) and (label_smoothing or allowed_kwargs(component) is not None):
        kwargs = {**kwargs, "label_smoothing": label_smoothing}
    return component(**kwargs)
