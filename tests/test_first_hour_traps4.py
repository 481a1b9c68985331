"""First-hour traps, round 4: combined tricks, data-set edges, half-failed studies, other stores.
Each test reproduces what a new user ran and saw, and checks what they should have seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.recipes import tiny_recipe, write_recipe


def store_args(tmp_path: Path) -> list[str]:
    return [
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]


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
