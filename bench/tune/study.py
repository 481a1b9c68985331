"""``bench tune``: prepare the stores once, run the workers (in this process, or spawned
processes that die with it), then write the outputs and close the study's MLflow parent run with
the truth: FINISHED, KILLED (Ctrl-C or SIGTERM: exit 130 / 143) or FAILED."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from dataclasses import replace
from typing import Any

from bench.errors import Terminated
from bench.tracking.uris import redact_uri
from bench.tune.liveness import active, finished_count, sweep
from bench.tune.plan import TuneOptions, build_plan, say
from bench.tune.prepare import close_orphan_runs, open_worker, prepare
from bench.tune.recheck import run_recheck
from bench.tune.worker import worker_loop
from bench.util.signals import closing_status, install_first_only, install_sigterm

STOP_WAIT = 60  # seconds spawned workers get to re-queue their trials after a stop


def run_study(options: TuneOptions) -> int:
    """Prepare once, run the workers, write the outputs; 0, or 1 when a worker process failed."""
    from bench.tune.outputs import write_outputs

    plan = build_plan(options)
    spec = plan.storage_spec()
    client, parent_id = prepare(plan)
    ctx = open_worker(plan, 0, client)
    trials = ctx.study.get_trials(deepcopy=False)
    done = finished_count(trials)
    options = replace(options, workers=useful_workers(options.workers, trials, plan.tune.n_trials))
    seeds = f" x seeds {plan.tuning_seeds}" if plan.tune.seeds_per_trial > 1 else ""
    say(
        f"study {plan.study_name}: {plan.tune.n_trials} trials{seeds} ({done} done), sampler "
        f"{plan.tune.sampler.name}, pruner {plan.tune.pruner.name}, objective "
        f"{plan.tune.objective.direction} {plan.tune.objective.metric}; storage {spec.display}; "
        f"{options.workers} worker(s)"
    )
    previous = install_sigterm(), signal.getsignal(signal.SIGINT)
    status, code, summary = "FINISHED", 0, ""
    try:
        if done < plan.tune.n_trials and options.ray is None:  # once, not a retrying wait per trial
            from bench.validate.preflight import fetch_pretrained

            fetch_pretrained(plan.loaded.variants, plan.loaded.source, lambda text: say(f"note: {text}"))
        if options.workers <= 1 and options.ray is None:
            worker_loop(ctx, 0)
        elif not fan_out(options):
            status, code = "FAILED", 1
        if code == 0 and finished_count(ctx.study.get_trials(deepcopy=False)) >= plan.tune.n_trials:
            run_recheck(ctx)
    except BaseException as exc:
        status = closing_status(exc)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the bookkeeping below runs to its end
        try:
            sweep(ctx.study, ctx.storage, plan.tune.liveness.grace_period)
            close_orphan_runs(client, ctx.study)  # a killed worker's run: FAILED, with the reason
            summary = write_outputs(plan, ctx.study, client, parent_id)
        finally:
            client.set_terminated(parent_id, status)
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    say(summary)
    say(f"see the study in optuna-dashboard: {dashboard_command(options)}")
    return code


def useful_workers(workers: int, trials: list[Any], n_trials: int) -> int:
    """No more workers than trials left to run (``trials``: the study's, as read at start): a
    continued study with one slot left and two workers would otherwise start two trials at once
    and end one over ``n_trials``."""
    trials = active(trials)
    unfinished = sum(t.state.name in ("WAITING", "RUNNING") for t in trials)  # queued, or a dead command's
    todo = max(n_trials - len(trials), 0) + unfinished
    return max(1, min(workers, todo))


def fan_out(options: TuneOptions) -> bool:
    """Run ``options.workers`` spawned worker processes; a stop (Ctrl-C, SIGTERM) is passed on to
    them and they re-queue their trials. False when a worker failed. With ``--executor ray`` the
    workers are Ray tasks instead (bench/tune/ray_workers.py)."""
    import multiprocessing as mp

    if options.ray is not None:
        from bench.tune.ray_workers import run_tune_workers

        return run_tune_workers(options, options.ray, say)

    context = mp.get_context("spawn")
    procs = [
        context.Process(target=worker_entry, args=(options, i, os.getpid()), name=f"bench-tune-{i}")
        for i in range(options.workers)
    ]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=STOP_WAIT)
            if p.is_alive():
                p.kill()
                p.join()
        raise
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        say(f"error: {len(bad)} worker(s) exited with codes {bad}; the study keeps what they recorded")
    return not bad


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM this worker when the parent dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the request took effect
        raise Terminated("the bench tune parent process is gone")


def worker_entry(options: TuneOptions, index: int, parent_pid: int) -> None:
    """A spawned worker process: the stores already exist; open them and claim trials."""
    from bench.execution.task import set_torch_threads

    install_first_only()  # the parent's death, a terminal's Ctrl-C and the parent's forwarded
    try:  # SIGTERM can all arrive: only the first may interrupt, the rest would cut the re-queueing
        _die_with_parent(parent_pid)
        set_torch_threads(workers=options.workers)  # the granted cores shared, not the machine's
        worker_loop(open_worker(build_plan(options, quiet=True), index), index)
    except KeyboardInterrupt as exc:
        sys.exit(128 + signal.SIGTERM if isinstance(exc, Terminated) else 130)


def dashboard_command(options: TuneOptions) -> str:
    """The command ``bench tune`` prints when it finishes: the same study in optuna-dashboard.
    A password in ``--storage`` is shown as ``***`` (type it, or set it in ~/.pgpass)."""
    parts = ["bench", "ui", "--tune", shlex.quote(str(options.recipe))]
    parts += [shlex.quote(o) for o in options.overrides]
    for overlay in options.overlays:
        parts += ["--overlay", shlex.quote(overlay)]
    if str(options.results_dir) != "results":
        parts += ["--results-dir", shlex.quote(str(options.results_dir))]
    if options.storage:
        parts += ["--storage", shlex.quote(redact_uri(options.storage))]
    if options.study:
        parts += ["--study", shlex.quote(options.study)]
    return " ".join(parts)
