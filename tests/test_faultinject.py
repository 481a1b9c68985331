"""The fault points themselves (tests/faultinject/): what each action does to a real process, that
arming them wraps the bench functions where they fire (and a renamed one fails loudly), that an
unarmed process loads nothing of them, and that a misspelt point is an error, not a wait (fast)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import procs
from tests.helpers import FAULTS, REPO


def _python(tmp_path: Path, spec: str | None, code: str) -> subprocess.Popen:
    """``python -c code`` started as the tests start ``bench`` (helpers.bench_env), ``spec`` armed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(FAULTS), str(REPO))),
           "BENCH_FAULT_RELEASE": str(tmp_path / "go")}  # fmt: skip
    env.pop("BENCH_FAULT", None)
    if spec is not None:
        env["BENCH_FAULT"] = spec
    # SIGINT at its default (tests/procs.py): the suite may run in the background with SIGINT ignored
    return procs.popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)  # fmt: skip


FIRE = "import faultpoints\nfaultpoints.fire('tune.claimed')\nfaultpoints.fire('tune.asked')\nprint('after')"


@pytest.mark.parametrize(("action", "code"), [("kill", -9), ("term", -15), ("int", -2), ("exit", 99)])
def test_fault_point_signals_and_exits(tmp_path, action, code):
    proc = _python(tmp_path, f"tune.asked:{action}", FIRE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code and "after" not in out


def test_fault_point_blocks_until_released(tmp_path):
    proc = _python(tmp_path, "tune.asked:block", FIRE)
    reached = tmp_path / f"go.reached.{proc.pid}"
    deadline = time.monotonic() + 60
    while not reached.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.poll() is None  # still waiting at the named point
    (tmp_path / "go").touch()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "after\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [("tune.asked:explode", "action one of"), ("run.chekpoint.1:kill", "unknown point 'run.chekpoint.1'")],
)
def test_a_bad_spec_stops_the_process_with_one_line(tmp_path, spec, message):
    proc = _python(tmp_path, spec, "print('ran')")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_arming_wraps_every_point_in_bench_and_imports_nothing_heavy(tmp_path):
    """Every function the points wrap exists in bench (a rename breaks this test, not a slow one),
    and arming imports neither bench nor torch nor mlflow before bench itself does."""
    code = (
        "import importlib, sys, faultpoints\n"
        "print(sorted(m for m in ('bench', 'torch', 'mlflow', 'optuna') if m in sys.modules))\n"
        "for name, where in faultpoints.WHERE.items():\n"
        "    module = importlib.import_module(name)\n"
        "    for dotted in where:\n"
        "        fn = module\n"
        "        for part in dotted.split('.'):\n"
        "            fn = getattr(fn, part)\n"
        "        assert hasattr(fn, '__wrapped__'), (name, dotted)\n"
        "print('all wrapped')"
    )
    out, err = _python(tmp_path, "run.close.after_export:log", code).communicate(timeout=300)
    assert out.splitlines() == ["[]", "all wrapped"], err[-3000:]


def test_unarmed_processes_load_none_of_it(tmp_path):
    code = "import sys, bench.execution.recorded as r\nprint('faultpoints' in sys.modules, hasattr(r.close_run, '__wrapped__'))"
    out, err = _python(tmp_path, None, code).communicate(timeout=300)
    assert out == "False False\n", err[-3000:]
