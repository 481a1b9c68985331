"""Progress for long runs: variants done/left with the time left, epoch, loss, images/s. A live bar
on a terminal; one line per epoch otherwise (CI logs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.estimate import Eta, format_duration


def _fmt(record: dict[str, float], key: str, spec: str) -> str:
    value = record.get(key)
    return format(value, spec) if value is not None else "-"


class Progress:
    def __init__(self, total: int, *, stream: Any = None, live: bool | None = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.name = ""
        self._bar: Any = None
        self._epoch_start = 0.0
        self._variant_start = 0.0
        self.eta = Eta()

    def note(self, text: str) -> None:
        """A line of its own, above the live bar if there is one."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _time_left(self) -> str:
        left = self.eta.left(self.total - self.done)
        return f", ~{format_duration(left)} left" if left is not None else ""

    def variant_start(self, name: str) -> None:
        self.name = name
        self._variant_start = time.perf_counter()
        self.note(f"[{self.done}/{self.total} done, {self.total - self.done} left{self._time_left()}] {name}")

    def variant_end(self, status: str, summary: str = "") -> None:
        self.done += 1
        if status == "finished":  # trained here: its time says how long the rest will take
            self.eta.add(time.perf_counter() - self._variant_start)
        self.note(
            f"[{self.done}/{self.total} done{self._time_left()}] {self.name}: {status}"
            + (f" - {summary}" if summary else "")
        )

    def epoch_start(self, epoch: int, epochs: int) -> None:
        self._epoch_start = time.perf_counter()
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=0, desc=f"  epoch {epoch + 1}/{epochs}", leave=False, file=self.stream, unit="batch"
            )

    def batch(self, index: int, count: int, loss_sum: Any, seen: int) -> None:
        if self._bar is None:
            return
        if index == 0:
            self._bar.reset(total=count)
        self._bar.update(1)
        if index % 25 == 24:  # reading the loss synchronises the device: only now and then
            self._bar.set_postfix(loss=f"{float(loss_sum) / max(seen, 1):.3f}")

    def epoch_end(self, epoch: int, epochs: int, record: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        acc = "val/acc" if "val/acc" in record else "test/acc"
        self.note(
            f"  {self.name} | epoch {epoch + 1}/{epochs} loss {_fmt(record, 'train/loss', '.4f')} "
            f"{acc} {_fmt(record, acc, '.4f')} lr {_fmt(record, 'train/lr', '.3g')} "
            f"{_fmt(record, 'throughput/train_img_s', '.0f')} img/s ({time.perf_counter() - self._epoch_start:.1f}s)"
        )
