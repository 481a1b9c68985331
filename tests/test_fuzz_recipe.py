"""Fuzzing the recipe loader and the validation layer: whatever the text or structure,
``load_validated`` returns a valid recipe or raises a ``BenchError`` (``RecipeError`` mostly),
never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from bench.recipe.load import LoadedRecipe
from bench.validate.recipe import load_validated

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
KEYS = ["name", "data", "model", "train", "matrix", "seeds", "epochs", "optimizer", "scheduler", "lr",
        "swa", "checkpoint", "every", "root", "batch_size", "test_resnet", "sgd", "cosine", "exclude",
        "include", "train.epochs", "train.optimizer.lr", "kwargs", "tune", "~x", "", "1e-3"]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.sampled_from(["test_resnet", "sgd", "cosine", "imagefolder", "1e-3", "lambda x: x", "!!python/none", "*a", ""]),
    st.text(max_size=12),
)  # fmt: skip
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.booleans())
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)
YAML_BITS = ["name: tiny\n", "train:\n", "  epochs: ", "matrix:\n", "  train.optimizer.lr: [", "]", "&a ", "*a",
             "!!python/object:os.system ", "{", "}", "- ", "\t", ": ", "1e-3", "seeds: [0, 0]\n", "'", '"', "\n",
             "model: {name: test_resnet}\n", "? ", "%YAML 1.1\n", "---\n", "...\n", "!!binary ", "<<: *a\n"]  # fmt: skip
yaml_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=30).map("".join),
)
BASE = {
    "name": "tiny",
    "model": {"name": "test_resnet"},
    "train": {"epochs": 1, "optimizer": {"name": "sgd", "lr": 0.1}},
}


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_bytes(text.encode("utf-8", "replace"))
        try:
            loaded = load_validated(path)
        except BenchError:
            return
        assert isinstance(loaded, LoadedRecipe) and loaded.variants
        for variant in loaded.variants:
            assert len(variant.run_key) == 16


@FUZZ
@given(yaml_texts)
def test_random_yaml_text(text):
    check(text)


@FUZZ
@given(trees)
def test_random_nested_document(tree):
    check(yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(st.dictionaries(st.sampled_from(["data", "model", "train", "matrix", "seeds", "tune", "tracking",
                                        "baseline", "target_acc", "description"]), trees, max_size=3),
       st.dictionaries(st.sampled_from(["epochs", "optimizer", "scheduler", "swa", "checkpoint", "precision",
                                        "grad_clip", "freeze", "device"]), trees, max_size=3))  # fmt: skip
def test_valid_recipe_with_random_parts(top, train):
    doc = {**BASE, **top}
    if isinstance(doc.get("train"), dict):
        doc["train"] = {**doc["train"], **train}
    check(yaml.safe_dump(doc, allow_unicode=True))
