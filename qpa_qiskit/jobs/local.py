"""The stand-in for IBM Quantum's job records behind ``ibm:fake_<device>``.

The runtime's local testing mode runs a job in this process and forgets it when the process
ends; it has no ``service.job(id)`` and no ``service.jobs(job_tags=...)``. Without those,
nothing about collecting after a restart or reconciling by tags could be tested offline.
:class:`LocalTestingJobs` submits through the same client path as :class:`RuntimeJobs` and
keeps each finished job in an archive folder, as the service would. It exists for tests and
dry runs only: nothing here is used for a real device.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StateError
from ..files import atomic_write, read_json
from .npz import npz_bytes, read_npz
from .service import RuntimeJobs, describe_error, plain_usage

if TYPE_CHECKING:
    from ..backends import QPABackend

_HINT = (
    "it is the local stand-in's record of a job (ibm:fake_<device> only), which cannot be "
    "rebuilt: start a new job store"
)


class LocalTestingJobs(RuntimeJobs):
    """``ibm:fake_<device>``: submission through the same client path in the runtime's local
    testing mode, which runs the job in this process.

    Each finished job (tags, status, bit arrays) is kept in `archive`, so collecting and
    reconciling after a restart work as they do on IBM Quantum. A job exists once its record
    is in the archive: a process killed before that left no job behind, as if the request
    never arrived. Shots are seeded from the job's tags, so a job's counts do not depend on
    when it ran.
    """

    def __init__(self, backend: QPABackend, mode: str, archive: str | Path) -> None:
        super().__init__(backend, mode)
        self.archive = Path(archive)

    def sampler_options(self, tags: list[str]) -> Any:
        options = super().sampler_options(tags)
        content = "|".join(t for t in tags if not t.startswith("qpa-run:"))
        options.simulator.seed_simulator = zlib.crc32(content.encode())
        return options

    def submit(self, pubs: list, shots: int, tags: list[str]) -> str:
        job = self.run_sampler(pubs, shots, tags)
        job_id = job.job_id()
        record: dict[str, Any] = {
            "job_id": job_id,
            "tags": list(tags),
            "backend": self.backend.device_name,
            "created": time.time(),
            "status": "DONE",
            "error": "",
            "pubs": [],
            "usage": None,
        }
        arrays = {}
        try:
            result = job.result()
        except Exception as exc:
            record.update(status="ERROR", error=describe_error(exc))
        else:
            for i, pub in enumerate(result):
                registers = {}
                for name in pub.data:
                    bits = pub.data[name]
                    arrays[f"{i}.{name}"] = bits.array
                    registers[name] = bits.num_bits
                record["pubs"].append(registers)
            usage = job.metrics().get("usage")  # what the runtime reports: no QPU time locally
            record["usage"] = plain_usage(usage) if isinstance(usage, dict) else None
        atomic_write(self.archive / f"{job_id}.npz", npz_bytes(**arrays))
        atomic_write(self.archive / f"{job_id}.json", json.dumps(record).encode())
        return job_id

    def _read(self, path: Path) -> dict:
        record = read_json(path, "local job record", _HINT)
        if not isinstance(record, dict) or not {"job_id", "tags", "created", "status", "pubs"} <= set(record):
            raise StateError(f"local job record {path} is not a job record; {_HINT}")
        return record

    def _record(self, job_id: str) -> dict:
        path = self.archive / f"{job_id}.json"
        if not path.exists():
            # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
            from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return self._read(path)

    def status(self, job_id: str) -> str:
        return self._record(job_id)["status"]

    def error(self, job_id: str) -> str:
        return self._record(job_id).get("error", "")

    def usage(self, job_id: str) -> dict | None:
        usage = self._record(job_id).get("usage")
        return usage if isinstance(usage, dict) else None

    def usage_estimate(self, pubs: list, shots: int) -> float | None:
        """None: the runtime's local testing mode runs a dry run as a real one and estimates nothing."""
        return None

    def result(self, job_id: str) -> Any:
        # lazy: a qiskit submodule (import time), only on this path
        from qiskit.primitives.containers import BitArray, DataBin, PrimitiveResult, SamplerPubResult

        record = self._record(job_id)
        path = self.archive / f"{job_id}.npz"
        arrays = read_npz(path, "local job results", _HINT)
        pubs = []
        try:
            for i, registers in enumerate(record["pubs"]):
                data = {name: BitArray(arrays[f"{i}.{name}"], n) for name, n in registers.items()}
                shape = next(iter(data.values())).shape
                pubs.append(SamplerPubResult(DataBin(**data, shape=shape)))
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as exc:
            raise StateError(
                f"local job results {path} do not match {job_id}.json ({type(exc).__name__}: {exc}); {_HINT}"
            ) from None
        return PrimitiveResult(pubs)

    def cancel(self, job_id: str) -> None:
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        raise RuntimeInvalidStateError(f"job {job_id} already finished ({self.status(job_id)})")

    def find(self, tags: list[str]) -> list[str]:
        found = []
        for path in self.archive.glob("*.json"):
            record = self._read(path)
            if set(tags) <= set(record["tags"]):
                found.append((record["created"], record["job_id"]))
        return [job_id for _, job_id in sorted(found, reverse=True)]
