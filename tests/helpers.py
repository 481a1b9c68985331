"""Helpers shared by the test modules: real ``bench`` processes and their MLflow runs, tiny tune
recipes, a served ``bench ui``. (Test modules import helpers from here, never from each other.)"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.recipe.dotted import delete_dotted, get_dotted
from bench.recipe.schema import DataConfig, SchedulerConfig, TrainConfig
from bench.tracking.mlflow_store import ensure_experiment
from tests import procs
from tests.recipes import tiny_recipe, write_recipe

REPO = Path(__file__).resolve().parent.parent
# first on PYTHONPATH: arms BENCH_FAULT in every process (tests/faultinject/sitecustomize.py)
FAULTS = REPO / "tests" / "faultinject"


def client_for(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def all_runs(tmp_path: Path, experiment: str = "tiny"):
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def children(runs):
    return [r for r in runs if r.data.tags.get("bench.kind") != "recipe"]


def parents(runs):
    return [r for r in runs if r.data.tags.get("bench.kind") == "recipe"]


def steps(tmp_path: Path, run_id: str, key: str = "train/loss") -> list[int]:
    return [m.step for m in client_for(tmp_path).get_metric_history(run_id, key)]


@functools.cache
def _empty_store() -> bytes:
    """The bytes of an MLflow SQLite store with this MLflow's schema and no rows, made once per
    session by the function MLflow's store runs on an empty file (its ~60 alembic migrations take
    ~2 s on the 2-core CI box, a copy milliseconds). The first open of a copy adds the Default
    experiment as it would to a new file, so a command on a copy runs the same code as on a new
    store but for creating the schema."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "mlflow.db"
        engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{db}")
        _initialize_tables(engine)
        engine.dispose()
        return db.read_bytes()


def fresh_store(db: Path) -> str:
    """The URI of the SQLite store ``db``, made a copy of the empty store if it does not exist
    yet. Not for a test of what a new store's creation does (e.g. two processes creating one)."""
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_bytes(_empty_store())
    return f"sqlite:///{db}"


def store_args(tmp_path: Path) -> list[str]:
    """The options that keep a command's results and MLflow store inside ``tmp_path``."""
    return [
        "--results-dir",
        str(tmp_path / "results"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
    ]


def bench_in_process(tmp_path: Path, recipe: Path, *extra: str) -> int:
    fresh_store(tmp_path / "mlflow.db")
    return main(["run", str(recipe), "--results-dir", str(tmp_path / "results"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra])  # fmt: skip


def table(tmp_path: Path, name: str = "tiny") -> pd.DataFrame:
    return pd.read_csv(tmp_path / "results" / name / "runs.csv")


def bench_env(tmp_path: Path, fault: str = "", **extra: str) -> dict[str, str]:
    """The environment of a real ``bench`` process: this checkout, one thread, ``fault`` armed
    (tests/faultinject/faultpoints.py) in it and every process it starts."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join((str(FAULTS), str(REPO))), "OMP_NUM_THREADS": "1",
            "BENCH_FAULT": fault,
            "BENCH_FAULT_RELEASE": str(tmp_path / "release"), "BENCH_FAULT_LOG": str(tmp_path / "fault.log"),
            **extra}  # fmt: skip


def bench_args(tmp_path: Path, recipe: Path, *extra: str) -> list[str]:
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]  # right after the recipe
    options = [e for e in extra if e not in overrides]
    fresh_store(tmp_path / "mlflow.db")
    # variant order: these tests stop "the first variant" at a fault point (the default shuffles)
    return [sys.executable, "-m", "bench.cli", "run", str(recipe), *overrides, "--results-dir",
            str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--order",
            "variant", *options]  # fmt: skip


def start_bench(tmp_path: Path, recipe: Path, *extra: str, fault: str = "", prefix: tuple = (),
                ctrl_c_ignored: bool = False, **env: str) -> subprocess.Popen:  # fmt: skip
    """``bench run`` in a session of its own (so a test can kill the whole process group, as a
    dying container or the OOM killer would), stopped where ``fault`` says; SIGINT at its default
    and the group killed after the test (tests/procs.py)."""
    return procs.popen(
        [*prefix, *bench_args(tmp_path, recipe, *extra)], cwd=REPO, env=bench_env(tmp_path, fault, **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, ctrl_c_ignored=ctrl_c_ignored,
    )  # fmt: skip


def run_bench(tmp_path: Path, recipe: Path, *extra: str, fault: str = "", **env: str) -> tuple[int, str]:
    proc = start_bench(tmp_path, recipe, *extra, fault=fault, **env)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def reached(tmp_path: Path, proc: subprocess.Popen, n: int = 1, timeout: float = 300) -> list[int]:
    """The pids blocked at the armed ``block`` point, once ``n`` processes have reached it."""
    deadline = time.monotonic() + timeout
    while len(found := list(tmp_path.glob("release.reached.*"))) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the fault point was not reached: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return [int(p.name.rsplit(".", 1)[1]) for p in found]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``bench run`` and every process it started (driver, forkserver, variant child)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def fault_log(tmp_path: Path) -> list[str]:
    path = tmp_path / "fault.log"
    return path.read_text().splitlines() if path.exists() else []


def bench_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def bench_main(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``bench ARGS`` through ``bench.cli.main`` in this process, answered like ``bench_cli``: the same
    parsing, output and exit code without a new interpreter's torch + MLflow import and forkserver
    start (~5-10 s on a 2-core box; this process's forkserver serves every test). Not for what
    needs a process of its own: signals, ``BENCH_FAULT`` (armed as a process starts), a clean env.

    Output is caught at file descriptors 1 and 2, as a subprocess's would be: the variants' child
    processes write their progress there, not to ``sys.stderr``."""
    files = [tempfile.TemporaryFile("w+", encoding="utf-8") for _ in range(2)]
    saved_fds = [os.dup(1), os.dup(2)]
    saved_dir = os.environ.get("BENCH_RESULTS_DIR")  # main sets it from --results-dir
    sys.stdout.flush(), sys.stderr.flush()
    try:
        for file, fd in zip(files, (1, 2)):
            os.dup2(file.fileno(), fd)
        with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(files[0]), \
                contextlib.redirect_stderr(files[1]):  # fmt: skip
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, a usage error
                code = exc.code if isinstance(exc.code, int) else 2
            finally:
                files[0].flush(), files[1].flush()
    finally:
        for fd, saved in zip((1, 2), saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        if saved_dir is None:
            os.environ.pop("BENCH_RESULTS_DIR", None)
        else:
            os.environ["BENCH_RESULTS_DIR"] = saved_dir
    out, err = (file.seek(0) or file.read() for file in files)
    for file in files:
        file.close()
    return subprocess.CompletedProcess(["bench", *args], code, out, err)


SPACE = {"train.optimizer.lr": {"float": [1.0e-3, 0.5], "log": True}}


def tune_recipe(tmp_path: Path, data_root: Path | None = None, tune: dict | None = None, **dotted) -> Path:
    recipe = tiny_recipe(data_root or tmp_path / "data", name="tinytune", **dotted)
    recipe["tune"] = {"n_trials": 2, "space": dict(SPACE), **(tune or {})}
    return write_recipe(tmp_path / "tune.yaml", recipe)


def plan_for(path: Path, *overrides: str, **kw):
    from bench.tune.plan import TuneOptions, build_plan

    return build_plan(TuneOptions(recipe=str(path), overrides=list(overrides), **kw), quiet=True)


def mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


NEW_KEYS = {
    "data.normalize": "normalize" in DataConfig.model_fields,
    "train.compile": "compile" in TrainConfig.model_fields,
    "train.tta": "tta" in TrainConfig.model_fields,
    "train.ema": "ema" in TrainConfig.model_fields,
}


HAS_INTERVAL = "interval" in SchedulerConfig.model_fields


PRECISIONS = set(typing.get_args(TrainConfig.model_fields["precision"].annotation))


def _strip_value(key: str, value: Any) -> tuple[bool, Any]:
    """(keep, value) for one matrix value of axis ``key`` under this checkout's schema."""
    if key == "train.precision" and value not in PRECISIONS:
        return False, None
    if key == "train.scheduler" and isinstance(value, dict) and not HAS_INTERVAL:
        return True, {k: v for k, v in value.items() if k != "interval"}
    return True, value


def this_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` without the keys and values the schema of this checkout does not know."""
    raw = copy.deepcopy(raw)
    for key, known in NEW_KEYS.items():
        if not known and get_dotted(raw, key) is not None:
            delete_dotted(raw, key)
    if not HAS_INTERVAL and isinstance(get_dotted(raw, "train.scheduler"), dict):
        raw["train"]["scheduler"].pop("interval", None)
    if get_dotted(raw, "train.precision") not in (None, *PRECISIONS):
        delete_dotted(raw, "train.precision")
    matrix = raw.get("matrix") or {}
    for axis in list(matrix):
        if axis in ("include", "exclude"):
            entries = []
            for entry in matrix[axis]:
                kept = {}
                for k, v in entry.items():
                    keep, v = _strip_value(k, v)
                    if keep and NEW_KEYS.get(k, True):
                        kept[k] = v
                if kept:
                    entries.append(kept)
            matrix[axis] = entries
        elif not NEW_KEYS.get(axis, True):
            del matrix[axis]
        else:
            values = [v for keep, v in (_strip_value(axis, v) for v in matrix[axis]) if keep]
            matrix[axis] = values
    return raw


CPU = {"env.device_type": "cpu", "env.device_name": "AMD EPYC", "env.cpu_native_bf16": "false",
       "env.torch": "2.14.1", "env.git_commit": "a" * 40, "env.git_dirty": "false", "bench.normalize": "train"}  # fmt: skip


def log_study(uri: str, experiment: str, groups: dict[str, dict], key_prefix: str = "") -> None:
    """One parent run and, per group, one finished child run per seed: ``groups[name]`` holds
    ``acc`` (per seed), optional ``seeds`` (default 0, 1, ...), ``speed``, ``env`` (tags),
    ``precision`` and ``metrics``. Into an
    existing experiment when there is one: with another ``key_prefix``, a rerun of an edited recipe."""
    if uri.startswith("sqlite:///"):
        fresh_store(Path(uri.removeprefix("sqlite:///")))
    client = MlflowClient(uri)
    exp = ensure_experiment(client, uri, experiment)  # artifacts beside the store, not in ./mlruns
    parent = client.create_run(exp, tags={"bench.kind": "recipe"}).info.run_id
    for group, spec in groups.items():
        for i, (seed, acc) in enumerate(zip(spec.get("seeds", range(len(spec["acc"]))), spec["acc"])):
            tags = {"mlflow.parentRunId": parent, "bench.run_key": f"{key_prefix}{group}-{seed}", "bench.group": group,
                    "bench.variant": f"{group},seed={seed}", "bench.seed": str(seed), "bench.status": "finished",
                    "axis.x": group, **spec.get("env", CPU)}  # fmt: skip
            run = client.create_run(exp, tags=tags).info.run_id
            client.log_param(run, "train.precision", spec.get("precision", "fp32"))
            speed = spec.get("speed", [1000.0] * len(spec["acc"]))[i]
            for step, value in enumerate((acc - 0.1, acc)):
                client.log_metric(run, "test/acc", value, step=step)
            metrics = {"throughput/train_img_s": speed, "memory/peak_rss_mb": 900.0, "time/wall_s": 5.0,
                       **spec.get("metrics", {})}  # fmt: skip
            for key, value in metrics.items():
                client.log_metric(run, key, value, step=1)
            for step, value in enumerate(spec.get("val", ())):
                client.log_metric(run, "val/acc", value, step=step)
            client.set_terminated(run)
    client.set_terminated(parent)


class Served:
    """``bench ui ...`` in its own process group: its printed lines, stopped at the end."""

    def __init__(self, *args: str):
        env = {**os.environ, "MLFLOW_TRACKING_URI": "", "DISPLAY": ""}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", *args, "--no-browser"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)  # fmt: skip
        self.lines: list[str] = []

    def wait_for(self, prefix: str, timeout: float = 180) -> str:
        """The first printed line starting with ``prefix`` (the server answers once 'ready:' is out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("bench ui exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.strip().startswith(prefix):
                return line.strip()[len(prefix) :].strip()
        raise AssertionError(f"no '{prefix}' line within {timeout} s:\n" + "".join(self.lines))

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # bench ui and the server it started
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def assert_trial_numbers(numbers, n_trials: int) -> None:
    """A study ends with exactly ``n_trials`` trials in trials.csv, each once, however many workers
    asked at once (a surplus trial stands down and is left out: README, tune section)."""
    numbers = sorted(int(n) for n in numbers)
    assert len(set(numbers)) == len(numbers) == n_trials, numbers
