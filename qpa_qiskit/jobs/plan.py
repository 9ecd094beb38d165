"""Splitting an evaluation into Sampler jobs under the runtime's execution limit.

IBM Quantum refuses a Sampler job of more than :data:`MAX_EXECUTIONS` executions (parameter
sets x shots), so an evaluation's PUBs are packed, in order, into as few jobs as fit. The
plan depends only on the set counts, shots and limit: replayed after a restart it gives the
same jobs, which is what lets the ledger key them by index.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..validate import integer, positive_int

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
    shots = positive_int(shots, "shots")
    max_executions = positive_int(max_executions, "max_executions (executions per job)")
    counts = [integer(n, "a PUB's parameter-set count", minimum=0) for n in sets_per_pub]
    per_job = max_executions // shots
    if per_job < 1:
        raise InputError(
            f"{shots} shots exceed the limit of {max_executions:,} executions per job even for one "
            "parameter set; use fewer shots"
        )
    jobs: list[PlannedJob] = []
    current: list[tuple[int, int, int]] = []
    room = per_job
    for pub, n in enumerate(counts):
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
