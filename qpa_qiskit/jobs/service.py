"""Access to IBM Quantum through qiskit-ibm-runtime, and keeping credentials out of records.

A job store talks to the service only through :class:`RuntimeJobs` (submit, status, error,
result, cancel, find by tags), so the store's logic never depends on how the service is
reached; :mod:`.local` puts the runtime's local testing mode behind the same methods. Every
text that may be written or printed (errors, job messages) goes through :func:`redact`.
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

from ..backends.ibm import EXECUTION_MODES, describe, open_mode
from ..errors import InputError
from ..validate import one_of

if TYPE_CHECKING:
    from ..backends import QPABackend

MODES = EXECUTION_MODES  # job (each job queued on its own), batch, session


def describe_error(exc: BaseException) -> str:
    """One line for an exception, credentials redacted, at most 500 characters."""
    return describe(exc, 500)


def plain_usage(usage: dict) -> dict:
    """The JSON-writable entries of a usage report (numbers, strings, booleans, None)."""
    return {str(k): v for k, v in usage.items() if v is None or isinstance(v, (int, float, str, bool))}


def status_name(status: Any) -> str:
    """'DONE', 'QUEUED', ...: the runtime's string or a JobStatus enum, as one string."""
    return str(getattr(status, "name", status)).upper()


class RuntimeJobs:
    """Jobs on IBM Quantum through qiskit-ibm-runtime: the client-side Sampler in job, Batch or
    Session mode, runtime job tags, ``service.job(id)`` and ``service.jobs(job_tags=...)``."""

    def __init__(self, backend: QPABackend, mode: str = "batch") -> None:
        if not backend.runs_remotely:
            raise InputError(f"jobs run on ibm:<device> backends, not {backend.name!r}")
        self.backend = backend
        self.mode = one_of(mode, "execution mode", MODES)
        self._mode: Any = None
        self._jobs: dict[str, Any] = {}

    def open(self) -> Any:
        """Open the account, and the Batch or Session (job mode: the device); nothing is
        submitted yet. A Session or Batch the service refuses is an AccountError."""
        if self._mode is None:
            self._mode = open_mode(self.mode, self.backend.connect())
        return self._mode

    def sampler_options(self, tags: list[str]) -> Any:
        """The backend's sampler options (kept) with the job's runtime tags."""
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime.options_models import SamplerOptions

        given = self.backend.sampler_options
        options = SamplerOptions() if given is None else given.model_copy(deep=True)
        options.environment.job_tags = list(tags)
        return options

    def run_sampler(self, pubs: list, shots: int, tags: list[str], dry_run: bool = False) -> Any:
        """Run one Sampler job in the execution mode; returns the runtime's job object."""
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime.executor_sampler import Sampler

        sampler = Sampler(mode=self.open(), options=self.sampler_options(tags))
        return sampler.run(pubs, shots=shots, dry_run=True) if dry_run else sampler.run(pubs, shots=shots)

    def usage_estimate(self, pubs: list, shots: int) -> float | None:
        """The runtime's own estimate of the QPU seconds of one job: a dry run on the service
        (``Sampler.run(..., dry_run=True)``, executed on no QPU), read from the job's
        ``usage_estimation``. None where the installed runtime offers no estimate."""
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime.executor_sampler import Sampler

        if "dry_run" not in inspect.signature(Sampler.run).parameters:
            return None
        job = self.run_sampler(pubs, shots, ["qpa", "qpa-dry-run"], dry_run=True)
        estimate = getattr(job, "usage_estimation", None)
        if not isinstance(estimate, dict) or estimate.get("quantum_seconds") is None:
            return None
        return float(estimate["quantum_seconds"])

    def usage(self, job_id: str) -> dict | None:
        """The usage the service reports for a finished job (its ``metrics()['usage']``, QPU
        seconds charged and whether the figure is final); None if it reports none."""
        usage = self._job(job_id).metrics().get("usage")
        return plain_usage(usage) if isinstance(usage, dict) else None

    def submit(self, pubs: list, shots: int, tags: list[str]) -> str:
        """Submit one Sampler job; returns its id once the service has accepted it."""
        job = self.run_sampler(pubs, shots, tags)
        self._jobs[job.job_id()] = job
        return job.job_id()

    def _job(self, job_id: str) -> Any:
        if job_id not in self._jobs:
            self._jobs[job_id] = self.backend.service.job(job_id)
        return self._jobs[job_id]

    def status(self, job_id: str) -> str:
        return status_name(self._job(job_id).status())

    def error(self, job_id: str) -> str:
        return str(self._job(job_id).error_message() or "")

    def result(self, job_id: str) -> Any:
        return self._job(job_id).result()

    def cancel(self, job_id: str) -> None:
        self._job(job_id).cancel()

    def find(self, tags: list[str]) -> list[str]:
        """Ids of the jobs carrying all `tags` on this device, newest first."""
        jobs = self.backend.service.jobs(job_tags=list(tags), backend_name=self.backend.device_name, limit=20)
        return [job.job_id() for job in jobs]

    def close(self) -> None:
        """No more jobs in this batch or session; those submitted run to the end."""
        if self._mode is not None:
            mode, self._mode = self._mode, None
            if not callable(getattr(mode, "close", None)):  # job mode: the device, nothing to close
                return
            try:
                mode.close()
            except Exception as exc:  # the jobs are submitted and recorded; the service times it out
                warnings.warn(f"could not close the {self.mode}: {describe_error(exc)}", stacklevel=2)
