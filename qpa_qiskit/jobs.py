"""IBM Quantum job bookkeeping: splitting work under the runtime's limits, and a durable ledger.

Work in progress for the `qpa jobs` commands: this module holds the two pieces everything
else stands on.

* :func:`plan_jobs` splits parameter sets into Sampler jobs of at most
  ``MAX_EXECUTIONS`` executions (parameter sets x shots), never splitting a set.
* :class:`Ledger` is an append-only JSON Lines file, each record flushed and fsynced before
  the call returns. Replaying it gives the last known state of every submission; a record
  cut short by a crash (the last line) is ignored, so the file is always readable.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

MAX_EXECUTIONS = 10_000_000  # per Sampler job: circuits (parameter sets) x shots


@dataclass(frozen=True)
class PlannedJob:
    """One Sampler job: for each PUB, the range [start, stop) of its parameter sets."""

    index: int
    slices: tuple[tuple[int, int, int], ...]  # (pub, start, stop)
    shots: int

    @property
    def sets(self) -> int:
        return sum(stop - start for _, start, stop in self.slices)

    @property
    def executions(self) -> int:
        return self.sets * self.shots


def plan_jobs(sets_per_pub: list[int], shots: int, max_executions: int = MAX_EXECUTIONS) -> list[PlannedJob]:
    """Pack the parameter sets of every PUB, in order, into as few jobs as the limit allows."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise InputError(f"shots must be a positive integer, got {shots!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sets_per_pub):
        raise InputError(f"parameter-set counts must be non-negative integers, got {sets_per_pub!r}")
    per_job = max_executions // shots
    if per_job < 1:
        raise InputError(
            f"{shots} shots exceed the limit of {max_executions:,} executions per job even for one "
            "parameter set; use fewer shots"
        )
    jobs: list[PlannedJob] = []
    current: list[tuple[int, int, int]] = []
    room = per_job
    for pub, n in enumerate(sets_per_pub):
        start = 0
        while start < n:
            take = min(room, n - start)
            current.append((pub, start, start + take))
            start += take
            room -= take
            if room == 0:
                jobs.append(PlannedJob(len(jobs), tuple(current), shots))
                current, room = [], per_job
    if current:
        jobs.append(PlannedJob(len(jobs), tuple(current), shots))
    return jobs


class Ledger:
    """Append-only, fsynced JSON Lines record of submissions, keyed by a submission key."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, kind: str, key: str, **fields) -> dict:
        """Write one record durably: it is on disk when this returns."""
        record = {"kind": kind, "key": key, "time": time.time(), **fields}
        line = json.dumps(record, sort_keys=True) + "\n"
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not new and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a crash cut the last record short: start afresh
                    line = "\n" + line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:  # the directory entry of a new file must reach the disk too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return record

    def records(self) -> list[dict]:
        """Every complete record in order; a line cut short by a crash is skipped."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "kind" in record and "key" in record:
                out.append(record)
        return out

    def state(self) -> dict[str, dict]:
        """Replay: per key, the merged fields of its records and the last kind seen."""
        states: dict[str, dict] = {}
        for record in self.records():
            merged = states.setdefault(record["key"], {})
            merged.update({k: v for k, v in record.items() if k not in ("kind", "time")})
            merged["last"] = record["kind"]
            merged.setdefault("history", []).append(record["kind"])
        return states
