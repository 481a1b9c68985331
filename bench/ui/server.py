"""What every ``bench ui`` server shares: loopback unless the user says otherwise (both servers
read and write with no authentication), a URL that a local browser can open, waiting until the
server answers before saying it is ready, and a browser only where there is a screen."""

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

from bench.errors import BenchError

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
