"""amp_bf16 on a CPU without native bf16 is skipped by default, with the reason and the flag that
trains it anyway: on such a CPU the emulation is 20-40x slower and took most of the smoke study's
time, and its throughput says nothing about bf16."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.cli import main
from bench.measure.hardware import cpu_has_native_bf16, device_gap, emulated_bf16_reason
from bench.recipe.load import load_recipe
from tests.helpers import fresh_store
from tests.recipes import tiny_recipe, write_recipe

EPYC_FLAGS = {"fpu", "sse4_2", "avx2", "avx512f", "avx512bw"}  # an AMD EPYC without avx512_bf16
SAPPHIRE_RAPIDS_FLAGS = EPYC_FLAGS | {"avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.fixture
def real_flags(monkeypatch):
    """The decision from the flags given, not from a test's pretence."""
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "")
    monkeypatch.setenv("BENCH_EMULATED_BF16", "")  # unset here and after the test (bench sets it)


def test_native_bf16_is_read_from_the_cpu_flags(real_flags):
    assert not cpu_has_native_bf16(EPYC_FLAGS)
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS_FLAGS)
    assert cpu_has_native_bf16({"avx512_bf16"}) and cpu_has_native_bf16({"amx_bf16"})


def test_emulated_bf16_is_skipped_by_default_naming_the_flag_that_runs_it(real_flags, monkeypatch):
    reason = emulated_bf16_reason(cpu_has_native_bf16(EPYC_FLAGS))
    assert "emulated" in reason and "--emulated-bf16 run" in reason and "BENCH_EMULATED_BF16=run" in reason
    assert emulated_bf16_reason(cpu_has_native_bf16(SAPPHIRE_RAPIDS_FLAGS)) is None
    assert emulated_bf16_reason(False, "run") is None
    monkeypatch.setenv("BENCH_EMULATED_BF16", "run")
    assert emulated_bf16_reason(False) is None


def test_the_skip_is_a_device_gap_on_the_cpu_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "1")
    monkeypatch.setenv("BENCH_EMULATED_BF16", "")  # unset here and after the test (bench sets it)
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path, **{"train.precision": "amp_bf16"}))
    [v] = load_recipe(path).variants
    assert "emulated" in device_gap(v.body.train, cuda=False)
    assert device_gap(v.body.train, cuda=True) is None  # train.device auto: on the GPU, bf16 is native


def test_a_bad_policy_exits_2_naming_the_variable_and_the_values(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_EMULATED_BF16", "sometimes")
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "BENCH_EMULATED_BF16" in err and "'sometimes'" in err and "skip (default) or run" in err


def test_a_recipe_of_only_emulated_bf16_is_refused_before_recording(
    tmp_path, tiny_image_folder, monkeypatch, capsys
):
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "1")
    monkeypatch.setenv("BENCH_EMULATED_BF16", "")  # unset here and after the test (bench sets it)
    path = write_recipe(
        tmp_path / "r.yaml", tiny_recipe(tiny_image_folder, **{"train.precision": "amp_bf16"})
    )
    store = ["--results-dir", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    assert main(["run", str(path), *store]) == 2
    assert "--emulated-bf16 run" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


@pytest.mark.slow
def test_a_study_records_emulated_bf16_as_skipped_and_trains_it_when_forced(
    tmp_path, tiny_image_folder, monkeypatch
):
    # as on a CPU without native bf16 (torch's kernels still run natively here, so it stays quick)
    monkeypatch.setenv("BENCH_FORCE_EMULATED_BF16", "1")
    monkeypatch.setenv("BENCH_EMULATED_BF16", "")  # unset here and after the test (bench sets it)
    recipe = tiny_recipe(tiny_image_folder, **{"train.epochs": 1, "data.subset": 64, "train.device": "cpu"})
    recipe["matrix"] = {"train.precision": ["fp32", "amp_bf16"]}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    store = ["--results-dir", str(tmp_path / "results"), "--tracking-uri", fresh_store(tmp_path / "m.db")]

    assert main(["run", str(path), *store]) == 0
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv").set_index("variant")
    assert runs.loc["precision=fp32,seed=0", "status"] == "finished"
    bf16 = runs.loc["precision=amp_bf16,seed=0"]
    assert (
        bf16["status"] == "skipped"
        and "emulated" in bf16["reason"]
        and "--emulated-bf16 run" in bf16["reason"]
    )

    assert (
        main(["run", str(path), *store, "--emulated-bf16", "run"]) == 0
    )  # forced: trained, into the same study
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv").set_index("variant")
    assert runs.loc["precision=amp_bf16,seed=0", "status"] == "finished"
    assert pd.notna(runs.loc["precision=amp_bf16,seed=0", "test/acc"])  # scored, not only started
