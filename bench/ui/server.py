"""``bench ui``: the MLflow UI landing on the latest study's comparison, or a tuning study in
optuna-dashboard. Both servers read and write with no authentication: loopback unless the user
says otherwise; a URL that a local browser can open, "ready" only once the server answers, and a
browser only where there is a screen."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bench.errors import BenchError
from bench.tracking import experiment_view as view

WILDCARDS = ("0.0.0.0", "::", "")


class UsageError(BenchError):
    """A command-line choice refused as unsafe or inconsistent."""

    exit_code = 2


def check_host(host: str, allow_remote: bool, what: str) -> None:
    """Refuse a non-loopback bind unless ``--allow-remote``; with it, say what that exposes."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve to any interface
    if loopback:
        return
    if not allow_remote:
        raise UsageError(
            f"--host {host} would let other machines reach {what}, which has no authentication and "
            "lets anyone who can connect read, change and delete what it shows; keep the default "
            "127.0.0.1 (e.g. with an SSH tunnel: ssh -L 5000:127.0.0.1:5000 HOST), or add "
            "--allow-remote if the network is trusted"
        )
    print(
        f"warning: {what} on {host} is reachable from other machines, read/write and without "
        "authentication: anyone who can connect can change or delete what it shows",
        file=sys.stderr,
        flush=True,
    )


# printed before the server answers (MLflow's takes ~20 s on a busy machine): the URL refused
# connections until then, with nothing said between "press Ctrl-C to stop" and "ready:"
WAIT_LINE = "starting the server: the URL answers once 'ready:' is printed (press Ctrl-C to stop)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def base_url(host: str, port: int) -> str:
    """The address a browser on this machine opens (a wildcard bind is reached via loopback)."""
    shown = "127.0.0.1" if host in WILDCARDS else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def announce_when_up(url: str, probe: str, alive: Callable[[], bool], open_browser: bool) -> threading.Thread:
    """In the background: poll ``probe`` until the server answers (not when it died or after 3
    minutes), then say so and open the browser on ``url`` where there is a screen (macOS, Windows,
    an X/Wayland display; never a console browser)."""

    def run() -> None:
        deadline = time.monotonic() + 180
        while alive() and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(probe, timeout=5).close()
            except urllib.error.HTTPError:
                pass  # it answered
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
                continue
            print(f"ready: {url}", flush=True)
            screen = (
                sys.platform in ("darwin", "win32")
                or os.environ.get("DISPLAY")
                or os.environ.get("WAYLAND_DISPLAY")
            )
            if open_browser and screen:
                webbrowser.open(url)
            return

    thread = threading.Thread(target=run, name="bench-ui-announce", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def until_stopped() -> Iterator[None]:
    """Ctrl-C or SIGTERM ends the block quietly (exit 0): a server's normal way to stop."""

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_process(command: list[str], env: dict[str, str] | None = None,
                  on_start: Callable[[Callable[[], bool]], object] | None = None) -> int:  # fmt: skip
    """Run a server process until it exits, Ctrl-C or SIGTERM; stop it cleanly either way.
    ``on_start`` gets a function telling whether the server is still running."""
    proc = subprocess.Popen(command, env=env)
    if on_start is not None:
        on_start(lambda: proc.poll() is None)
    code = 0
    try:
        with until_stopped():
            code = proc.wait()
        return code
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- the MLflow UI -------------------------------------------------------------------------------


def server_command(host: str, port: int) -> list[str]:
    """The store is not on the command line (``ps`` shows it to every user of the machine, with its
    credentials): the server reads it from ``MLFLOW_BACKEND_STORE_URI`` (``server_env``)."""
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1"]


def server_env(uri: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_BACKEND_STORE_URI": uri}


def landing(client, base: str, experiment: str | None, loaded: Any | None, results_dir: str,
            compare: bool = False) -> str:  # fmt: skip
    """Prepare the experiment (description, model-training kind, saved view), say where the UI
    lands and why, and return that URL."""

    def say(line: str) -> None:
        print("  " + line, flush=True)

    if experiment is None:
        return view.home_url(base)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        hint = f"bench run {loaded.source}" if loaded is not None else "bench run RECIPE"
        say(f"no experiment '{experiment}' in this store yet; run `{hint}` first")
        return view.home_url(base)
    exp_id = exp.experiment_id
    run_keys = None  # the latest `bench run` of the experiment's latest recipe
    if loaded is not None:
        from bench.execution.identity import with_input_fingerprints

        if view.NOTE_TAG not in exp.tags:  # `bench run` wrote it with the command's overrides and flags
            view.describe_experiment(client, exp_id, loaded, results_dir)
        keyed = with_input_fingerprints(loaded)[0]  # the run keys `bench run` records (inputs included)
        run_keys = [v.run_key for v in keyed.variants]
    study = view.latest_study(client, exp_id, loaded and loaded.name, run_keys)
    if not study.runs:
        client.set_experiment_tag(exp_id, view.KIND_TAG, view.MODEL_TRAINING)
        say(f"experiment '{experiment}' has no variant runs yet")
        return view.experiment_url(base, exp_id)
    finished = study.finished
    say(
        f"experiment '{experiment}': latest study of '{study.recipe}', {len(study.runs)} run(s), {len(finished)} finished"
    )
    if compare and finished:
        key = view.save_view(client, study, compare=True)
        what = f"{view.COMPARE_Y} against {view.COMPARE_X}, one point per finished variant (mean over seeds)"
        say(f"{what} (saved view '{view.COMPARE_NAME}'):")
        return view.experiment_url(base, exp_id, key, charts=True)
    key = view.save_view(client, study)
    if compare:
        say("no finished run to compare yet; showing the runs table instead")
    say(f"one row per variant, mean over seeds, best test accuracy first (saved view '{view.VIEW_NAME}'):")
    return view.experiment_url(base, exp_id, key)


def serve_mlflow(uri: str, host: str, port: int, url: str, open_browser: bool) -> int:
    base = base_url(host, port)
    print(f"  {url}", flush=True)
    print(WAIT_LINE, flush=True)
    return serve_process(
        server_command(host, port),
        env=server_env(uri),
        on_start=lambda alive: announce_when_up(url, f"{base}/health", alive, open_browser),
    )


# --- optuna-dashboard ----------------------------------------------------------------------------


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002, ARG002 - one line per request is noise here
        pass


def serve_study(options: Any, host: str, port: int, open_browser: bool) -> int:
    """Serve the study of ``bench tune`` options; a clear error when it does not exist yet
    (nothing is created: the dashboard only looks)."""
    import optuna
    import optuna_dashboard

    from bench.tune.study import build_plan

    plan = build_plan(options, quiet=True)
    spec = plan.storage_spec()
    missing = (
        f"no study '{plan.study_name}' in {spec.display} yet; start it with `bench tune {plan.loaded.source}`"
    )
    if spec.path is not None and not spec.path.exists():
        raise BenchError(missing)
    storage = spec.open(plan.tune.liveness.heartbeat_interval, plan.tune.liveness.grace_period)
    if plan.study_name not in optuna.get_all_study_names(storage):
        raise BenchError(missing)
    study_id = storage.get_study_id_from_name(plan.study_name)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    httpd = make_server(host.strip("[]"), port, optuna_dashboard.wsgi(storage), server_class=server_class,
                        handler_class=_QuietHandler)  # fmt: skip
    base = base_url(host, httpd.server_port)
    url = f"{base}/dashboard/studies/{study_id}"
    print(f"optuna-dashboard for study '{plan.study_name}' ({spec.display}) at {base}", flush=True)
    print(f"  {url}", flush=True)
    print(WAIT_LINE, flush=True)
    announce_when_up(url, f"{base}/api/meta", lambda: True, open_browser)
    try:
        with until_stopped():
            httpd.serve_forever()
    finally:
        httpd.server_close()
    return 0
