"""Every command and snippet in README.md is run, so the README cannot drift from the code: its
Python API example once failed as written (``train.epochs=1`` against the recipe's SWA start).

The fenced blocks are read from the README itself. Each shell command must be listed in
``COMMANDS`` with how it is run: as written, with ``--dry-run``, with only the documented size
knobs added (``SIZE``), or against the tool's ``--help`` where it needs a cluster; a command added
to the README without an entry here fails ``test_every_readme_command_is_known``. The default
(not slow) part runs the cheap checks in-process; the quickstart and what reads its results are
``slow`` and ``cifar`` (the real archive), the GPU study's outputs ``cuda``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import main as bench_main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SHARED_DATA = REPO.parent / "shared" / "data"
# The size knobs the README documents ("Overrides use dotted keys ... train.epochs=1 data.subset=500"):
# the smoke study at test size. Two epochs: smoke.yaml's SWA starts at epoch 1.
SIZE = ["train.epochs=2", "data.subset=500", "data.test_subset=200", "seeds=[0]"]
# the crossed init x data design at test size (2 x 2 instead of 4 x 4)
VARIANCE_SIZE = [
    "train.epochs=1",
    "data.subset=500",
    "data.test_subset=200",
    "init_seeds=[0,1]",
    "data_seeds=[0,1]",
]
GPU_SIZE = ["train.epochs=8", "data.subset=1024", "data.test_subset=512", "seeds=[0]"]  # SWA starts at 7

# How each command of the README's shell blocks is run (kinds: see ``run_command``).
COMMANDS = {
    "export BENCH_DATA_DIR=../shared/data": "export",
    "pip install -e .": "pip",
    "bench run recipes/smoke_pretrain.yaml recipes/smoke.yaml": "quickstart",
    "pip install nox": "pip",
    "nox -s tests": "nox",
    "cat results/smoke/runs.csv": "after-quickstart",
    "bench report recipes/smoke.yaml": "after-quickstart",
    "bench ui recipes/smoke.yaml": "ui-after-quickstart",
    "bench ui recipes/smoke.yaml --compare": "ui-after-quickstart",
    "BENCH_DATA_DIR=../shared/data bench run recipes/smoke_pretrain.yaml recipes/smoke_variance.yaml": "variance",
    "bench report --variance recipes/smoke_variance.yaml": "variance",
    "bench run recipes/cifar10_resnet.yaml --dry-run": "as-written",
    "export BENCH_DATA_DIR=/path/to/data": "export",
    "bench run recipes/cifar10_resnet.yaml": "dry-run",
    "bench report recipes/cifar10_resnet.yaml": "gpu-study",
    "bench ui recipes/cifar10_resnet.yaml": "gpu-study",
    "bench tune recipes/cifar10_resnet_tune.yaml --workers 2": "dry-run",
    "bench ui --tune recipes/cifar10_resnet_tune.yaml": "gpu-study",
    "bench run recipes/cifar10_resnet.yaml --overlay results/cifar10_resnet_tune/best.yaml": "dry-run",
    "pip install -e '.[ray]'": "pip",
    "bench run recipes/cifar10_resnet.yaml --executor ray": "dry-run",
    "bench run recipes/smoke.yaml --executor ray --gpus-per-variant 0.5": "dry-run",
    "bench run recipes/smoke.yaml --executor ray --gpus-per-variant 0 --cpus-per-variant 2": "dry-run",
    "bench tune recipes/cifar10_resnet_tune.yaml --executor ray --workers 8": "dry-run",
    "createdb -O bench mlflow": "help",
    "pip install psycopg2-binary": "pip",
    "mlflow server --backend-store-uri postgresql+psycopg2://bench:PASSWORD@HEAD:5432/mlflow "
    "--artifacts-destination /shared/bench/mlartifacts --host 0.0.0.0 --port 5000 --workers 4": "help",
    "ray start --head --port 6379": "help",
    "ray start --address HEAD:6379": "help",
    "bench run recipes/cifar10_resnet.yaml --executor ray --address auto --results-dir /shared/bench/results "
    "--tracking-uri http://HEAD:5000": "dry-run",
    "bench tune recipes/cifar10_resnet_tune.yaml --executor ray --address auto --workers 16 --results-dir "
    "/shared/bench/results --tracking-uri http://HEAD:5000 --storage "
    "postgresql+psycopg2://bench:PASSWORD@HEAD:5432/optuna": "dry-run",
}
FAST = {"as-written", "dry-run", "export"}
SLOW = {"pip", "nox", "help"}
QUICKSTART = {"quickstart", "after-quickstart", "ui-after-quickstart"}


@dataclass
class Block:
    lang: str
    body: str


def readme_blocks(text: str) -> list[Block]:
    """Fenced code blocks, indented ones (inside a list item) too, dedented."""
    pattern = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\s*$", re.S | re.M)
    return [Block(m[2], textwrap.dedent(m[3])) for m in pattern.finditer(text)]


def shell_commands(body: str) -> list[str]:
    """One string per command: continuation lines joined, comments dropped, ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", "", body)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        out += [part.strip() for part in line.split(" && ") if part.strip()]
    return out


BLOCKS = readme_blocks(README.read_text())
README_COMMANDS = [c for b in BLOCKS if b.lang == "bash" for c in shell_commands(b.body)]


def split_env(command: str) -> tuple[dict[str, str], list[str]]:
    """``A=1 bench run x`` -> ({"A": "1"}, ["bench", "run", "x"]); ``export A=1`` -> ({"A": "1"}, [])."""
    words = shlex.split(command)
    if words[0] == "export":
        words.pop(0)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return env, words


def test_the_readme_has_the_blocks_this_module_runs():
    assert quickstart_env() == {"BENCH_DATA_DIR": "../shared/data"}  # later commands find the same data
    langs = [b.lang for b in BLOCKS]
    assert langs.count("python") == 1 and langs.count("yaml") == 1, langs
    assert set(langs) <= {"bash", "python", "yaml"}, f"a fenced block of a language no test runs: {langs}"
    assert len(README_COMMANDS) >= 20  # the parser still finds the commands


def test_every_readme_command_is_known():
    unknown = [c for c in README_COMMANDS if c not in COMMANDS]
    assert not unknown, (
        "README.md has commands tests/test_readme.py does not run; add each to COMMANDS with how to run it: "
        + "; ".join(unknown)
    )
    stale = [c for c in COMMANDS if c not in README_COMMANDS]
    assert not stale, f"COMMANDS lists commands the README no longer has: {stale}"


# --- a sandbox: the repo's recipes, ../shared/data beside it, results/ of its own ---------------


def make_sandbox(root: Path) -> Path:
    """A checkout-like folder: ``recipes/`` and ``scripts/`` of this repo, ``../shared`` beside it
    (the real data where the checkout has it), and nothing recorded yet."""
    work = root / "bench"
    work.mkdir(parents=True)
    for name in ("recipes", "scripts"):
        shutil.copytree(REPO / name, work / name)
    (root / "shared").mkdir()
    if SHARED_DATA.is_dir():
        (root / "shared" / "data").symlink_to(SHARED_DATA)
    return work


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    work = make_sandbox(tmp_path)
    monkeypatch.chdir(work)
    unset_env(monkeypatch)
    return work


def unset_env(monkeypatch) -> None:
    """Unset what the CLI sets in its own process, and have it unset again after the test (a bare
    ``delenv`` of an absent key records nothing, so a value the test's bench set would stay)."""
    for key in ("BENCH_RESULTS_DIR", "BENCH_EMULATED_BF16", "BENCH_DATA_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


def bench_in_process(env: dict[str, str], words: list[str], monkeypatch, capsys) -> tuple[int, str]:
    assert words[0] == "bench", words
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = bench_main(words[1:])
    out = capsys.readouterr()
    return code, out.out + out.err


def write_tuned_overlay(work: Path) -> None:
    """What ``bench tune`` leaves as best.yaml (bench/tune/outputs.py: dotted keys + ``tuned:``)."""
    path = work / "results" / "cifar10_resnet_tune" / "best.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "train.optimizer.lr: 0.02\ntuned: {study: cifar10_resnet_tune, trial: 3, tuned_on_seeds: [0]}\n"
    )


def quickstart_env() -> dict[str, str]:
    """What the README's quickstart block exports for the commands after it (``../shared/data``)."""
    [first] = [b for b in BLOCKS if b.lang == "bash"][:1]
    return {
        k: v
        for c in shell_commands(first.body)
        if c.startswith("export ")
        for k, v in split_env(c)[0].items()
    }


@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind in FAST])
def test_readme_command_runs(command, sandbox, monkeypatch, capsys):
    env, words = split_env(command)
    if COMMANDS[command] == "export":  # a variable the README's later commands read: it names a folder
        assert env and all(v for v in env.values()), command
        if "/path/to/" not in command:
            assert (
                sandbox / env["BENCH_DATA_DIR"] / "cifar10-jpeg.tar.gz"
            ).exists() or not SHARED_DATA.is_dir()
        return
    if "cifar10_resnet" in command:  # the GPU block exports BENCH_DATA_DIR=/path/to/data, a placeholder
        env = {"BENCH_DATA_DIR": str(sandbox.parent / "shared" / "data"), **env}
    if "--overlay" in words:
        write_tuned_overlay(sandbox)
    if COMMANDS[command] == "dry-run":
        words.append("--dry-run")
    code, out = bench_in_process(env, words, monkeypatch, capsys)
    assert code == 0, out
    recipe = next(w for w in words if w.endswith(".yaml") and w.startswith("recipes/"))
    assert Path(recipe).stem in out, out
    if "--overlay" in words:
        assert "the overlay's configuration was tuned on seeds [0]" in out, out


def test_readme_recipe_block_is_a_valid_recipe(sandbox, monkeypatch, capsys):
    [block] = [b for b in BLOCKS if b.lang == "yaml"]
    path = sandbox / "readme_recipe.yaml"
    path.write_text(block.body)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(sandbox / "results"))
    code, out = bench_in_process({}, ["bench", "run", str(path), "--dry-run"], monkeypatch, capsys)
    assert code == 0, out
    assert "10 runs" in out, out  # 2 schedulers x 2 freeze + amp_fp16, x 2 seeds


# --- slow: installers and cluster tools (their options, without a cluster) ----------------------


def run(args: list[str], cwd: Path = REPO, env: dict[str, str | None] | None = None, timeout: float = 600):
    """A real process; ``env`` values of None are unset in it."""
    merged = {**os.environ, **(env or {})}
    merged = {k: v for k, v in merged.items() if v is not None}
    return subprocess.run(args, cwd=cwd, env=merged, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind == "pip"])
def test_readme_pip_command_resolves(command):
    # --dry-run: resolves what it would install without touching this interpreter's packages
    words = shlex.split(command)
    extra = ["--no-build-isolation", "--no-deps", "--no-index"] if "-e" in words else []  # offline
    proc = run([sys.executable, "-m", *words, "--dry-run", *extra])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Would install" in proc.stdout or "already satisfied" in proc.stdout, proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind == "help"])
def test_readme_cluster_command_uses_options_its_tool_has(command):
    words = shlex.split(command)
    tool = shutil.which(words[0])
    if tool is None:
        pytest.skip(f"{words[0]} is not installed here")
    sub = [w for w in words[1:2] if not w.startswith("-")]
    proc = run([tool, *sub, "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in (w for w in words if w.startswith("-")):
        assert option in proc.stdout, f"{command}: {option} is not an option of `{words[0]} {' '.join(sub)}`"


@pytest.mark.slow
def test_readme_nox_tests_session_runs(tmp_path):
    """``nox -s tests``, restricted by its documented posargs to this module's quick part."""
    if shutil.which("nox") is None:
        pytest.skip("nox is not installed")
    listed = run(["nox", "--list"], timeout=120)
    assert listed.returncode == 0 and re.search(r"^\* tests\b", listed.stdout, re.M), listed.stdout
    proc = run(["nox", "-s", "tests", "--", "tests/test_readme.py", "-m", "not slow and not benchmark"],
               env={"BENCH_CACHE_DIR": str(tmp_path / "cache")}, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout + proc.stderr)


# --- slow, real CIFAR-10: the quickstart at test size, then what reads its results --------------


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quickstart's ``bench run`` with the size knobs, in a sandbox, as a user's shell runs it."""
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip("real CIFAR-10 not available at ../shared/data")
    work = make_sandbox(tmp_path_factory.mktemp("readme"))
    [command] = [c for c, kind in COMMANDS.items() if kind == "quickstart"]
    env, words = split_env(command)
    proc = run(
        bench_cli(words) + SIZE, cwd=work, env={**clean_env(), **quickstart_env(), **env}, timeout=1800
    )
    return work, proc


def clean_env() -> dict[str, str | None]:
    """This checkout's bench, the defaults a user's shell has (results/ and its MLflow store)."""
    return {
        "PYTHONPATH": str(REPO),
        "BENCH_RESULTS_DIR": None,
        "MLFLOW_TRACKING_URI": None,
        "DISPLAY": None,
        "BENCH_EMULATED_BF16": None,
    }


def bench_cli(words: list[str]) -> list[str]:
    """``bench ...`` as this checkout's bench (the ``bench`` on PATH may be another install)."""
    return [sys.executable, "-m", "bench.cli", *words[1:]] if words[0] == "bench" else words


@pytest.mark.slow
@pytest.mark.cifar
def test_readme_quickstart_runs_the_smoke_study(quickstart):
    import pandas as pd

    work, proc = quickstart
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = pd.read_csv(work / "results" / "smoke" / "runs.csv")
    assert set(runs["status"]) <= {"finished", "skipped"} and (runs["status"] == "finished").sum() >= 6
    assert (work / "results" / "smoke_pretrain" / "weights" / "seed=0.pt").is_file()


@pytest.mark.slow
@pytest.mark.cifar
@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind == "after-quickstart"])
def test_readme_command_reads_the_quickstart_results(command, quickstart):
    work, proc = quickstart
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = shlex.split(command)
    words += (
        SIZE if words[0] == "bench" else []
    )  # the study the quickstart ran: same overrides, as bench run got
    out = run(bench_cli(words), cwd=work, env={**clean_env(), **quickstart_env()})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    if command.startswith("cat"):
        assert "test/acc" in out.stdout.splitlines()[0]
    else:
        assert (work / "results" / "smoke" / "report.md").is_file()


@pytest.mark.slow
@pytest.mark.cifar
def test_readme_variance_commands_split_the_seed_noise(quickstart):
    """The variance block after the quickstart: smoke_pretrain is already done (skipped as finished,
    at the quickstart's size), smoke_variance runs its crossed seeds at test size, then the report."""
    work, proc = quickstart
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_cmd, report_cmd = [c for c, kind in COMMANDS.items() if kind == "variance"]
    env, words = split_env(run_cmd)
    pretrain, variance = words[2], words[3]
    for recipe, size in ((pretrain, SIZE), (variance, VARIANCE_SIZE)):  # each recipe at its test size
        out = run(
            bench_cli([*words[:2], recipe]) + size, cwd=work, env={**clean_env(), **quickstart_env(), **env}
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    out = run(
        bench_cli(shlex.split(report_cmd)) + VARIANCE_SIZE, cwd=work, env={**clean_env(), **quickstart_env()}
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (
        "initialisation" in out.stdout
        and (work / "results" / "smoke_variance" / "report" / "variance.csv").is_file()
    )


@pytest.mark.slow
@pytest.mark.cifar
@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind == "ui-after-quickstart"])
def test_readme_ui_serves_the_quickstart_study(command, quickstart, monkeypatch):
    from tests.helpers import Served

    work, proc = quickstart
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.chdir(work)
    unset_env(monkeypatch)  # a user's shell: results/ here, the store in it
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    for key, value in quickstart_env().items():  # exported by the quickstart: the study's data
        monkeypatch.setenv(key, value)
    # --port 0: port 5000 may be taken on a shared machine; --no-browser is added by Served
    # the overrides the quickstart ran with name its study (bench ui takes them as bench run does)
    ui = Served(*shlex.split(command)[2:], *SIZE, "--port", "0")
    try:
        url = ui.wait_for("ready:")
        with urllib.request.urlopen(url.split("#")[0], timeout=30) as resp:
            assert resp.status == 200
        if "--compare" in command:
            # accuracy against throughput: the runs page's chart view on its saved view
            assert "compareRunsMode=CHART" in url and "viewStateShareKey=" in url, "".join(ui.lines)
        else:
            assert "viewStateShareKey=" in url, "".join(ui.lines)  # the saved side-by-side view
    finally:
        ui.stop()


@pytest.mark.slow
@pytest.mark.cifar
def test_readme_python_api_example_runs(quickstart):
    """The example as written, with the smoke study's size knobs added to its overrides and fewer
    trials: it must not fail as it did with ``train.epochs=1`` against SWA's start epoch."""
    work, proc = quickstart
    assert proc.returncode == 0, proc.stderr[-3000:]
    [block] = [b for b in BLOCKS if b.lang == "python"]
    code = block.body
    overrides = re.search(r'load_recipe\("recipes/smoke\.yaml", \[(.*?)\]\)', code)
    assert overrides, "the example no longer loads recipes/smoke.yaml with overrides: update this test"
    knobs = [k for k in SIZE if k.split("=")[0] + "=" not in overrides[1]]
    code = code.replace(overrides[0], overrides[0][:-2] + "".join(f", {k!r}" for k in knobs) + "])")
    assert "n_trials=8" in code
    code = code.replace("n_trials=8", "n_trials=2")
    lines = code.rstrip().splitlines()  # a notebook shows each bare expression: print them here
    script = "\n".join(
        f"print({ln})" if ln and not re.match(r"^(\w+ = |import |#)", ln) else ln for ln in lines
    )
    out = run([sys.executable, "-c", script], cwd=work, env={**clean_env(), **quickstart_env()},
              timeout=1800)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "acc_diff" in out.stdout and (work / "results" / "smoke_tune" / "trials.csv").is_file()


# --- cuda: the GPU study's outputs, from the same commands at test size --------------------------


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.cifar
@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind == "gpu-study"])
def test_readme_gpu_study_command(command, tmp_path):
    """Needs a GPU and the ImageNet weights' download; the study first runs at test size."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    work = make_sandbox(tmp_path)
    env = {**clean_env(), "BENCH_DATA_DIR": str(SHARED_DATA)}
    first = ["bench", "tune", "recipes/cifar10_resnet_tune.yaml", "--n-trials", "2"] if "--tune" in command else \
        ["bench", "run", "recipes/cifar10_resnet.yaml", *GPU_SIZE]  # fmt: skip
    assert run(bench_cli(first), cwd=work, env=env, timeout=3600).returncode == 0
    if command.startswith("bench ui"):
        from tests.helpers import Served

        os.chdir(work)
        ui = Served(*shlex.split(command)[2:], "--port", "0")
        try:
            assert ui.wait_for("ready:")
        finally:
            ui.stop()
    else:
        assert run(bench_cli(shlex.split(command)), cwd=work, env=env).returncode == 0
