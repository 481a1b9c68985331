"""``bench ui --tune RECIPE``: the recipe's Optuna study in optuna-dashboard, on the storage
``bench tune`` uses (journal file, SQLite or PostgreSQL), resolved by the same functions."""

from __future__ import annotations

import socket
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bench.errors import BenchError
from bench.ui import server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002, ARG002 - one line per request is noise here
        pass


def serve(options: Any, host: str, port: int, open_browser: bool) -> int:
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
    base = server.base_url(host, httpd.server_port)
    url = f"{base}/dashboard/studies/{study_id}"
    print(f"optuna-dashboard for study '{plan.study_name}' ({spec.display}) at {base}", flush=True)
    print(f"  {url}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    server.announce_when_up(url, f"{base}/api/meta", lambda: True, open_browser)
    try:
        with server.until_stopped():
            httpd.serve_forever()
    finally:
        httpd.server_close()
    return 0
