"""Checks that validation cannot do and that must pass before anything is recorded: the data
loads and every ``model.weights`` file loads safely and fits its architecture."""

from __future__ import annotations

from bench.errors import BenchError
from bench.recipe.load import LoadedRecipe


def preflight(loaded: LoadedRecipe) -> None:
    """Check what validation cannot see before anything is recorded or trained: every distinct data
    set loads (missing folder, unreadable or truncated images), and every ``model.weights`` file
    loads safely and fits its architecture. Errors name the recipe file and the key."""
    from bench.components.models import build_model
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
            except BenchError as exc:
                text = str(exc)
                prefix = "" if text.startswith("model.weights") else "model.weights: "
                raise type(exc)(f"{loaded.source}: {prefix}{text}") from None
