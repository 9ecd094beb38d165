"""Access to IBM Quantum through qiskit-ibm-runtime, and keeping credentials out of records.

A job store talks to the service only through :class:`RuntimeJobs` (submit, status, error,
result, cancel, find by tags), so the store's logic never depends on how the service is
reached; :mod:`.local` puts the runtime's local testing mode behind the same methods. Every
text that may be written or printed (errors, job messages) goes through :func:`redact`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..backends.ibm import describe
from ..errors import InputError
from ..validate import one_of

if TYPE_CHECKING:
    from ..backends import QPABackend

MODES = ("batch", "session")


def describe_error(exc: BaseException) -> str:
    """One line for an exception, credentials redacted, at most 500 characters."""
    return describe(exc, 500)


def status_name(status: Any) -> str:
    """'DONE', 'QUEUED', ...: the runtime's string or a JobStatus enum, as one string."""
    return str(getattr(status, "name", status)).upper()


class RuntimeJobs:
    """Jobs on IBM Quantum through qiskit-ibm-runtime: the client-side Sampler in Batch or
    Session mode, runtime job tags, ``service.job(id)`` and ``service.jobs(job_tags=...)``."""

    def __init__(self, backend: QPABackend, mode: str = "batch") -> None:
        if backend.kind != "ibm":
            raise InputError(f"jobs run on ibm:<device> backends, not {backend.name!r}")
        self.backend = backend
        self.mode = one_of(mode, "execution mode", MODES)
        self._mode: Any = None
        self._jobs: dict[str, Any] = {}

    def open(self) -> Any:
        """Open the account and the Batch or Session; nothing is submitted yet."""
        if self._mode is None:
            from qiskit_ibm_runtime import Batch, Session

            self._mode = (Batch if self.mode == "batch" else Session)(backend=self.backend.connect())
        return self._mode

    def sampler_options(self, tags: list[str]) -> Any:
        """The backend's sampler options (kept) with the job's runtime tags."""
        from qiskit_ibm_runtime.options_models import SamplerOptions

        given = self.backend.options.get("sampler_options")
        options = (
            given.model_copy(deep=True)
            if isinstance(given, SamplerOptions)
            else SamplerOptions(**(given or {}))
        )
        options.environment.job_tags = list(tags)
        return options

    def run_sampler(self, pubs: list, shots: int, tags: list[str]) -> Any:
        """Run one Sampler job in the Batch or Session; returns the runtime's job object."""
        from qiskit_ibm_runtime.executor_sampler import Sampler

        sampler = Sampler(mode=self.open(), options=self.sampler_options(tags))
        return sampler.run(pubs, shots=shots)

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
            try:
                mode.close()
            except Exception as exc:  # the jobs are submitted and recorded; the service times it out
                warnings.warn(f"could not close the {self.mode}: {describe_error(exc)}", stacklevel=2)
