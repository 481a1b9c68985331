"""First-hour traps, round 4: combined tricks, data-set edges, half-failed studies, other stores.
Each test reproduces what a new user ran and saw, and checks what they should have seen."""

from __future__ import annotations

import pytest

from bench.cli import main
from tests.helpers import store_args
from tests.recipes import tiny_recipe, write_recipe

# --- an MLflow file store -------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["file:///{tmp}/ml runs", "{tmp}/mlruns"])
def test_a_file_tracking_store_is_refused_before_anything_trains(tmp_path, tiny_image_folder, uri, capsys):
    """`bench run smoke_pretrain.yaml --tracking-uri file:///tmp/mlruns` exited 3 with MLflow's
    deprecation notice cut off mid-URL; with MLFLOW_ALLOW_FILE_STORE=true (its way out) every run
    trained, then failed to record: `train/lr/<group>` needs a folder where `train/lr` is a file."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder))
    uri = uri.format(tmp=tmp_path)
    args = ["run", str(path), "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an MLflow file store" in err and "sqlite:///" in err, err
    assert not (tmp_path / "results" / "tiny").exists()


# --- data.subset at its edges ---------------------------------------------------------------------


def test_a_subset_of_one_image_is_refused_before_anything_is_recorded(tmp_path, tiny_image_folder, capsys):
    """`bench run smoke_pretrain.yaml data.subset=1` recorded every seed as failed (exit 1) with
    torch's "Expected more than 1 value per channel when training": bad input, found after recording."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"data.subset": 1}))
    assert main(["run", str(path), *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "data: data.subset=1 leaves 1 training image: a training batch needs at least 2" in err, err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_subset_that_leaves_classes_without_images_warns_naming_them(tmp_path, tiny_image_folder, capsys):
    """`data.subset=3` over five classes trained a 5-way model on three images without a word:
    two classes never seen, yet scored in test/acc."""
    from bench.data.splits import load_splits
    from bench.recipe.schema import DataConfig

    settings = {"train.epochs": 1, "data.subset": 2}
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **settings))
    assert main(["run", str(path), *store_args(tmp_path)]) == 0
    err = capsys.readouterr().err
    splits = load_splits(DataConfig(name="imagefolder", root=str(tiny_image_folder), subset=2))
    seen = set(splits.train.labels.tolist())
    missing = [name for i, name in enumerate(splits.classes) if i not in seen]
    assert len(missing) >= 2 and set(missing) < set(splits.classes)
    assert (
        f"data.subset=2 leaves no training image of {len(missing)} of 4 classes ({', '.join(missing)})" in err
    )


# --- bench report on a study where nothing finished -------------------------------------------------

EXPLODING_LOSS = """
import torch


class Exploding(torch.nn.Module):
    def forward(self, logits, target):
        if logits.requires_grad:  # in training; bench's check of the loss on a test batch passes
            raise RuntimeError("loss exploded")
        return torch.nn.functional.cross_entropy(logits, target)
"""


@pytest.fixture
def isolated_path(monkeypatch):
    """Validation puts the recipe's folder on sys.path and PYTHONPATH: undo it after the test."""
    import os
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("BENCH_IMPORT_PATHS", raising=False)


def test_report_of_a_study_where_every_run_failed_or_was_skipped(
    tmp_path, tiny_image_folder, isolated_path, capsys
):
    """Half failed, half skipped (amp_fp16 on a CPU): the report said "compared against 'None'",
    that the runs "predate bench's env.* tags" (they failed), a noise floor "not measurable here: "
    with no reason, and a summary that never said nothing had finished."""
    (tmp_path / "mylosses_boom.py").write_text(EXPLODING_LOSS)
    recipe = tiny_recipe(
        tiny_image_folder, **{"train.epochs": 1, "train.loss": {"name": "mylosses_boom:Exploding"}}
    )
    recipe.update(baseline="precision=fp32", matrix={"train.precision": ["fp32", "amp_fp16"]})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), *store_args(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["report", str(path), *store_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: no variant has a finished run (the baseline 'precision=fp32' included)" in out, out
    assert "'None'" not in out and "No run finished: there is nothing to compare yet." in out, out
    report = (tmp_path / "results" / "tiny" / "report.md").read_text()
    assert "predate" not in report and "None: no run finished" in report
    assert "not measurable here: no baseline run finished" in report
    assert "| `precision=fp32,seed=0` | 0 | failed | RuntimeError: loss exploded" in report


# --- matrix.exclude entries that exclude nothing -----------------------------------------------------

EXCLUDE_MATRIX = {
    "train.scheduler": [{"name": "cosine"}, {"name": "step", "step_size": 1}],
    "train.freeze": [0, 1],
}


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (
            {"train.scheduler": {"name": "step"}, "train.freeze": 1},
            "train.scheduler: {name: step} is not one",
        ),
        ({"train.freeze": 5}, "train.freeze: 5 is not one of the axis's values"),
    ],
)
def test_an_exclude_entry_off_its_axis_is_refused_naming_the_values(tmp_path, tiny_image_folder, entry, said):
    """`exclude: [{train.scheduler: {name: step}, train.freeze: 1}]` beside the axis value
    `{name: step, step_size: 1}` (the variant is labelled `scheduler=step`) excluded nothing, and
    the cell it meant to drop trained anyway; a typo (`train.freeze: 5`) did the same."""
    from bench.errors import RecipeError
    from bench.recipe.load import load_recipe

    matrix = {**EXCLUDE_MATRIX, "exclude": [entry]}
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, matrix=matrix))
    with pytest.raises(RecipeError, match="excludes nothing") as caught:
        load_recipe(path)
    assert caught.value.key == "matrix.exclude[0]" and said in str(caught.value)
    assert "values: " in str(caught.value)


def test_an_override_into_an_axis_keeps_its_exclude_entries(tmp_path, tiny_image_folder):
    """`bench run r.yaml train.scheduler.warmup_epochs=1` merged the warm-up into every value of the
    scheduler axis but not into the exclude entry naming one of them: the excluded cell came back."""
    from bench.recipe.load import load_recipe

    entry = {"train.scheduler": {"name": "step", "step_size": 1}, "train.freeze": 1}
    matrix = {**EXCLUDE_MATRIX, "exclude": [entry]}
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, matrix=matrix))
    groups = {v.group for v in load_recipe(path, ["train.scheduler.warmup_epochs=1"]).variants}
    assert groups == {"scheduler=cosine,freeze=0", "scheduler=cosine,freeze=1", "scheduler=step,freeze=0"}


# --- a one-seed study's "highest accuracy" line ----------------------------------------------------------


def test_one_seed_per_variant_does_not_claim_overlapping_ranges(tmp_path, capsys):
    """A one-seed trial of a combined recipe: the summary said the best variant was "not told apart
    from `base` by these seeds (their ranges overlap)": one seed has no range, so nothing overlapped."""
    from tests.helpers import log_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_study(uri, "one_seed", {"base": {"acc": [0.592]}, "ema=on": {"acc": [0.624]}})
    args = ["report", "--experiment", "one_seed", "--tracking-uri", uri, "--results-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if "Highest mean final test accuracy" in line)
    assert "ema=on at 0.6240 (1 seed(s)); not told apart from base: one seed gives no range" in best, out


# --- two recipes in one command, the second starting from the first's weights ----------------------


def test_a_second_recipe_whose_weights_the_failed_first_should_write_names_it(
    tmp_path, tiny_image_folder, isolated_path, capsys
):
    """`bench run pre.yaml fine.yaml` (fine starts from pre's weights) with pre's run failed: the
    command exited 2 saying "run the recipe that produces it first", the one it had just run."""
    (tmp_path / "mylosses_boom.py").write_text(EXPLODING_LOSS)
    pre = tiny_recipe(
        tiny_image_folder, "pre", **{"train.epochs": 1, "train.loss": {"name": "mylosses_boom:Exploding"}}
    )
    weights = "${BENCH_RESULTS_DIR}/pre/weights/seed=0.pt"
    fine = tiny_recipe(tiny_image_folder, "fine", **{"train.epochs": 1, "model.weights": weights})
    paths = [str(write_recipe(tmp_path / f"{r['name']}.yaml", r)) for r in (pre, fine)]
    assert main(["run", *paths, *store_args(tmp_path)]) == 1  # a variant failed
    err = capsys.readouterr().err
    assert "seed=0: failed - RuntimeError: loss exploded" in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {paths[1]}: model.weights: file not found"), last
    assert "recipe 'pre', earlier in this command, writes it and did not finish every run" in last, last
    assert "run the recipe that produces it first" not in last


# --- a recipe name with a letter outside ASCII ----------------------------------------------------------


def test_a_non_ascii_name_is_refused_saying_ascii_and_naming_it(tmp_path, tiny_image_folder, capsys):
    """`name: café` was refused with "use only letters, digits, ...": é is a letter, so the message
    contradicted itself, and it did not quote the name it refused."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, name="café"))
    assert main(["run", str(path), "--dry-run", *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "name: name must start with a letter or digit and use only ASCII letters, digits" in err, err
    assert err.rstrip().endswith("got 'café'"), err


# --- a tracking server that is not there ------------------------------------------------------------


def test_a_tracking_server_nothing_answers_fails_at_once(tmp_path, tiny_image_folder, capsys):
    """`bench run r.yaml --tracking-uri http://127.0.0.1:5999` with no server there printed nothing
    for 4.5 minutes (MLflow's HTTP retries with backoff), then failed. Now: at once, saying so."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder))
    start = time.monotonic()
    code = main(
        [
            "run",
            str(path),
            "--results-dir",
            str(tmp_path / "res"),
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
        ]
    )
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 3 and f"nothing answers at 127.0.0.1:{port} (Connection refused)" in err, err
    assert took < 60, took


# --- seeds NumPy refuses, one class --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("seeds=[-1]", "seeds: -1 is not a seed: seeds are 0 .. 2**32 - 1"),
        ("init_seeds=[0,4294967296]", "init_seeds: 4294967296 is not a seed"),
        ("data.classes=[red]", "data.classes: ['red'] lists 1 class(es): nothing to tell apart"),
    ],
)
def test_seeds_out_of_range_and_a_single_class_are_refused_up_front(
    tmp_path, tiny_image_folder, override, said, capsys
):
    """`seeds=[-1]` recorded every run failed with NumPy's "Seed must be between 0 and 2**32 - 1"
    (exit 1); `data.classes=[dog]` trained a one-class model and recorded test/acc 1.0 for every
    variant, a comparison with nothing in it."""
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.epochs": 1}))
    assert main(["run", str(path), override, "--dry-run", *store_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err


def test_narrowing_an_axis_by_override_drops_the_exclude_entries_it_leaves_unmatched(
    tmp_path, tiny_image_folder
):
    """`matrix.train.scheduler=[{name: cosine}]` removes the value an exclude entry names: that entry
    can match nothing now, so it goes (with a note) rather than being refused as a typo."""
    from bench.recipe.load import load_recipe

    entry = {"train.scheduler": {"name": "step", "step_size": 1}, "train.freeze": 1}
    path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, matrix={**EXCLUDE_MATRIX, "exclude": [entry]})
    )
    loaded = load_recipe(path, ["matrix.train.scheduler=[{name: cosine}]"])
    assert {v.group for v in loaded.variants} == {"scheduler=cosine,freeze=0", "scheduler=cosine,freeze=1"}
    assert any("drops 1 matrix.exclude entry(ies)" in note for note in loaded.notes), loaded.notes


# --- the progress line's time left, with runs this machine skips ---------------------------------------


def test_time_left_counts_runs_skipped_for_the_device_at_no_time(
    tmp_path, tiny_image_folder, monkeypatch, capsys
):
    """smoke on a CPU: "[8/18 done, 10 left, ~6m 01s left] precision=amp_fp16,seed=0", then
    "[9/18 done, ~5m 25s left]": each amp_fp16 run, recorded as skipped at once, was counted at the
    mean variant's time (the dry run's estimate already counted it at 0 s)."""
    monkeypatch.setenv("BENCH_FORCE_NO_CUDA", "1")
    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 1, "seeds": [0, 1]})
    recipe["matrix"] = {"train.precision": ["fp32", "amp_fp16"]}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), "--order", "variant", *store_args(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "[2/4 done, the rest skipped here] precision=fp32,seed=1: finished" in err, err


# --- interval: step on a scheduler that cannot take it ---------------------------------------------------


@pytest.mark.parametrize(
    ("scheduler", "said"),
    [
        ("onecycle", "'onecycle' steps per batch already"),
        ("plateau", "'plateau' steps on the validation metric"),
    ],
)
def test_interval_step_refusal_says_how_the_scheduler_steps_in_words(
    tmp_path, tiny_image_folder, scheduler, said
):
    """`train.scheduler={name: onecycle, interval: step}` said "'onecycle' is stepped batch" (and
    "is stepped plateau"): the policy's code name where a sentence was meant."""
    from bench.errors import RecipeError
    from bench.validate.recipe import load_validated

    settings = {"train.scheduler": {"name": scheduler, "interval": "step"}, "data.val_size": 16}
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **settings))
    with pytest.raises(RecipeError) as caught:
        load_validated(path)
    assert said in str(caught.value) and "is stepped" not in str(caught.value), caught.value
