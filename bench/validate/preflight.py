"""Checks that validation cannot do and that must pass before anything is recorded: the data
loads, every ``model.weights`` file loads safely and fits its architecture, and the pretrained
weights the runs will start from can be had."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench.errors import BenchError, RecipeError, described
from bench.recipe.load import LoadedRecipe


def preflight(loaded: LoadedRecipe) -> None:
    """Load every distinct data set (missing folder, unreadable or truncated images) and every
    ``model.weights`` file with its ``.json`` sidecar (safely, and fitting its architecture);
    errors name the recipe file and the key."""
    from bench.components.models import build_model
    from bench.components.models.weights import read_weights_meta
    from bench.data.cache import cached_splits
    from bench.validate.averaging import ema_warnings, warn

    seen: set[str] = set()
    averaging: dict[str, list[str]] = {}
    for variant in loaded.variants:
        cfg = variant.body
        data_key = cfg.data.model_dump_json()
        try:
            data = cached_splits(cfg.data)
        except BenchError as exc:
            raise type(exc)(f"{loaded.source}: data: {exc}") from None
        if data_key not in seen:
            seen.add(data_key)
            warn_empty_classes(loaded.source, cfg.data, data)
        n, batch = len(data.train), cfg.data.batch_size  # as the loop: the last partial batch is dropped
        for message in ema_warnings(cfg.train, n // batch if n > batch else 1):
            names = averaging.setdefault(message, [])
            names += [] if variant.group in names else [variant.group]
        if cfg.model.weights:
            model_key = data_key + cfg.model.model_dump_json()
            if model_key in seen:
                continue
            seen.add(model_key)
            try:
                build_model(cfg.model.model_copy(update={"pretrained": False}), data.num_classes)
                read_weights_meta(cfg.model.weights)
            except BenchError as exc:
                text = str(exc)
                prefix = "" if text.startswith("model.weights") else "model.weights: "
                raise type(exc)(f"{loaded.source}: {prefix}{text}") from None
    warn(loaded.source, averaging, len({v.group for v in loaded.variants}))


def warn_empty_classes(source: str, data_cfg, data) -> None:
    """A class with no training image still counts in the test accuracy, which then says less
    than it seems; a warning, not an error, because a tiny subset for a quick check may do it."""
    from bench.data.splits import classes_without_images, subset_text

    missing = classes_without_images(data)
    if missing:
        print(
            f"warning: {source}: {subset_text(data_cfg)} leaves no training image of "
            f"{len(missing)} of {data.num_classes} classes ({', '.join(missing)}): the model never "
            "sees them, but the test set scores them; raise data.subset or narrow data.classes",
            file=sys.stderr,
        )


def check_devices(loaded: LoadedRecipe) -> None:
    """Every run of the recipe would be recorded as skipped on this machine (amp_fp16 or
    ``train.device: cuda`` without CUDA, emulated amp_bf16 by default): say so before minutes go into recording nothing."""
    from bench.measure.hardware import cuda_available, skipped_for_device

    message = all_skipped_message(loaded, skipped_for_device(loaded.variants, cuda_available()))
    if message:
        raise RecipeError(message, source=loaded.source)


def all_skipped_message(loaded: LoadedRecipe, skipped: dict[str, list[str]]) -> str | None:
    """Why every run would be skipped (each reason names its key), or None when some would run."""
    if sum(len(names) for names in skipped.values()) < len(loaded.variants):
        return None
    reasons = "; ".join(skipped)
    return (
        f"{reasons}: all {len(loaded.variants)} run(s) would be skipped on this machine, so nothing is "
        "recorded; run it where CUDA (or native bf16) is, override the key (e.g. train.precision=fp32 or "
        "train.device=auto), or pass --record-skips to record them as skipped"
    )


def fetch_pretrained(variants: list, source: str, note: Callable[[str], None]) -> None:
    """Fetch each distinct ``model.pretrained`` model's weights once, in this process, before any
    of ``variants`` starts: the runs then read them from the library's cache. Why here: offline,
    the Hugging Face client retries for ~45 s before it gives up; left to each run's own process,
    that wait and the same failure repeat for every run (108 runs of cifar10_resnet: over an hour
    of failed runs). A failure raises CheckpointError (exit 2) naming ``source``; nothing trains."""
    from bench.components.models import build_model
    from bench.data.cache import cached_splits

    seen: set[str] = set()
    for variant in variants:
        model = variant.body.model
        key = model.model_dump_json(include={"name", "kwargs"})
        if not model.pretrained or key in seen:
            continue
        seen.add(key)
        note(
            f"fetching the pretrained weights of '{model.name}' once, before the runs (the cache's if there)"
        )
        num_classes = model.num_classes or cached_splits(variant.body.data).num_classes
        try:
            build_model(model.model_copy(update={"weights": None}), num_classes)
        except BenchError as exc:
            raise type(exc)(f"{source}: {exc}") from None
        except (OSError, RuntimeError, ValueError) as exc:  # e.g. timm: "No pretrained weights exist"
            raise RecipeError(f"cannot load the pretrained weights of '{model.name}': {described(exc)}",
                              source=source, key="model.pretrained") from None  # fmt: skip
