"""Checks that validation cannot do and that must pass before anything is recorded: the data
loads and every ``model.weights`` file loads safely and fits its architecture."""

from __future__ import annotations

from bench.errors import BenchError, RecipeError
from bench.recipe.load import LoadedRecipe


def preflight(loaded: LoadedRecipe) -> None:
    """Load every distinct data set (missing folder, unreadable or truncated images) and every
    ``model.weights`` file with its ``.json`` sidecar (safely, and fitting its architecture);
    errors name the recipe file and the key."""
    from bench.components.models import build_model
    from bench.components.models.weights import read_weights_meta
    from bench.data.cache import cached_splits

    seen: set[str] = set()
    for variant in loaded.variants:
        cfg = variant.body
        data_key = cfg.data.model_dump_json()
        try:
            data = cached_splits(cfg.data)
        except BenchError as exc:
            raise type(exc)(f"{loaded.source}: data: {exc}") from None
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
