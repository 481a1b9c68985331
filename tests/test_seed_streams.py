"""Separate random streams: ``init_seeds`` (initialisation, global RNGs) and ``data_seeds`` (data
order, augmentation) crossed with ``seeds``; a recipe without them keeps its run keys and weights."""

from __future__ import annotations

import pytest
import torch

from bench.components.models import build_model
from bench.engine.state import build_state, seed_everything
from bench.errors import RecipeError
from bench.recipe.load import load_recipe
from bench.recipe.matrix import stable_hash
from bench.tracking.variant_runs import variant_tags
from tests.recipes import tiny_recipe, write_recipe


def weights(state) -> torch.Tensor:
    return torch.cat(
        [p.detach().flatten() for p in state.model.state_dict().values() if p.is_floating_point()]
    )


def first_epoch(state) -> list[torch.Tensor]:
    state.train_loader.set_epoch(0)
    return [x.clone() for x, _ in state.train_loader]


def same_batches(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def crossed(tmp_path_factory, tiny_image_folder):
    recipe = tiny_recipe(tiny_image_folder, **{"data.augment": {"crop_padding": 4, "flip": True}})
    recipe.update(seeds=[0], init_seeds=[0, 1], data_seeds=[0, 1])
    path = write_recipe(tmp_path_factory.mktemp("streams") / "r.yaml", recipe)
    return {v.name: v for v in load_recipe(path).variants}


def test_streams_are_crossed_named_keyed_and_tagged(crossed):
    assert list(crossed) == [
        "seed=0",
        "seed=0,data_seed=1",
        "seed=0,init_seed=1",
        "seed=0,init_seed=1,data_seed=1",
    ]
    assert len({v.run_key for v in crossed.values()}) == 4
    assert len({v.group for v in crossed.values()}) == 1  # one variant, four replicates
    tags = variant_tags(crossed["seed=0,init_seed=1"], "r")
    assert (tags["bench.seed"], tags["bench.init_seed"], tags["bench.data_seed"]) == ("0", "1", "0")
    # a stream equal to its seed follows it: that run is the plain seed=0 run, with its key
    plain = crossed["seed=0"]
    assert plain.init_seed is None and plain.data_seed is None
    assert plain.run_key == stable_hash({"config": plain.config, "seed": 0}, 16)


def test_init_seed_changes_the_weights_not_the_batches(crossed):
    a, b = build_state(crossed["seed=0"]), build_state(crossed["seed=0,init_seed=1"])
    assert not torch.equal(weights(a), weights(b))
    assert same_batches(first_epoch(a), first_epoch(b))


def test_data_seed_changes_the_batches_not_the_weights(crossed):
    a, b = build_state(crossed["seed=0"]), build_state(crossed["seed=0,data_seed=1"])
    assert torch.equal(weights(a), weights(b))
    assert not same_batches(first_epoch(a), first_epoch(b))


def test_a_recipe_without_streams_keeps_its_run_keys_and_weights(tmp_path, tiny_image_folder):
    recipe = write_recipe(tmp_path / "r.yaml", {**tiny_recipe(tiny_image_folder), "seeds": [0, 3]})
    variants = load_recipe(recipe).variants
    assert [v.name for v in variants] == ["seed=0", "seed=3"]
    for v in variants:  # the key bench has always computed: results recorded before stay valid
        assert v.run_key == stable_hash({"config": v.config, "seed": v.seed}, 16)
    state = build_state(variants[1])
    seed_everything(3)  # what seed 3 always meant: the global RNGs seeded, then the model built
    reference = build_model(variants[1].body.model, state.data.num_classes)
    assert torch.equal(weights(state), torch.cat([p.flatten() for p in reference.state_dict().values()
                                                  if p.is_floating_point()]))  # fmt: skip
    assert state.train_loader.seed == 3


def test_every_run_records_both_streams(tmp_path, tiny_image_folder):
    recipe = write_recipe(tmp_path / "r.yaml", {**tiny_recipe(tiny_image_folder), "seeds": [3]})
    tags = variant_tags(load_recipe(recipe).variants[0], "r")
    assert tags["bench.seed"] == tags["bench.init_seed"] == tags["bench.data_seed"] == "3"


def test_both_streams_split_leave_one_seed(tmp_path, tiny_image_folder):
    recipe = {**tiny_recipe(tiny_image_folder), "seeds": [0, 1], "init_seeds": [0, 1], "data_seeds": [2]}
    with pytest.raises(RecipeError, match="init_seeds and data_seeds"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    with pytest.raises(RecipeError, match="unique"):
        load_recipe(write_recipe(tmp_path / "r.yaml", {**recipe, "seeds": [0], "init_seeds": [1, 1]}))


def test_report_pairs_runs_by_all_their_streams():
    from bench.report.fetch import replicate

    assert replicate({"bench.seed": "2"}) == 2  # runs recorded before streams existed
    assert replicate({"bench.seed": "2", "bench.init_seed": "2", "bench.data_seed": "2"}) == 2
    assert replicate({"bench.seed": "2", "bench.init_seed": "5", "bench.data_seed": "2"}) == "2 init=5 data=2"
