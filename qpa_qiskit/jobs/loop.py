"""Training with the hardware in the loop: each QNN evaluation becomes recorded jobs.

A training step on IBM Quantum may wait hours in a queue, and the process may die while it
waits. :class:`HardwareLoop` is what an ``ibm:`` backend is given as ``hardware_loop=``: it
turns each evaluation into jobs of a job store, labelled by the training step, so a
replayed step collects the jobs it already paid for instead of submitting more.

Training runs in job mode by default: each step's job depends on the step before, so a Batch
gains nothing, and a Session (which Open Plan instances may not open) bills its wall-clock
time, the classical work between steps included. ``mode="batch"`` or ``"session"`` choose
those (a session keeps the device between steps, where the plan allows it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qiskit import QuantumCircuit

from ..errors import InputError, JobsError
from ..validate import one_of, positive_number
from . import sync
from .service import MODES, RuntimeJobs
from .store import JobStore, check_label

CALIBRATION_SUFFIX = "-m3-calibration"  # the calibration store beside a loop's own

if TYPE_CHECKING:
    from ..backends import QPABackend


class HardwareLoop:
    """Recorded, resumable jobs for the evaluations of an ``ibm:`` backend, in the job store
    `root` (created on the first evaluation). Set :attr:`label` before each evaluation (the
    training step); a replayed step with the same values collects its recorded jobs."""

    def __init__(
        self,
        root: str | Path,
        *,
        resubmit_unconfirmed: bool = False,
        retry_failed: bool = False,
        log: Callable[[str], None] = print,
        poll: float = 5.0,
        command: str = "the same command",
        mode: str = "job",
    ) -> None:
        self.root = Path(root)
        self.mode = one_of(mode, "execution mode", MODES)
        self.resubmit_unconfirmed = resubmit_unconfirmed
        self.retry_failed = retry_failed
        self.log = log
        self.poll = positive_number(poll, "poll (seconds)")
        self.command = command
        self.label: str | None = None
        self._store: JobStore | None = None
        self._service: RuntimeJobs | None = None
        self._calibration: HardwareLoop | None = None
        self._options = dict(resubmit_unconfirmed=resubmit_unconfirmed, retry_failed=retry_failed, log=log,
                             poll=poll, command=command, mode=mode)  # fmt: skip

    def calibration(self) -> HardwareLoop:
        """The loop of the readout calibration circuits (``mitigation="m3"``): a job store of its
        own beside this one (``<root>-m3-calibration``), its one evaluation labelled
        ``m3-calibration``, so a resumed run collects the calibration it already paid for."""
        if self._calibration is None:
            self._calibration = HardwareLoop(
                self.root.with_name(self.root.name + CALIBRATION_SUFFIX), **self._options
            )
            self._calibration.label = "m3-calibration"
        return self._calibration

    def _open(self, backend: QPABackend, circuit: QuantumCircuit) -> JobStore:
        if self._store is None:
            if (self.root / "store.json").exists() or (self.root.exists() and not self.root.is_dir()):
                self._store = JobStore(self.root)
            else:
                self._store = JobStore.create(self.root, backend, circuit, kind="training", mode=self.mode)
        return self._store

    def probabilities(
        self, backend: QPABackend, circuit: QuantumCircuit, values: np.ndarray, shots: int
    ) -> np.ndarray:
        """What ``backend.probabilities(circuit, values)`` returns, (B, 2^N), through
        recorded jobs of the evaluation :attr:`label`: submitted once, then collected."""
        if self.label is None:
            raise InputError("a hardware evaluation needs a label (the training step) before it runs")
        label = check_label(self.label)
        store = self._open(backend, circuit)
        if store.shots != shots or store.meta["backend"] != backend.name:
            raise InputError(
                f"{self.root} runs {store.meta['backend']} with {store.shots} shots, not "
                f"{backend.name} with {shots}"
            )
        if self._service is None:
            self._service = store.service(backend, mode=self.mode)
        store.add(label, [values])
        report = sync.submit(
            store,
            label,
            self._service,
            resubmit_unconfirmed=self.resubmit_unconfirmed,
            retry_failed=self.retry_failed,
            log=self.log,
        )
        if report.unconfirmed:
            raise JobsError(sync.unconfirmed_message(store, report.unconfirmed, self.command))
        report = sync.collect(store, label, self._service, wait=True, poll=self.poll, log=self.log)
        if report.failed:
            detail = "; ".join(f"{k}: {v}" for k, v in report.failed.items())
            raise JobsError(
                f"job(s) of {label} failed on {store.meta['backend']}: {detail}. To submit "
                f"them again, run: {self.command} --retry-failed"
            )
        return store.probabilities(label)

    def close(self) -> None:
        """Close the Batch or Session (if any); jobs already submitted run to the end."""
        if self._calibration is not None:
            self._calibration.close()
        if self._service is not None:
            self._service.close()
            self._service = None
