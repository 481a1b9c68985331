"""What a run records so that someone else can reproduce its number: threads, library versions
and builds, the OS, a hash of the uncommitted changes (untracked files included), CUDA facts only
when CUDA is used, the data by content, and the normalisation with its weights path expanded."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bench.cli import main as cli
from bench.execution import identity
from bench.measure import provenance
from tests.helpers import CPU, log_study


def test_collect_records_threads_versions_build_and_os():
    import numpy
    import scipy

    info = provenance.collect(torch.device("cpu"))
    assert info["env.torch_threads"] == str(torch.get_num_threads())
    assert info["env.omp_num_threads"] == os.environ.get("OMP_NUM_THREADS", "unset")
    assert info["env.cpus_available"] == str(len(os.sched_getaffinity(0)))
    assert info["env.numpy"] == numpy.__version__ and info["env.scipy"] == scipy.__version__
    assert "env.torchvision" in info
    assert info["env.torch_build"] == (torch.__version__.partition("+")[2] or "none")
    assert info["env.os"] == platform.platform()
    assert info["env.git_diff"] != "n/a"  # the tests run from a git checkout
    # a CPU run uses no CUDA, whatever the torch build: no CUDA facts on it
    assert not {"env.cuda", "env.cudnn", "env.cuda_driver"} & set(info)


def test_threads_are_read_on_every_call():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert provenance.collect("cpu")["env.torch_threads"] == "1"
    finally:
        torch.set_num_threads(before)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_records_cuda_cudnn_and_driver():
    info = provenance.collect(torch.device("cuda"))
    assert info["env.cuda"] == torch.version.cuda
    assert info["env.cuda_driver"] != "n/a" and info["env.cuda_driver"][0].isdigit()


def test_driver_version_never_raises():
    assert isinstance(provenance._driver_version(), str)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_diff_hash_covers_edits_and_untracked_files_not_ignored_ones(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert provenance.diff_hash(repo / "pkg") == "none"

    (repo / "pkg" / "a.py").write_text("x = 2\n")
    edited = provenance.diff_hash(repo / "pkg")
    assert edited not in ("none", "n/a") and len(edited) == 16
    assert provenance.diff_hash(repo) == edited  # from anywhere in the repository

    (repo / "new.py").write_text("y = 1\n")  # untracked, outside the package folder too
    with_new = provenance.diff_hash(repo / "pkg")
    assert with_new != edited
    (repo / "new.py").write_text("y = 2\n")  # same files, other content: another hash
    assert provenance.diff_hash(repo / "pkg") not in (edited, with_new)
    (repo / "new.py").write_text("y = 1\n")
    (repo / "run.log").write_text("ignored output")
    assert provenance.diff_hash(repo / "pkg") == with_new  # ignored files do not count
    assert provenance.diff_hash(tmp_path / "elsewhere") == "n/a"


def test_report_warns_on_different_diffs_and_prints_threads(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**CPU, "env.git_diff": "1111111111111111", "env.torch_threads": "8", "env.omp_num_threads": "8",
           "env.cpus_available": "16", "env.torch_build": "cu130", "env.os": "Linux-6.8-x86_64"}  # fmt: skip
    log_study(uri, "diffs", {"base": {"acc": [0.8, 0.81, 0.82], "env": env},
                             "other": {"acc": [0.7, 0.72, 0.71], "env": {**env, "env.git_diff": "2222222222222222"}}})  # fmt: skip
    assert (
        cli(["report", "--experiment", "diffs", "--tracking-uri", uri, "--results-dir", str(tmp_path)]) == 0
    )
    assert "warning: runs differ in env.git_diff" in capsys.readouterr().out
    md = (tmp_path / "diffs" / "report.md").read_text()
    assert "runs differ in `env.git_diff`: 1111111111111111 (base); 2222222222222222 (other)" in md
    assert "torch intra-op 8, OMP_NUM_THREADS 8, cores available 16" in md
    assert "(build cu130)" in md and "Linux-6.8-x86_64" in md and "CUDA not used" in md


# --- data by content ---------------------------------------------------------------------------


def test_data_fingerprint_sees_a_same_size_edit_and_reuses_unchanged_digests(tmp_path, tiny_image_folder):
    data = tmp_path / "data"
    shutil.copytree(tiny_image_folder, data)
    cfg = type("Data", (), {"name": "imagefolder", "root": str(data)})()
    first = identity.data_fingerprint(cfg)
    assert identity.data_fingerprint(cfg) == first
    image = data / "train" / "red" / "0000.jpg"
    body = bytearray(image.read_bytes())
    body[-3] ^= 0xFF  # one byte flipped: same size, same name
    image.write_bytes(bytes(body))
    edited = identity.data_fingerprint(cfg)
    assert edited != first

    # an unchanged file (same size and mtime) is not read again: its cached digest is used
    caches = list((Path(os.environ["BENCH_CACHE_DIR"]) / "fingerprints" / "folders").glob("*.json"))
    train_cache = next(c for c in caches if str(data / "train") in c.read_text())
    saved = json.loads(train_cache.read_text())
    saved["files"]["blue/0000.jpg"][2] = "0" * 32
    train_cache.write_text(json.dumps(saved))
    assert identity.data_fingerprint(cfg) not in (first, edited)


def test_normalize_label_names_the_expanded_weights_path(tmp_path, monkeypatch):
    from bench.components.models.weights import write_weights_meta
    from bench.data.normalize import weights_stats

    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    write_weights_meta(tmp_path / "results" / "w.pt", [0.5] * 3, [0.25] * 3, "train")
    model_cfg = type("Model", (), {"weights": "${BENCH_RESULTS_DIR}/w.pt", "pretrained": False})()
    (_, label) = weights_stats(model_cfg, None)
    assert label == f"weights:{(tmp_path / 'results' / 'w.pt').resolve()}"
