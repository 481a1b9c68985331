"""Keeping Optuna's journal file loadable when a writer dies mid-line.

A worker killed while appending leaves a torn last line; Optuna reads past a torn *last* line, but
once anything is appended after it every reader fails (JSONDecodeError) until someone repairs it.
``RepairingJournalBackend`` cuts a torn tail before each of its appends, under the same lock
Optuna's own append takes (``JournalFileSymlinkLock``), so no bench writer ever glues onto one.
``repair_journal`` (once per command, before the storage opens) also salvages lines that other
writers glued, and refuses corruption in the middle. Both keep what they cut in a ``.bak`` file.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from bench.errors import TrackingError
from bench.faults import armed, fault_point
from bench.fileio import atomic_write

TAIL_CHUNK = 1 << 16


def _backup_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.bak")


def cut_torn_tail(path: Path) -> str | None:
    """Truncate an unterminated last line (call it holding the journal lock); a note, or None."""
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        end = size
        while end > 0:  # find the last newline, reading backwards a chunk at a time
            start = max(0, end - TAIL_CHUNK)
            fh.seek(start)
            found = fh.read(end - start).rfind(b"\n")
            if found >= 0:
                end = start + found + 1
                break
            end = start
        fh.seek(end)
        torn = fh.read()
        backup = _backup_name(path)
        backup.write_bytes(torn)
        fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())
    return f"cut a torn last line ({len(torn)} bytes, a writer killed mid-write) from {path} (kept in {backup.name})"


class RepairingJournalBackend(JournalFileBackend):
    """Optuna's journal file backend whose append first cuts a torn tail, under Optuna's lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = JournalFileSymlinkLock(str(self.path))
        super().__init__(str(self.path), lock_obj=self.lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self.lock.acquire()
        try:
            note = cut_torn_tail(self.path)
            if note:
                print(f"note: {note}", file=sys.stderr, flush=True)
            with open(self.path, "ab") as fh:
                half = len(data) // 2 if armed("tune.journal.mid_append") else 0
                if half:  # a test tears a line for real: half written, then the armed fault
                    fh.write(data[:half])
                    fh.flush()
                    fault_point("tune.journal.mid_append")
                fh.write(data[half:])
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            self.lock.release()


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def _salvage(line: bytes) -> bytes | None:
    """A torn line with a later append glued on: keep the complete entry at its end."""
    start = line.rfind(b'{"op_code":')
    while start > 0:
        if _parses(line[start:]):
            return line[start:]
        start = line.rfind(b'{"op_code":', 0, start)
    return None


def _journal_problem(data: bytes) -> tuple[bytes, list[str]] | None:
    """None when the journal is sound; else (repaired bytes, what was done)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    notes: list[str] = []
    kept: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        if _parses(line):
            kept.append(line)
            continue
        fixed = _salvage(line)
        if fixed is None:
            if any(_parses(later) for later in lines[number:]):
                raise TrackingError(
                    f"the Optuna journal is corrupt at line {number} of {len(lines)} (not just a torn "
                    "end), so it cannot be repaired safely; restore a backup or move the file away "
                    "to start the study afresh"
                )
            notes.append(f"dropped {len(lines) - number + 1} unreadable line(s) at the end")
            break
        kept.append(fixed)
        notes.append(f"line {number}: dropped {len(line) - len(fixed)} torn bytes before a complete entry")
    if tail:
        notes.append(f"dropped a torn last line ({len(tail)} bytes, a worker killed mid-write)")
    if not notes:
        return None
    return b"".join(line + b"\n" for line in kept), notes


def repair_journal(path: Path) -> str | None:
    """Make the whole journal loadable again, under Optuna's journal lock. Returns a note of what
    was repaired (the old file is kept beside it), or None when it was sound."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        found = _journal_problem(path.read_bytes())
        if found is None:
            return None
        repaired, notes = found
        backup = _backup_name(path)
        shutil.copyfile(path, backup)
        atomic_write(path, lambda fh: fh.write(repaired))
    finally:
        lock.release()
    return f"repaired the Optuna journal {path}: {'; '.join(notes)} (backup: {backup.name})"
