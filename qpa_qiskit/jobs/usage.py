"""The QPU time a job store has used and will use, read from its ledger.

Why from the ledger: it is the record of what was paid for, and it survives the process. A
job's QPU seconds are what the service reported for it (``usage.qpu_charge_time_seconds``,
recorded when it was collected or failed) where that figure is final; otherwise (the
runtime's local testing mode reports none, a job still queued or running, a submission whose
answer was lost) the cost model's projection (:mod:`qpa_qiskit.backends.cost`), so a job is
never counted as free because its figure is not known yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..backends.cost import ShotTiming, shot_timing
from .store import JobStore

CHARGED = "qpu_charge_time_seconds"  # the runtime's usage field (RuntimeJobV2.usage reads it)
FINISHED = ("collected", "failed", "cancelled")


def reported_seconds(usage: Any) -> float | None:
    """The QPU seconds a usage record states as final, else None (none, pending, not a number)."""
    if not isinstance(usage, dict) or usage.get("status") == "pending":
        return None
    value = usage.get(CHARGED)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class StoreUsage:
    """A store's QPU seconds: `recorded` for jobs with a ledger record (`reported` of them by
    the service, the others projected), `planned` for planned jobs never submitted."""

    recorded: float = 0.0
    reported_jobs: int = 0
    projected_jobs: int = 0
    planned: float = 0.0

    def __add__(self, other: StoreUsage) -> StoreUsage:
        return StoreUsage(
            self.recorded + other.recorded,
            self.reported_jobs + other.reported_jobs,
            self.projected_jobs + other.projected_jobs,
            self.planned + other.planned,
        )


def store_timing(store: JobStore, device: Any) -> ShotTiming:
    """The cost of one shot of the store's own ISA circuit on `device`, with its recorded
    sampler options (their rep_delay and init_qubits)."""
    return shot_timing(device, store.isa, store.meta.get("sampler_options"))


def store_usage(store: JobStore, timing: ShotTiming, *, reported: bool = True) -> StoreUsage:
    """The QPU seconds of every planned job of `store` (module docstring); `reported` False
    ignores the service's figures (local testing mode, which reports 0 for every job)."""
    state = store.ledger.state()
    recorded = planned = 0.0
    reported_jobs = projected_jobs = 0
    for label in store.labels():
        for job in store.plan(label):
            record = state.get(store.key(label, job.index))
            projection = timing.seconds(job.executions, 1)
            if record is None:
                planned += projection
                continue
            finished = reported and record.get("last") in FINISHED
            figure = reported_seconds(record.get("usage")) if finished else None
            if figure is None:
                recorded += projection
                projected_jobs += 1
            else:
                recorded += figure
                reported_jobs += 1
    return StoreUsage(recorded, reported_jobs, projected_jobs, planned)
