"""Progress for long runs: variants done/left with the time left, epoch, loss, images/s. A live
per-batch bar on a terminal (stderr a tty, unless told otherwise); one line per epoch otherwise (CI
logs stay readable). The time left counts each variant at its own earlier time where runs.csv has
one; each epoch line says how long this variant has left, from its own epochs so far. In a log, an
epoch that outlasts ``heartbeat_s`` (a GPU-sized recipe on a CPU: minutes per epoch) gets a line
of batches done, img/s and the epoch's time left every ``heartbeat_s``, so a long wait shows why."""

from __future__ import annotations

import io
import math
import os
import sys
import time
from typing import Any

from bench.execution.estimate import format_duration


def _fmt(record: dict[str, float], key: str, spec: str) -> str:
    value = record.get(key)
    return format(value, spec) if value is not None else "-"


def _has_width(stream: Any) -> bool:
    """Whether the terminal reports its width (a pty nobody sized, e.g. ``docker -t``, says 0)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return True  # not a terminal: tqdm's own defaults


HEARTBEAT_S = 60.0  # a line at least this often inside a long epoch, in a log


class Progress:
    def __init__(
        self, total: int, *, stream: Any = None, live: bool | None = None, heartbeat_s: float | None = None
    ):
        self.total = total
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self._last_line = time.perf_counter()
        self._epoch, self._epochs = 0, 0
        self.done = 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.name = ""
        self._bar: Any = None
        self._epoch_start = 0.0
        self._variant_start = 0.0
        self._epoch_times: list[float] = []
        self._pending: list[str] = []
        self._durations: list[float] = []  # of the variants trained here (not the ones skipped)
        self._expected: dict[str, float] = {}
        self._skipped: set[str] = set()

    def expect(self, seconds_by_name: dict[str, float]) -> None:
        """Variants' earlier wall times (bench/execution/estimate.py ``expected_times``)."""
        self._expected.update(seconds_by_name)

    def skipping(self, names: list[str]) -> None:
        """Runs recorded as skipped at once here (no device for them): they take no time."""
        self._expected.update(dict.fromkeys(names, 0.0))
        self._skipped.update(names)

    def pending(self, names: list[str]) -> None:
        """The variants about to run, in order: the time left counts each at its own time."""
        self._pending.extend(names)

    def runs_to_train(self) -> int:
        """Runs left, the current one included, less those to be skipped as already finished (0 s):
        what a variant's child projects the study's time over."""
        remaining = self.total - self.done
        return remaining - sum(1 for n in self._pending[:remaining] if self._expected.get(n) == 0)

    def note(self, text: str) -> None:
        """A line of its own, above the live bar if there is one."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
        self._last_line = time.perf_counter()

    def _time_left(self) -> str:
        """Each variant left at its own earlier time where known, the others at the mean of the
        variants trained here, or before any at the median of the earlier times."""
        remaining = self.total - self.done
        if self._durations:
            fallback: float | None = sum(self._durations) / len(self._durations)
        else:
            known = sorted(t for t in self._expected.values() if t > 0)
            fallback = known[len(known) // 2] if known else None
        names = self._pending[:remaining]
        times = [self._expected.get(n, fallback) for n in names] + [fallback] * (remaining - len(names))
        if remaining <= 0 or None in times:
            return ""
        if names and len(names) == remaining and not any(times):  # 0 s: finished, or skipped here
            skipped = len(self._skipped & set(names))
            if skipped == len(set(names)):
                return ", the rest skipped here"
            return ", the rest already finished" + (" or skipped here" if skipped else "")
        return f", ~{format_duration(sum(times))} left"

    def variant_start(self, name: str) -> None:
        self.name = name
        self._variant_start = time.perf_counter()
        self._epoch_times = []
        self.note(f"[{self.done}/{self.total} done, {self.total - self.done} left{self._time_left()}] {name}")
        if name in self._pending:
            self._pending.remove(name)

    def variant_end(self, status: str, summary: str = "") -> None:
        self.done += 1
        if status == "finished":  # trained here: its time says how long the rest will take
            self._durations.append(time.perf_counter() - self._variant_start)
        self.note(
            f"[{self.done}/{self.total} done{self._time_left()}] {self.name}: {status}"
            + (f" - {summary}" if summary else "")
        )

    def epoch_start(self, epoch: int, epochs: int) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch, self._epochs = epoch, epochs
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=0,
                desc=f"  epoch {epoch + 1}/{epochs}",
                leave=False,
                file=self.stream,
                unit="batch",
                ncols=None if _has_width(self.stream) else 100,  # tqdm draws nothing on a 0-column tty
            )

    def batch(self, index: int, count: int, loss_sum: Any, seen: int) -> None:
        if self._bar is None:
            self._heartbeat(index, count, seen)
            return
        if index == 0:
            self._bar.reset(total=count)
        self._bar.update(1)
        if index % 25 == 24 or index == count - 1:  # reading the loss synchronises the device: now and then
            rate = seen / max(time.perf_counter() - self._epoch_start, 1e-9)
            self._bar.set_postfix({"img/s": f"{rate:.0f}", "loss": f"{float(loss_sum) / max(seen, 1):.3f}"})

    def _heartbeat(self, index: int, count: int, seen: int) -> None:
        """Without a bar (a log), a line every ``heartbeat_s`` inside a long epoch."""
        now = time.perf_counter()
        if self.live or now - self._last_line < self.heartbeat_s:
            return
        took = now - self._epoch_start
        per_batch = took / (index + 1)
        # a GPU-sized recipe on a CPU: say at once what the whole study costs at this pace, so the
        # user stops it in the first minutes, not after a day
        per_run = per_batch * count * self._epochs
        runs_left = self.total - self.done
        study = (
            f", ~{format_duration(per_run * runs_left)} for the {runs_left} runs left"
            if runs_left > 1
            else ""
        )
        self.note(
            f"  {self.name} | epoch {self._epoch + 1}/{self._epochs}: batch {index + 1}/{count}, "
            f"{seen / max(took, 1e-9):.0f} img/s, ~{format_duration(per_batch * (count - index - 1))} left "
            f"in this epoch (at this pace ~{format_duration(per_run)} per run{study})"
        )

    def epoch_end(self, epoch: int, epochs: int, record: dict[str, float], raw: bool = False) -> None:
        """``raw``: a trick delivers its own model (SWA, EMA), scored only at the end: the epoch's
        accuracy is the trained weights', labelled ``_raw`` as in runs.csv, not the variant's result."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        took = time.perf_counter() - self._epoch_start
        self._epoch_times.append(took)
        acc = "val/acc" if "val/acc" in record else "test/acc"
        rate = record.get("throughput/train_img_s")
        speed = f"{rate:.0f} img/s" if rate is not None and math.isfinite(rate) else "too few steps to time"
        left = ""
        if epoch + 1 < epochs:  # this variant's own epochs, not the mean of other variants
            per_epoch = sum(self._epoch_times) / len(self._epoch_times)
            left = f", ~{format_duration(per_epoch * (epochs - epoch - 1))} left in this variant"
        self.note(
            f"  {self.name} | epoch {epoch + 1}/{epochs} loss {_fmt(record, 'train/loss', '.4f')} "
            f"{acc}{'_raw' if raw else ''} {_fmt(record, acc, '.4f')} lr {_fmt(record, 'train/lr', '.3g')} "
            f"{speed} ({took:.1f}s{left})"
        )
