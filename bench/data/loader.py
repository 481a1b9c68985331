"""Batches made on the training device. The whole split sits there as uint8 once; each batch
is an index, one gather (crop + flip together), optional AutoAugment, and an in-place normalise,
so the input pipeline costs a few ms per batch instead of a DataLoader's worker processes."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from bench.recipe.schema import AugmentConfig


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (seed, epoch), so epoch e is the same whenever it is replayed."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 1) % (2**63)


class DeviceLoader:
    """Iterates ``(x float32 N×3×H×W, y int64 N)`` on ``device``.

    Iterating uses epoch ``e`` (set with ``set_epoch``; without it, epochs count 0, 1, 2, ...
    across iterations). Order and augmentation depend only on (seed, epoch).
    """

    autoaugment_chunk = 16  # images sharing one AutoAugment draw; smaller = more variety, slower

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        shuffle: bool,
        drop_last: bool,
        augment: AugmentConfig | None,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int | None = None,
        seed: int = 0,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {images.dtype} {tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device, non_blocking=True)
        self.labels = labels.to(self.device, torch.int64, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.image_size = image_size
        self.seed = seed
        self.num_images = len(self.labels)
        self._epoch = 0
        self.memory_format = torch.contiguous_format  # channels_last (a trick) sets it for the inputs
        shape = (1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        # (x/255 - mean) / std  ==  x * scale + shift: two in-place passes after one conversion
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t
        self._gen = torch.Generator(device=self.device)
        self._cpu_gen = torch.Generator()  # AutoAugment draws its ops from the CPU RNG
        self._autoaugment = None
        if augment is not None and augment.autoaugment:
            from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

            self._autoaugment = AutoAugment(AutoAugmentPolicy(augment.autoaugment))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_images // self.batch_size
        return math.ceil(self.num_images / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The next iteration yields epoch ``epoch``'s order and augmentation."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        self._gen.manual_seed(epoch_seed(self.seed, epoch))
        self._cpu_gen.manual_seed(epoch_seed(self.seed, epoch))
        n = self.num_images
        if self.shuffle:
            order = torch.randperm(n, generator=self._gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self._batch(self.images[index]), self.labels[index]

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        aug = self.augment
        if aug is not None and (aug.crop_padding or aug.flip):
            x = self._crop_flip(x, aug.crop_padding, aug.flip)
        if self._autoaugment is not None:
            x = self._auto_augment(x)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=False)
        x = x.float().mul_(self._scale).add_(self._shift)  # addcmul with broadcasting is ~20x slower
        return (
            x
            if self.memory_format == torch.contiguous_format
            else x.contiguous(memory_format=self.memory_format)
        )

    def _crop_flip(self, x: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
        """Random crop from the zero-padded batch and random horizontal flip, for every image at
        once: each output pixel's source index is computed, then read with one gather."""
        n, c, h, w = x.shape
        hp, wp = h + 2 * pad, w + 2 * pad
        if pad:
            x = F.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=self._gen, device=self.device)
            dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=self._gen, device=self.device)
        else:
            dy = dx = torch.zeros((n, 1), dtype=torch.int64, device=self.device)
        rows = dy + torch.arange(h, device=self.device)  # n×h
        cols = torch.arange(w, device=self.device).expand(n, w)
        if flip:
            flipped = torch.rand((n, 1), generator=self._gen, device=self.device) < 0.5
            cols = torch.where(flipped, cols.flip(1), cols)
        cols = dx + cols  # n×w
        index = (rows.unsqueeze(2) * wp + cols.unsqueeze(1)).view(n, 1, h * w).expand(n, c, h * w)
        return x.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)

    def _auto_augment(self, x: torch.Tensor) -> torch.Tensor:
        """AutoAugment on uint8, one policy draw per chunk of images, seeded from the epoch."""
        seed = int(torch.randint(2**62, (1,), generator=self._cpu_gen))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            parts = [self._autoaugment(part) for part in x.split(self.autoaugment_chunk)]
        return torch.cat(parts)
