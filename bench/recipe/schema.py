"""The typed recipe schema: the shape of a recipe. Every key is consumed or rejected
(``extra="forbid"``). This module is part of the torch-free recipe leaf: component names and
their arguments are checked against the registries by ``bench.validate.recipe``, a layer above both."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from bench.recipe.base import ComponentConfig, Strict, check_name
from bench.recipe.tune import TuneConfig

# What runs, exactly: fp32 turns TF32 off, tf32 turns it on (CUDA Ampere or newer), the AMP modes
# autocast to fp16 (with a GradScaler) or bf16 with TF32 off for what stays in fp32.
Precision = Literal["fp32", "tf32", "amp_fp16", "amp_bf16"]
# Characters that must not reach a path component: separators and control characters.
_PATH_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class AugmentConfig(Strict):
    """Augmentation done on the batch, on the training device."""

    crop_padding: NonNegativeInt = Field(4, description="random-crop padding in pixels; 0 turns cropping off")
    flip: bool = Field(True, description="random horizontal flip")
    autoaugment: Literal["cifar10", "imagenet", "svhn"] | None = Field(
        None, description="torchvision AutoAugment policy applied per batch"
    )


class NormalizeStats(Strict):
    mean: list[float] = Field(min_length=3, max_length=3, description="per channel, in [0, 1] units")
    std: list[float] = Field(min_length=3, max_length=3)

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if any(s <= 0 for s in std):
            raise ValueError("every std must be > 0")
        return std


MAX_SEED = 2**32 - 1


class DataConfig(Strict):
    name: str = Field("cifar10", description="registered data set name or 'package.module:function'")
    root: str | None = Field(None, description="data directory; default $BENCH_DATA_DIR, else data/")
    classes: list[str] | list[int] | None = Field(
        None, description="keep only these classes (names or indices)"
    )
    subset: PositiveInt | None = Field(None, description="train images, drawn reproducibly")
    test_subset: PositiveInt | None = Field(None, description="test images, drawn reproducibly")
    subset_seed: int = 0
    val_size: NonNegativeInt | float = Field(
        0, description="validation images carved from train (count or fraction)"
    )
    val_seed: int = 0

    @field_validator("classes")
    @classmethod
    def _two_or_more(cls, classes: list | None) -> list | None:
        if classes is not None and len(classes) < 2:  # every prediction right: test/acc 1.0 for any trick
            raise ValueError(
                f"{classes} lists {len(classes)} class(es): nothing to tell apart; list two or more"
            )
        return classes

    image_size: PositiveInt | None = Field(None, description="resize batches to this size on the device")
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt = 512
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    normalize: Literal["auto", "train", "pretrained"] | NormalizeStats = Field(
        "auto",
        description="input statistics: 'pretrained' (the start weights' own: timm/torchvision pretrained_cfg, "
        "or the statistics a bench run saved beside its weights), 'train' (this train split's), explicit "
        "{mean, std}, or 'auto' (pretrained when the start weights carry statistics, else train)",
    )

    @field_validator("val_size")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if isinstance(value, float) and not 0.0 <= value < 1.0:
            raise ValueError("a fractional val_size must be in [0, 1); use an integer for a count")
        return value


class ModelConfig(Strict):
    name: str = Field(
        "test_resnet", description="a timm model name, 'torchvision:resnet18', or 'pkg.mod:factory'"
    )
    pretrained: bool = Field(
        False, description="use the library's pretrained weights (downloads on first use)"
    )
    weights: str | None = Field(None, description="local state-dict file to start from (head is replaced)")
    num_classes: PositiveInt | None = Field(None, description="default: number of classes in the data")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for the model factory")


class LossConfig(ComponentConfig):
    """A loss with arguments: ``{name: focal, gamma: 2.0}``; the other keys go to the loss (checked
    against its signature). ``train.label_smoothing`` reaches the losses that take it."""

    name: str = Field("cross_entropy", description="registered loss name or 'package.module:Name'")


class OptimizerConfig(ComponentConfig):
    """Optimizer name, base LR and per-layer LR shape; other keys go to the torch class."""

    name: str = "sgd"
    lr: PositiveFloat = 0.1
    weight_decay: NonNegativeFloat = 5e-4
    no_decay_norm_bias: bool = Field(True, description="no weight decay for norm and bias parameters")
    head_lr_mult: PositiveFloat = Field(1.0, description="LR multiplier for the classifier head")
    layer_decay: float = Field(
        1.0, gt=0.0, le=1.0, description="LR factor per stage, counted down from the head"
    )


class SchedulerConfig(ComponentConfig):
    """LR scheduler name plus its torch arguments; training-length arguments get defaults."""

    name: str = "constant"
    warmup_epochs: NonNegativeFloat = Field(
        0.0, description="linear warm-up length in epochs (fractions allowed)"
    )
    warmup_start_factor: float = Field(0.1, gt=0.0, le=1.0)
    interval: Literal["epoch", "step"] = Field(
        "epoch",
        description="per-epoch schedules (cosine, step, multistep, exponential, lambda, constant, linear, polynomial, "
        "constant_lr, and sequential/chained of them): anneal once "
        "per epoch, or smoothly per optimizer step over the same epochs",
    )


class SWAConfig(Strict):
    """The SWA LR is given relative to the variant's own base LR (``lr_factor``), or absolute
    (``lr``): one absolute value on an axis means a cut for SGD and a rise for AdamW."""

    start_epoch: NonNegativeInt = Field(description="first epoch (0-based) whose weights are averaged")
    lr_factor: PositiveFloat | None = Field(
        None,
        description="SWALR target as a fraction of the variant's base LR (optimizer.lr); every param group "
        "anneals to lr_factor times its own LR (optimizer.lr x head_lr_mult or layer_decay ** depth)",
    )
    lr: PositiveFloat | None = Field(
        None,
        description="SWALR target LR of the recipe's base LR, absolute (or give lr_factor); every param group "
        "keeps its ratio to it, so a group at 10x the base LR anneals to 10x swa.lr",
    )
    anneal_epochs: PositiveInt = 1
    anneal_strategy: Literal["cos", "linear"] = "cos"

    @model_validator(mode="after")
    def _one_lr(self) -> SWAConfig:
        if (self.lr is None) == (self.lr_factor is None):
            given = "both" if self.lr is not None else "neither"
            raise ValueError(
                f"swa needs exactly one of lr_factor (relative to the base LR, e.g. 0.2) or lr (absolute); "
                f"{given} given"
            )
        return self


class EMAConfig(Strict):
    """Exponential moving average of the weights: the model the variant delivers (scored as ``test/acc``,
    exported); the raw weights' accuracy is kept as ``test/acc_raw``."""

    decay: float = Field(0.999, gt=0.0, lt=1.0, description="per update: ema = decay * ema + (1 - decay) * w")
    every: PositiveInt = Field(1, description="update after every N optimizer steps")


class CheckpointConfig(Strict):
    every: NonNegativeInt = Field(1, description="checkpoint every N epochs; 0 turns checkpoints off")
    keep_best: bool = False


class TrainConfig(Strict):
    epochs: PositiveInt = 10
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    precision: Precision = "fp32"
    freeze: NonNegativeInt = Field(0, description="freeze the first N stages (stem first)")
    swa: SWAConfig | None = None
    grad_clip: PositiveFloat | None = Field(None, description="clip the global gradient norm to this value")
    loss: str | LossConfig = Field(
        "cross_entropy",
        description="loss name (registered, or 'package.module:Name'), or {name: ..., <argument>: value}",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    channels_last: bool = False
    ema: EMAConfig | None = None
    compile: bool | str = Field(
        False, description=f"torch.compile the model: false, true, or a mode ({', '.join(COMPILE_MODES)})"
    )
    tta: Literal["none", "flip"] = Field("none", description="test-time augmentation at evaluation")
    cudnn_benchmark: bool = Field(True, description="let cuDNN pick the fastest kernels (CUDA; recorded)")
    warmup_steps: NonNegativeInt = Field(5, description="steps excluded from the throughput measurement")
    test_every_epoch: bool = Field(
        True, description="evaluate the test set every epoch (else only after the last)"
    )
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
            raise ValueError("device must be one of: auto, cpu, cuda, cuda:N, mps")
        return device

    @field_validator("compile")
    @classmethod
    def _compile_mode(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value not in COMPILE_MODES:
            raise ValueError(f"compile must be true, false or one of: {', '.join(COMPILE_MODES)}")
        return value

    @model_validator(mode="after")
    def _swa_fits(self) -> TrainConfig:
        if self.swa is not None:
            if self.swa.start_epoch >= self.epochs:
                raise ValueError(
                    f"swa.start_epoch ({self.swa.start_epoch}) must be < epochs ({self.epochs}): SWA averages "
                    f"the epochs from its start on; set train.epochs to at least {self.swa.start_epoch + 1}"
                )
            if self.scheduler.name == "plateau":
                raise ValueError("swa with the plateau scheduler is not supported: SWALR takes over the LR")
            if self.ema is not None:
                # a variant delivers one model, scored and exported as its result
                raise ValueError("swa and ema deliver different models; a variant may turn on one of them")
        return self


class TrackingConfig(Strict):
    uri: str | None = Field(
        None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else results/mlflow.db"
    )
    experiment: str | None = Field(None, description="MLflow experiment; default the recipe name")
    system_metrics: bool | None = Field(
        None,
        description="log MLflow system metrics (CPU/GPU utilisation, memory, power) per variant; "
        "default: on when training on CUDA",
    )

    @field_validator("experiment")
    @classmethod
    def _safe(cls, name: str | None) -> str | None:
        """The experiment also names a folder of artifacts: it must not point outside the store."""
        if name is not None and (
            not name or name != name.strip() or ".." in name or _PATH_UNSAFE.search(name)
        ):
            raise ValueError(
                "experiment must be a non-empty name without '/', '\\', '..', control characters or "
                "leading/trailing spaces"
            )
        return name


class ReportConfig(Strict):
    """How ``bench report`` judges differences; it does not change what trains."""

    min_effect: PositiveFloat = Field(
        0.005, description="accuracy difference worth detecting; the report gives the seeds needed for it"
    )
    contention_threshold: float = Field(
        0.25, gt=0.0, le=1.0,
        description="a run whose timed training steps saw other processes use more than this share of its "
        "cores' CPU time (or another process compute on its GPU) is marked bench.speed_contaminated: its "
        "speed and time numbers measure the machine's load as much as the variant",
    )  # fmt: skip


class RecipeBody(Strict):
    """One fully resolved training setup: what a single variant runs."""

    name: Annotated[str, AfterValidator(lambda name: check_name(name, "name"))]
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    baseline: str | None = Field(None, description="variant name (without seed) reports compare against")
    target_acc: float | None = Field(
        None, gt=0.0, le=1.0, description="reports give time to this test accuracy"
    )
    tune: TuneConfig | None = Field(None, description="Optuna study settings (bench tune)")
    # exclude=True: report settings stay out of model_dump, so out of run keys and run params
    report: ReportConfig = Field(
        default_factory=ReportConfig, exclude=True, description="bench report settings"
    )

    @model_validator(mode="after")
    def _decisions_on_validation(self) -> RecipeBody:
        """Anything that decides during training (plateau LR cuts, the best checkpoint) needs a
        validation split: deciding on the test set would leak it into the comparison."""
        no_val = not self.data.val_size
        if no_val and self.train.scheduler.name == "plateau":
            raise ValueError(
                "data.val_size: the plateau scheduler decides on a metric and needs a validation split "
                "(set data.val_size to a count or fraction); it never steps on test accuracy"
            )
        if no_val and self.train.checkpoint.keep_best:
            raise ValueError(
                "data.val_size: train.checkpoint.keep_best selects an epoch and needs a validation split "
                "(set data.val_size); it never selects on test accuracy"
            )
        return self


class Recipe(RecipeBody):
    """A recipe file: a base setup, the seeds, and a matrix of variants."""

    seeds: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="one run per seed; a seed drives every random stream (initialisation, data order, "
        "augmentation) unless init_seeds/data_seeds split them off",
    )
    init_seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="crossed with seeds: the stream for model initialisation and every other draw from "
        "the global RNGs (dropout); unset, it follows seed",
    )
    data_seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="crossed with seeds: the stream for data order and augmentation; unset, it follows seed",
    )
    matrix: dict[str, Any] = Field(
        default_factory=dict, description="dotted key -> list of values; exclude/include"
    )

    @field_validator("seeds", "init_seeds", "data_seeds")
    @classmethod
    def _unique(cls, seeds: list[int] | None, info) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"{info.field_name} must be unique")
        bad = [s for s in seeds or () if not 0 <= s <= MAX_SEED]  # NumPy's seed range: runs failed on it
        if bad:
            raise ValueError(f"{bad[0]} is not a seed: seeds are 0 .. 2**32 - 1")
        return seeds

    @model_validator(mode="after")
    def _streams(self) -> Recipe:
        if self.init_seeds is not None and self.data_seeds is not None and len(self.seeds) > 1:
            raise ValueError(
                "seeds: with both init_seeds and data_seeds set, seed drives no stream; list one seed "
                "(the runs are init_seeds × data_seeds)"
            )
        return self
