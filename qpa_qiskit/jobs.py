"""IBM Quantum jobs that survive days in a queue: planned under the runtime's limits,
recorded in a durable ledger, collected exactly once.

A *job store* is a directory (``jobs/<name>`` for ``qpa jobs``, ``<run>/jobs`` for training
in the loop)::

    store.json          what runs: backend, shots, store id (the run tag); written once
    circuit.qpy         the ISA circuit, transpiled once; every job of the store runs it
    values/<label>.npz  the parameter sets of one evaluation, written before any submission
    ledger.jsonl        append-only, fsynced: intent, submitted (job id), status, collected
    counts/<key>.npz    the counts of one job, written atomically before its 'collected' record
    local-service/      ibm:fake_<device> only: the stand-in for the service's own job store

An *evaluation* (label ``batch``, ``step-000012``, ...) is one or more PUBs, each one
circuit with an array of parameter sets; it is split into jobs (keys ``<label>/job-0000``)
of at most :data:`MAX_EXECUTIONS` executions. The ledger decides everything: a job whose id
is recorded is never submitted again, and an intent with no id (the process died during the
call) is looked up on the service by its job tags before anything is resubmitted.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path

import numpy as np
from qiskit import QuantumCircuit

from .backends import QPABackend, pub_counts
from .errors import InputError, JobsError
from .files import atomic_directory, atomic_write, fsync_dir

MAX_EXECUTIONS = 10_000_000  # per Sampler job: circuits (parameter sets) x shots
FINAL_STATES = ("DONE", "ERROR", "CANCELLED")
MODES = ("batch", "session")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------- planning
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


# --------------------------------------------------------------------------- files
def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class Ledger:
    """Append-only, fsynced JSON Lines record of submissions, keyed by a job key."""

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
            fsync_dir(self.path.parent)
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
        """Replay: per key, the merged fields of its records and the last kind seen.

        An ``intent`` starts a new attempt: fields of earlier attempts are dropped (their job
        ids stay listed under ``earlier_job_ids``, their kinds in ``history``).
        """
        states: dict[str, dict] = {}
        for record in self.records():
            merged = states.setdefault(record["key"], {"history": [], "earlier_job_ids": []})
            if record["kind"] == "intent":
                if merged.get("job_id"):
                    merged["earlier_job_ids"].append(merged["job_id"])
                keep = ("history", "earlier_job_ids")
                for name in [k for k in merged if k not in keep]:
                    del merged[name]
            merged.update({k: v for k, v in record.items() if k not in ("kind", "time")})
            merged["last"] = record["kind"]
            merged["history"].append(record["kind"])
        return states


# --------------------------------------------------------------------------- service
def _secrets() -> list[str]:
    """Credentials that must never be written anywhere: the token of the environment and of
    every saved account."""
    found = [os.environ.get("QISKIT_IBM_TOKEN", "")]
    try:
        from qiskit_ibm_runtime import QiskitRuntimeService

        found += [str(a.get("token") or "") for a in QiskitRuntimeService.saved_accounts().values()]
    except Exception:  # no readable account file: nothing saved to hide
        pass
    return [s for s in found if len(s) >= 8]


def redact(text: str) -> str:
    """`text` with every credential replaced by ***."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:500]


def is_transient(exc: BaseException) -> bool:
    """Network trouble or a server-side hiccup, worth retrying; not a job's own failure."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        import requests
        from qiskit_ibm_runtime.api.exceptions import RequestsApiError
        from qiskit_ibm_runtime.exceptions import (
            IBMRuntimeError,
            RuntimeInvalidStateError,
            RuntimeJobMaxTimeoutError,
            RuntimeJobNotFound,
        )
    except ImportError:  # pragma: no cover - qiskit-ibm-runtime is a dependency
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, RequestsApiError):
        code = getattr(exc, "status_code", None)
        return code is None or code == 429 or code >= 500
    if isinstance(exc, (RuntimeJobNotFound, RuntimeInvalidStateError, RuntimeJobMaxTimeoutError)):
        return False
    return isinstance(exc, IBMRuntimeError)  # e.g. "Failed to retrieve job": a failed request


def with_retries(
    fn: Callable,
    what: str,
    *,
    attempts: int = 6,
    base_delay: float = 2.0,
    max_delay: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
):
    """`fn()`, retried with exponential backoff and jitter while it fails transiently."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise JobsError(
                    f"{what} still fails after {attempts} attempts ({_describe(exc)}). Nothing "
                    "recorded is lost: run the same command again later."
                ) from None
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log(f"{what}: {_describe(exc)}; retry {attempt} of {attempts - 1} in {delay:.0f} s")
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def status_name(status) -> str:
    """'DONE', 'QUEUED', ...: the runtime's string or a JobStatus enum, as one string."""
    return str(getattr(status, "name", status)).upper()


class RuntimeJobs:
    """Jobs on IBM Quantum through qiskit-ibm-runtime: the client-side Sampler in Batch or
    Session mode, runtime job tags, ``service.job(id)`` and ``service.jobs(job_tags=...)``."""

    def __init__(self, backend: QPABackend, mode: str = "batch") -> None:
        if backend.kind != "ibm":
            raise InputError(f"jobs run on ibm:<device> backends, not {backend.name!r}")
        if mode not in MODES:
            raise InputError(f"execution mode must be one of {MODES}, got {mode!r}")
        self.backend = backend
        self.mode = mode
        self._mode = None
        self._jobs: dict[str, object] = {}

    def open(self):
        """Open the account and the Batch or Session; nothing is submitted yet."""
        return self._execution_mode()

    def _execution_mode(self):
        if self._mode is None:
            from qiskit_ibm_runtime import Batch, Session

            self._mode = (Batch if self.mode == "batch" else Session)(backend=self.backend.connect())
        return self._mode

    def _sampler_options(self, tags: list[str]):
        from qiskit_ibm_runtime.options_models import SamplerOptions

        given = self.backend.options.get("sampler_options")
        options = (
            given.model_copy(deep=True)
            if isinstance(given, SamplerOptions)
            else SamplerOptions(**(given or {}))
        )
        options.environment.job_tags = list(tags)
        return options

    def submit(self, pubs: list, shots: int, tags: list[str]) -> str:
        """Submit one Sampler job; returns its id once the service has accepted it."""
        from qiskit_ibm_runtime.executor_sampler import Sampler

        sampler = Sampler(mode=self._execution_mode(), options=self._sampler_options(tags))
        job = sampler.run(pubs, shots=shots)
        self._jobs[job.job_id()] = job
        return job.job_id()

    def _job(self, job_id: str):
        if job_id not in self._jobs:
            self.backend.connect()
            self._jobs[job_id] = self.backend.service.job(job_id)
        return self._jobs[job_id]

    def status(self, job_id: str) -> str:
        return status_name(self._job(job_id).status())

    def error(self, job_id: str) -> str:
        return str(self._job(job_id).error_message() or "")

    def result(self, job_id: str):
        return self._job(job_id).result()

    def cancel(self, job_id: str) -> None:
        self._job(job_id).cancel()

    def find(self, tags: list[str]) -> list[str]:
        """Ids of the jobs carrying all `tags` on this device, newest first."""
        self.backend.connect()
        jobs = self.backend.service.jobs(job_tags=list(tags), backend_name=self.backend.device_name, limit=20)
        return [job.job_id() for job in jobs]

    def close(self) -> None:
        """No more jobs in this batch or session; those submitted run to the end."""
        if self._mode is not None:
            mode, self._mode = self._mode, None
            try:
                mode.close()
            except Exception as exc:  # the jobs are submitted and recorded; the service times it out
                import warnings

                warnings.warn(f"could not close the {self.mode}: {_describe(exc)}", stacklevel=2)


class LocalTestingJobs(RuntimeJobs):
    """``ibm:fake_<device>``: submission through the same client path in the runtime's local
    testing mode, which runs the job in this process.

    Local mode keeps no jobs once the process ends and has no ``service.job(id)`` or
    ``service.jobs(job_tags=...)``; this stand-in keeps each finished job (tags, status,
    bit arrays) in `archive`, as the service does, so collecting and reconciling after a
    restart work as they do on IBM Quantum. A job exists once its record is in the archive:
    a process killed before that left no job behind, as if the request never arrived. Shots
    are seeded from the job's tags, so a job's counts do not depend on when it ran.
    """

    def __init__(self, backend: QPABackend, mode: str, archive: Path) -> None:
        super().__init__(backend, mode)
        self.archive = Path(archive)

    def _sampler_options(self, tags: list[str]):
        options = super()._sampler_options(tags)
        content = "|".join(t for t in tags if not t.startswith("qpa-run:"))
        options.simulator.seed_simulator = zlib.crc32(content.encode())
        return options

    def submit(self, pubs: list, shots: int, tags: list[str]) -> str:
        job_id = super().submit(pubs, shots, tags)
        job = self._jobs.pop(job_id)
        record = {
            "job_id": job_id,
            "tags": list(tags),
            "backend": self.backend.device_name,
            "created": time.time(),
            "status": "DONE",
            "error": "",
            "pubs": [],
        }
        arrays = {}
        try:
            result = job.result()
        except Exception as exc:
            record.update(status="ERROR", error=_describe(exc))
        else:
            for i, pub in enumerate(result):
                registers = {}
                for name in pub.data:
                    bits = pub.data[name]
                    arrays[f"{i}.{name}"] = bits.array
                    registers[name] = bits.num_bits
                record["pubs"].append(registers)
        atomic_write(self.archive / f"{job_id}.npz", _npz_bytes(**arrays))
        atomic_write(self.archive / f"{job_id}.json", json.dumps(record).encode())
        return job_id

    def _record(self, job_id: str) -> dict:
        path = self.archive / f"{job_id}.json"
        if not path.exists():
            from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return json.loads(path.read_text())

    def status(self, job_id: str) -> str:
        return self._record(job_id)["status"]

    def error(self, job_id: str) -> str:
        return self._record(job_id)["error"]

    def result(self, job_id: str):
        from qiskit.primitives.containers import BitArray, DataBin, PrimitiveResult, SamplerPubResult

        record = self._record(job_id)
        with np.load(self.archive / f"{job_id}.npz") as arrays:
            pubs = []
            for i, registers in enumerate(record["pubs"]):
                data = {name: BitArray(arrays[f"{i}.{name}"], n) for name, n in registers.items()}
                shape = next(iter(data.values())).shape
                pubs.append(SamplerPubResult(DataBin(**data, shape=shape)))
        return PrimitiveResult(pubs)

    def cancel(self, job_id: str) -> None:
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        raise RuntimeInvalidStateError(f"job {job_id} already finished ({self.status(job_id)})")

    def find(self, tags: list[str]) -> list[str]:
        found = []
        for path in self.archive.glob("*.json"):
            record = json.loads(path.read_text())
            if set(tags) <= set(record["tags"]):
                found.append((record["created"], record["job_id"]))
        return [job_id for _, job_id in sorted(found, reverse=True)]


# --------------------------------------------------------------------------- store
def _exclusive(what: str):
    """Run a JobStore method holding the store's lock, so that two processes can never
    submit (or collect) the same jobs at once. The kernel drops the lock when the process
    dies, even by SIGKILL, so a crash never leaves the store locked. (No lock on systems
    without fcntl, such as Windows.)"""

    def decorate(method):
        @wraps(method)
        def locked(self, *args, **kwargs):
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows
                return method(self, *args, **kwargs)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise JobsError(
                        f"another process is working on {self.root} right now; {what} waits until "
                        "it has finished (or is stopped): run this again then"
                    ) from None
                return method(self, *args, **kwargs)
            finally:
                os.close(fd)  # releases the lock

        return locked

    return decorate


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not _LABEL.match(label):
        raise InputError(
            f"an evaluation label is 1-64 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, got {label!r}"
        )
    return label


@dataclass
class Report:
    """What one submit or collect pass did, per job key."""

    submitted: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # key -> status
    failed: dict[str, str] = field(default_factory=dict)  # key -> status and error
    unconfirmed: list[str] = field(default_factory=list)  # intents with no id and no job under their tags


class JobStore:
    """A directory of recorded IBM Quantum jobs for one ISA circuit; see the module doc."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta = self.root / "store.json"
        if not meta.exists():
            raise InputError(
                f"{self.root} is not a job store (no store.json); create one with qpa jobs submit"
            )
        self.meta = json.loads(meta.read_text())
        self.ledger = Ledger(self.root / "ledger.jsonl")
        self._isa: QuantumCircuit | None = None

    @classmethod
    def create(
        cls,
        root: str | Path,
        backend: QPABackend,
        circuit: QuantumCircuit,
        *,
        kind: str = "batch",
        mode: str = "batch",
        max_executions: int = MAX_EXECUTIONS,
        describe: dict | None = None,
        evaluations: dict[str, list[np.ndarray]] | None = None,
    ) -> JobStore:
        """Transpile `circuit` once for `backend` and write the store with its first
        `evaluations` (label -> PUB value arrays); it appears whole or not at all."""
        from qiskit import qpy

        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise InputError(f"{root} exists and is not empty; choose a new directory for the jobs")
        if backend.kind != "ibm":
            raise InputError(
                f"jobs run on IBM Quantum: use an ibm:<device> backend (ibm:fake_<device> runs "
                f"locally), not {backend.name!r}"
            )
        if mode not in MODES:
            raise InputError(f"execution mode must be one of {MODES}, got {mode!r}")
        isa = backend.isa_circuit(circuit)
        n_bits = backend.num_outcome_bits(circuit)
        shots = backend.num_shots(n_bits)
        plan_jobs([1], shots, max_executions)  # shots alone must fit a job
        meta = {
            "format": 1,
            "id": uuid.uuid4().hex[:12],
            "kind": kind,
            "backend": backend.name,
            "mode": mode,
            "shots": shots,
            "shots_factor": backend.shots_factor,
            "n_bits": n_bits,
            "parameters": [p.name for p in circuit.parameters],
            "max_executions": max_executions,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "circuit": describe or {},
        }
        with atomic_directory(root) as tmp:
            buffer = io.BytesIO()
            qpy.dump(isa, buffer)
            atomic_write(tmp / "circuit.qpy", buffer.getvalue())
            atomic_write(tmp / "store.json", json.dumps(meta, indent=2).encode())
            for label, pubs in (evaluations or {}).items():
                cls(tmp).add(label, pubs)
        return cls(root)

    # ------------------------------------------------------------------ what runs
    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def shots(self) -> int:
        return self.meta["shots"]

    @property
    def isa(self) -> QuantumCircuit:
        if self._isa is None:
            from qiskit import qpy

            with open(self.root / "circuit.qpy", "rb") as f:
                self._isa = qpy.load(f)[0]
        return self._isa

    def backend(self, **options) -> QPABackend:
        """The store's backend; the IBM Quantum account is opened only when a job must be
        submitted or fetched, so collected results read back with no account."""
        return QPABackend(self.meta["backend"], shots=self.shots, **{"connect": False, **options})

    def service(self, backend: QPABackend | None = None) -> RuntimeJobs:
        backend = backend or self.backend()
        if backend.is_local_testing:
            return LocalTestingJobs(backend, self.meta["mode"], self.root / "local-service")
        return RuntimeJobs(backend, self.meta["mode"])

    # ------------------------------------------------------------------ evaluations
    def add(self, label: str, pubs: list[np.ndarray]) -> list[PlannedJob]:
        """Record the parameter sets of an evaluation (once); the same label with other
        values is refused, so a replayed training step can never reuse a stale result."""
        _check_label(label)
        n_params = len(self.meta["parameters"])
        arrays = []
        for values in pubs:
            values = np.asarray(values, dtype=np.float64)
            if values.ndim == 1:
                values = values[None, :]
            if values.ndim != 2 or values.shape[1] != n_params or len(values) < 1:
                raise InputError(
                    f"parameter sets must have shape (B, {n_params}) for this circuit, got {values.shape}"
                )
            if not np.all(np.isfinite(values)):
                raise InputError("parameter values must be finite numbers")
            arrays.append(values)
        if not arrays:
            raise InputError("an evaluation needs at least one PUB of parameter sets")
        path = self.root / "values" / f"{label}.npz"
        if path.exists():
            stored = self.values(label)
            same = len(stored) == len(arrays) and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(stored, arrays, strict=False)
            )
            if not same:
                raise JobsError(
                    f"evaluation {label!r} of {self.root} was recorded with other parameter values; "
                    "its jobs belong to those values. Use a new label (or a new job store)"
                )
        else:
            atomic_write(path, _npz_bytes(**{f"pub{i}": a for i, a in enumerate(arrays)}))
        return self.plan(label)

    def labels(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "values").glob("*.npz"))

    def values(self, label: str) -> list[np.ndarray]:
        path = self.root / "values" / f"{_check_label(label)}.npz"
        if not path.exists():
            raise InputError(f"{self.root} has no evaluation {label!r}; it has {self.labels()}")
        with np.load(path) as data:
            return [data[f"pub{i}"] for i in range(len(data.files))]

    def plan(self, label: str) -> list[PlannedJob]:
        return self._plan(self.values(label))

    def _plan(self, values: list[np.ndarray]) -> list[PlannedJob]:
        return plan_jobs([len(v) for v in values], self.shots, self.meta["max_executions"])

    @staticmethod
    def key(label: str, index: int) -> str:
        return f"{label}/job-{index:04d}"

    def tags(self, label: str, index: int) -> list[str]:
        """Runtime job tags: the run (this store), the step (evaluation label) and the job."""
        return ["qpa", f"qpa-run:{self.id}", f"qpa-step:{label}", f"qpa-job:{index}"]

    def _counts_path(self, key: str) -> Path:
        return self.root / "counts" / (key.replace("/", ".") + ".npz")

    def _pubs(self, job: PlannedJob, values: list[np.ndarray]) -> list[tuple]:
        isa = self.isa
        column = {name: i for i, name in enumerate(self.meta["parameters"])}
        order = [column[p.name] for p in isa.parameters]
        return [(isa, values[pub][start:stop][:, order]) for pub, start, stop in job.slices]

    # ------------------------------------------------------------------ submit
    @_exclusive("submitting")
    def submit(
        self,
        label: str,
        service: RuntimeJobs,
        *,
        resubmit_unconfirmed: bool = False,
        retry_failed: bool = False,
        log: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Report:
        """Submit every job of `label` that has none recorded yet; never one twice.

        A job with an id in the ledger is skipped. An intent with no id is first looked up
        on the service by its tags (found: its id is recorded); if no job carries them it
        is reported in ``Report.unconfirmed`` and only submitted again with
        ``resubmit_unconfirmed``. Failed or cancelled jobs go again only with ``retry_failed``.
        """
        values = self.values(label)
        plan = self._plan(values)
        state = self.ledger.state()
        report = Report()
        for job in plan:
            key = self.key(label, job.index)
            tags = self.tags(label, job.index)
            s = state.get(key, {})
            last = s.get("last")
            if last in ("failed", "cancelled"):
                if not retry_failed:
                    report.failed[key] = f"{s.get('status', last)}: {s.get('error', '')}".strip(": ")
                    continue
            elif s.get("job_id"):
                continue  # recorded: collect it, never submit it again
            elif last is not None:  # an intent whose job id never reached the ledger
                found = with_retries(
                    lambda t=tags: service.find(t), f"looking up {key} by its tags", log=log, sleep=sleep
                )
                if found:
                    self.ledger.append("found", key, job_id=found[0], other_job_ids=found[1:])
                    log(f"{key}: its job id was not recorded; found job {found[0]} by its tags")
                    if found[1:]:
                        log(f"{key}: more jobs carry its tags: {found[1:]} (cancel them if unwanted)")
                    report.found.append(key)
                    continue
                if not resubmit_unconfirmed:
                    report.unconfirmed.append(key)
                    continue
            attempt = s.get("attempt", 0) + 1
            pubs = self._pubs(job, values)
            service.open()  # account or session trouble fails here, before an intent is recorded
            self.ledger.append(
                "intent",
                key,
                attempt=attempt,
                tags=tags,
                slices=[list(x) for x in job.slices],
                shots=job.shots,
                executions=job.executions,
            )
            try:
                job_id = service.submit(pubs, job.shots, tags)
            except Exception as exc:
                self.ledger.append("unconfirmed", key, error=_describe(exc))
                raise JobsError(
                    f"submitting {key} failed ({_describe(exc)}); the service may or may not have "
                    "accepted it. Run the same command again: it looks the job up by its tags "
                    "before submitting anything"
                ) from None
            self.ledger.append("submitted", key, job_id=job_id, attempt=attempt)
            log(f"{key}: submitted job {job_id} ({job.sets} sets x {job.shots} shots)")
            report.submitted.append(key)
        return report

    def unconfirmed_message(self, keys: list[str], command: str) -> str:
        return (
            f"{len(keys)} job(s) of {self.root} were being submitted when the process stopped, and no "
            f"job carrying their tags exists on the service: {', '.join(keys)}. They most likely never "
            f"reached it. To submit them now, run: {command} --resubmit-unconfirmed"
        )

    # ------------------------------------------------------------------ collect
    @_exclusive("refreshing the status")
    def refresh(
        self,
        service: RuntimeJobs,
        log: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, str]:
        """Ask the service for the status of every submitted, unfinished job and record
        changes; returns key -> status. Collects nothing."""
        out = {}
        for key, s in sorted(self.ledger.state().items()):
            if not s.get("job_id") or s.get("last") in ("collected", "failed", "cancelled"):
                continue
            status = self._status(service, key, s["job_id"], log, sleep)
            if status != s.get("status"):
                self.ledger.append("status", key, job_id=s["job_id"], status=status)
            out[key] = status
        return out

    def _save_counts(self, key: str, job: PlannedJob, result) -> None:
        isa = self.isa
        if len(result) != len(job.slices):
            raise JobsError(f"{key}: the job returned {len(result)} PUB results, expected {len(job.slices)}")
        parts = [pub_counts(result[i], isa, stop - start) for i, (_, start, stop) in enumerate(job.slices)]
        counts = np.concatenate(parts)
        if not np.all(counts.sum(axis=1) == job.shots):
            raise JobsError(
                f"{key}: the job returned {counts.sum(axis=1)} shots per set, expected {job.shots}"
            )
        atomic_write(self._counts_path(key), _npz_bytes(counts=counts))

    @_exclusive("collecting")
    def collect(
        self,
        label: str,
        service: RuntimeJobs,
        *,
        wait: bool = False,
        poll: float = 5.0,
        max_poll: float = 120.0,
        log: Callable[[str], None] = print,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Report:
        """Fetch every submitted, uncollected job of `label` by its id; idempotent.

        Counts are written (atomically) before the ``collected`` record, so a job is fetched
        again only if the process died before its counts reached the disk. With `wait`,
        polls until every submitted job has finished, with a progress line.
        """
        plan = self.plan(label)
        bar = None
        start = time.monotonic()
        try:
            while True:
                report = self._collect_pass(label, plan, service, log, sleep)
                if not wait or not report.pending:
                    return report
                if bar is None and progress:  # a progress line only while something is waiting
                    from tqdm import tqdm

                    bar = tqdm(
                        total=len(plan),
                        desc=f"{label} on {self.meta['backend']}",
                        unit="job",
                        file=sys.stderr,
                        leave=False,
                    )
                if bar is not None:
                    bar.n = len(report.collected)
                    waiting = ", ".join(sorted(set(report.pending.values())))
                    elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - start))
                    bar.set_postfix_str(f"{waiting}, waited {elapsed}")
                sleep(poll)
                poll = min(max_poll, poll * 1.5)
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def _status(service: RuntimeJobs, key: str, job_id: str, log, sleep) -> str:
        """The job's status, retried while the failure is transient; any other failure to
        reach the job stops everything with what to check (nothing is recorded)."""
        try:
            return with_retries(lambda: service.status(job_id), f"status of {key}", log=log, sleep=sleep)
        except JobsError:
            raise
        except Exception as exc:
            raise JobsError(
                f"{key}: job {job_id} cannot be read on the service ({_describe(exc)}). Check that "
                "the account and instance that submitted it are the active ones; the ledger is "
                "unchanged, so run the same command again once they are"
            ) from None

    def _collect_pass(self, label, plan, service, log, sleep) -> Report:
        state = self.ledger.state()
        report = Report()
        for job in plan:
            key = self.key(label, job.index)
            s = state.get(key, {})
            job_id = s.get("job_id")
            if s.get("last") == "collected":
                report.collected.append(key)
                continue
            if s.get("last") in ("failed", "cancelled"):
                report.failed[key] = f"{s.get('status', s['last'])}: {s.get('error', '')}".strip(": ")
                continue
            if not job_id:
                if s:
                    report.unconfirmed.append(key)
                else:
                    report.pending[key] = "NOT SUBMITTED"
                continue
            path = self._counts_path(key)
            if not path.exists():
                status = self._status(service, key, job_id, log, sleep)
                if status != s.get("status"):
                    self.ledger.append("status", key, job_id=job_id, status=status)
                if status in ("ERROR", "CANCELLED"):
                    error = redact(
                        with_retries(
                            lambda j=job_id: service.error(j), f"error of {key}", log=log, sleep=sleep
                        )
                    )
                    self.ledger.append("failed", key, job_id=job_id, status=status, error=error[:500])
                    report.failed[key] = f"{status}: {error}".strip(": ")
                    continue
                if status != "DONE":
                    report.pending[key] = status
                    continue
                result = with_retries(
                    lambda j=job_id: service.result(j), f"result of {key}", log=log, sleep=sleep
                )
                self._save_counts(key, job, result)
            self.ledger.append("collected", key, job_id=job_id, file=str(path.relative_to(self.root)))
            report.collected.append(key)
        return report

    def probabilities(self, label: str) -> np.ndarray:
        """(B, 2^N) frequencies of every parameter set of `label`, PUB after PUB, rows in the
        order of the sets and outcomes in the order of :meth:`QPABackend.probabilities`."""
        values = self.values(label)
        plan = self._plan(values)
        state = self.ledger.state()
        keys = [self.key(label, job.index) for job in plan]
        missing = [key for key in keys if state.get(key, {}).get("last") != "collected"]
        if missing:
            raise JobsError(f"{len(missing)} job(s) of {label!r} are not collected yet: {', '.join(missing)}")
        offsets = np.cumsum([0, *(len(v) for v in values)])
        out = np.zeros((offsets[-1], 2 ** self.meta["n_bits"]))
        for job, key in zip(plan, keys, strict=True):
            with np.load(self._counts_path(key)) as data:
                counts = data["counts"]
            row = 0
            for pub, start, stop in job.slices:
                out[offsets[pub] + start : offsets[pub] + stop] = counts[row : row + stop - start]
                row += stop - start
        return out / self.shots

    # ------------------------------------------------------------------ cancel, summary
    @_exclusive("cancelling")
    def cancel(self, service: RuntimeJobs, log: Callable[[str], None] = print) -> list[str]:
        """Cancel every submitted job that is not collected or failed; returns their keys."""
        cancelled = []
        for key, s in sorted(self.ledger.state().items()):
            if not s.get("job_id") or s.get("last") in ("collected", "failed", "cancelled"):
                continue
            try:
                with_retries(lambda j=s["job_id"]: service.cancel(j), f"cancelling {key}", log=log)
            except JobsError:
                raise
            except Exception as exc:  # e.g. the job finished meanwhile: collect it instead
                log(f"{key}: job {s['job_id']} not cancelled ({_describe(exc)})")
                continue
            self.ledger.append("cancelled", key, job_id=s["job_id"], status="CANCELLED")
            log(f"{key}: cancelled job {s['job_id']}")
            cancelled.append(key)
        return cancelled

    def rows(self) -> list[dict]:
        """One row per planned job: key, job id, last record, status, sets, executions."""
        state = self.ledger.state()
        out = []
        for label in self.labels():
            for job in self.plan(label):
                key = self.key(label, job.index)
                s = state.get(key, {})
                out.append(
                    {
                        "key": key,
                        "job_id": s.get("job_id"),
                        "last": s.get("last", "planned"),
                        "status": s.get("status"),
                        "sets": job.sets,
                        "executions": job.executions,
                    }
                )
        return out


# --------------------------------------------------------------------------- training
class HardwareLoop:
    """Training in the loop: each labelled evaluation of the QNN becomes recorded jobs in a
    Session, and the step waits for them. Set :attr:`label` before each evaluation (the
    training step); a replayed step with the same values collects its recorded jobs."""

    def __init__(
        self,
        root: str | Path,
        backend: QPABackend,
        *,
        resubmit_unconfirmed: bool = False,
        retry_failed: bool = False,
        log: Callable[[str], None] = print,
        poll: float = 5.0,
        command: str = "the same command",
    ) -> None:
        self.root = Path(root)
        self.command = command
        self.backend = backend
        self.resubmit_unconfirmed = resubmit_unconfirmed
        self.retry_failed = retry_failed
        self.log = log
        self.poll = poll
        self.label: str | None = None
        self._store: JobStore | None = None
        self._service: RuntimeJobs | None = None

    def store(self, circuit: QuantumCircuit | None = None) -> JobStore:
        if self._store is None:
            if (self.root / "store.json").exists():
                self._store = JobStore(self.root)
            else:
                if circuit is None:
                    raise InputError(f"{self.root} holds no job store yet")
                self._store = JobStore.create(
                    self.root, self.backend, circuit, kind="training", mode="session"
                )
        return self._store

    def probabilities(self, circuit: QuantumCircuit, values: np.ndarray, shots: int) -> np.ndarray:
        """What :meth:`QPABackend.probabilities` returns, through recorded jobs."""
        if self.label is None:
            raise InputError("a hardware evaluation needs a label (the training step) before it runs")
        store = self.store(circuit)
        if store.shots != shots or store.meta["backend"] != self.backend.name:
            raise InputError(
                f"{self.root} runs {store.meta['backend']} with {store.shots} shots, not "
                f"{self.backend.name} with {shots}"
            )
        if self._service is None:
            self._service = store.service(self.backend)
        store.add(self.label, [values])
        report = store.submit(
            self.label,
            self._service,
            resubmit_unconfirmed=self.resubmit_unconfirmed,
            retry_failed=self.retry_failed,
            log=self.log,
        )
        if report.unconfirmed:
            raise JobsError(store.unconfirmed_message(report.unconfirmed, self.command))
        report = store.collect(self.label, self._service, wait=True, poll=self.poll, log=self.log)
        if report.failed:
            detail = "; ".join(f"{k}: {v}" for k, v in report.failed.items())
            raise JobsError(
                f"job(s) of {self.label} failed on {store.meta['backend']}: {detail}. To submit "
                f"them again, run: {self.command} --retry-failed"
            )
        return store.probabilities(self.label)

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
