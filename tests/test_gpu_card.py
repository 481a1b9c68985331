"""scripts/gpu_card.py: a clear refusal without a GPU, and (on CPU, tiny) the table it prints from
a real bench run: one row per variant, skipped variants with their reason, ratios to baseline."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.recipe.load import load_raw
from tests.helpers import REPO, this_schema
from tests.recipes import write_recipe

SCRIPT = REPO / "scripts" / "gpu_card.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_card_without_a_gpu_says_so_and_fails():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no CUDA GPU here" in proc.stderr


@pytest.mark.slow
def test_card_table_from_a_tiny_cpu_run(tmp_path, tiny_image_folder):
    overrides = [f"data.root={tiny_image_folder}", "data.name=imagefolder", "data.batch_size=32",
                 "model.name=test_resnet", "train.epochs=2", "seeds=[0]", "train.compile=false",
                 "matrix.train.precision=[fp32, amp_fp16]", "baseline=precision=fp32", "train.warmup_steps=1"]  # fmt: skip
    raw = this_schema(load_raw(REPO / "recipes" / "cifar10_resnet18.yaml", overrides=overrides))
    recipe = write_recipe(tmp_path / "cifar10_resnet18.yaml", raw)
    cmd = [sys.executable, str(SCRIPT), "--recipe", str(recipe), "--results-dir", str(tmp_path / "r"),
           "--device", "cpu", "--target", "0.25"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout[proc.stdout.index("precision x compile card on CPU") :]  # after bench run's summary
    print(out)
    lines = out.strip().splitlines()
    assert "img/s" in lines[1] and "peak MB" in lines[1] and "to 25% s" in lines[1]
    fp32 = next(line for line in lines if line.split()[0] == "precision=fp32")
    assert fp32.split()[1] == "1/1" and " 1.00 " in fp32 + " "  # the baseline's ratio to itself
    fp16 = next(line for line in lines if line.split()[0] == "precision=amp_fp16")
    assert "0/1" in fp16 and "CUDA" in fp16  # skipped on CPU, with its reason
