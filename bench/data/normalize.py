"""Which statistics normalise the inputs (``data.normalize``).

Weights expect the statistics they were trained with: frozen stages of an ImageNet-pretrained
network expect ImageNet's mean/std, and weights a bench run saved expect the statistics of that
run, saved beside them (``<weights>.json``, see bench/components/models/weights.py). ``auto`` uses
those when the start weights carry them, else the fine-tuning train split's own. What was used
is recorded with the run (tag ``bench.normalize``, a weights path expanded and absolute).
"""

from __future__ import annotations

from typing import Any

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def weights_stats(model_cfg: Any, model: Any) -> tuple[Stats, str] | None:
    """The start weights' own statistics and where they came from, or None."""
    from bench.components.models.stats import pretrained_stats

    stats = pretrained_stats(model_cfg, model)
    if stats is None:
        return None
    if not model_cfg.weights:
        return stats, "pretrained"
    from bench.util.fileio import expand_path

    # the file actually read: ``${BENCH_RESULTS_DIR}/...`` or ``~/...`` means another file elsewhere
    return stats, "weights:" + str(expand_path(model_cfg.weights).resolve())


def resolve(data_cfg: Any, model_cfg: Any, model: Any, train_stats: Stats) -> tuple[Stats, str]:
    """(mean, std) for the loaders and a label for the record (``train``, ``pretrained``,
    ``weights:<path>``, ``explicit``)."""
    choice = data_cfg.normalize
    if not isinstance(choice, str):
        return (tuple(choice.mean), tuple(choice.std)), "explicit"
    if choice == "train":
        return train_stats, "train"
    found = weights_stats(model_cfg, model)
    if found is not None:
        return found
    if choice == "pretrained":
        from bench.errors import RecipeError

        raise RecipeError(
            "data.normalize is 'pretrained' but the start weights carry no statistics (no pretrained_cfg, "
            "no <weights>.json beside model.weights); use 'train' or explicit {mean, std}",
            key="data.normalize",
        )
    return train_stats, "train"
