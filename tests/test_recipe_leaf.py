"""The recipe package is a leaf: reading, expanding and quick-validating a recipe (what
``bench run --dry-run`` does) imports neither torch, timm, torchvision nor optuna."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "timm", "torchvision", "optuna")
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy libraries it left imported."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


def test_loading_and_expanding_a_recipe_imports_no_heavy_library():
    code = (
        "import bench.recipe\n"
        "from bench.recipe.load import load_recipe\n"
        "loaded = load_recipe('recipes/cifar10_resnet.yaml')\n"
        "assert len(loaded.variants) > 1"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_quick_validation_of_every_shipped_recipe_imports_no_heavy_library(path):
    code = (
        "from bench.validate.recipe import load_validated\n"
        f"loaded = load_validated({str(path)!r}, full=False)\n"
        "assert loaded.variants"
    )
    assert heavy_modules_after(code) == []


def test_dry_run_command_imports_no_heavy_library(tmp_path):
    code = (
        "import contextlib, io\n"
        "from bench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['run', 'recipes/smoke.yaml', '--dry-run', '--results-dir', {str(tmp_path)!r}]) == 0"
    )
    assert heavy_modules_after(code) == []


def test_recipe_package_imports_nothing_above_it():
    """No module of bench/recipe names torch, optuna, components, data, tune or validate."""
    forbidden = ("torch", "timm", "torchvision", "optuna", "bench.components", "bench.data", "bench.tune",
                 "bench.validate", "bench.engine")  # fmt: skip
    for module in (REPO / "bench" / "recipe").glob("*.py"):
        for line in module.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert not words[1].startswith(forbidden), f"{module.name}: {line.strip()}"
