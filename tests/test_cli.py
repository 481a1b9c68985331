"""The command line: fast help, clean errors with exit code 2, dry runs that train nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import bench_cli as bench
from tests.recipes import tiny_recipe, write_recipe


def test_help_is_fast_and_imports_no_heavy_library():
    code = "import sys; from bench.cli import main; import contextlib, io\n" \
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n" \
        "print(sorted(m for m in ('torch', 'mlflow', 'optuna', 'pandas') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_recipe_exits_2_with_a_message_and_records_nothing(tmp_path, tiny_image_folder):
    path = write_recipe(
        tmp_path / "bad.yaml", tiny_recipe(tiny_image_folder, **{"train.scheduler.name": "cosin"})
    )
    results = tmp_path / "results"
    proc = bench("run", str(path), "--results-dir", str(results))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "train.scheduler" in proc.stderr and "Traceback" not in proc.stderr
    assert not results.exists()


def test_dry_run_lists_the_variants(tmp_path, tiny_image_folder):
    recipe = tiny_recipe(
        tiny_image_folder, matrix={"train.freeze": [0, 1], "train.precision": ["fp32", "amp_bf16"]}
    )
    path = write_recipe(tmp_path / "r.yaml", recipe)
    proc = bench("run", str(path), "train.epochs=1", "--dry-run", "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    assert "4 runs" in proc.stdout and "freeze=1,precision=amp_bf16,seed=0" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_ls_lists_each_kind_from_the_registries(capsys):
    from bench.cli import main

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for kind in ("schedulers:", "optimizers:", "models:", "datasets:", "losses:", "tricks:"):
        assert kind in out
    assert "onecycle" in out and "torch.optim.lr_scheduler.OneCycleLR" in out and "cross_entropy" in out
    assert "tiny" in out and "imagefolder" in out
    # each scheduler's step policy in words (it read "steps per batch_fractional", "steps per plateau")
    assert "(steps per batch, in fractional epochs" in out and "(steps on the validation metric" in out
    assert "_fractional" not in out


def test_ls_filters_by_glob_and_lists_timm_and_torchvision_models(capsys):
    from bench.cli import main

    assert main(["ls", "optimizers", "adam*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["adam", "adamw"]
    assert main(["ls", "models", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "resnet101" in out and "torchvision:resnet18" in out and "resnet10t" in out
    assert "vit_" not in out
    # bench's own CIFAR ResNet is no timm model: it was listed as "timm 'bench.components...'"
    assert "resnet18_cifar         bench's factory bench.components.models.cifar_resnet:resnet18_cifar" in out
    assert "timm 'bench." not in out
    assert main(["ls", "model", "no_such_model_*"]) == 0
    assert "nothing matches" in capsys.readouterr().out


def test_ls_unknown_kind_exits_2(capsys):
    from bench.cli import main

    assert main(["ls", "widgets"]) == 2
    assert "allowed: schedulers, optimizers" in capsys.readouterr().err


def test_ls_word_without_wildcards_matches_inside_names(capsys):
    """`bench ls schedulers cos` printed "(nothing matches 'cos')": a plain word now finds cosine."""
    from bench.cli import main

    assert main(["ls", "schedulers", "cos"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["cosine", "cosine_warm_restarts"]


def test_unknown_model_suggests_each_name_once(tmp_path, capsys):
    """`model.name=resnet_18` suggested "resnet18, resnet18, resnetv2_18" (bench's short name and timm's)."""
    from bench.components.models.build import check_model_name

    with pytest.raises(ValueError, match="did you mean") as info:
        check_model_name("resnet_18")
    hint = str(info.value).split("did you mean ")[1].split("?")[0].split(", ")
    assert "resnet18" in hint and len(hint) == len(set(hint)), hint
