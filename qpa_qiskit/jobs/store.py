"""The job store: one directory per circuit holding everything needed to submit its jobs
once, find them again after any crash, and collect their counts exactly once.

A store outlives processes (jobs queue for days), so every decision is replayed from its
files (see :mod:`qpa_qiskit.jobs` for the layout) and never from memory, and every file that
cannot be read is reported by name with what to do. One process at a time works on a store:
submit, refresh, collect and cancel hold its lock.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qiskit import QuantumCircuit

from ..backends import QPABackend, pub_counts
from ..credentials import redact
from ..errors import InputError, JobsError, StateError
from ..files import atomic_directory, atomic_write, exclusive, read_json
from ..validate import one_of, positive_int, positive_number
from .ledger import Ledger
from .local import LocalTestingJobs
from .npz import npz_bytes, read_npz
from .plan import MAX_EXECUTIONS, PlannedJob, plan_jobs
from .retry import with_retries
from .service import MODES, RuntimeJobs, describe_error

KINDS = ("batch", "training")
_META_KEYS = ("id", "kind", "backend", "mode", "shots", "n_bits", "parameters", "max_executions")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_META_HINT = (
    "it is written once when the store is created: restore it from a backup, or start a new job "
    "store (ledger.jsonl lists the ids of the jobs already submitted)"
)
_CIRCUIT_HINT = (
    "it is the circuit every job of the store ran: restore it from a backup, or start a new job store"
)
Method = TypeVar("Method", bound=Callable[..., Any])


def _locked(what: str) -> Callable[[Method], Method]:
    """Run a JobStore method holding the store's lock (:func:`~qpa_qiskit.files.exclusive`),
    so that two processes can never submit (or collect) the same jobs at once; the second
    gets :class:`~qpa_qiskit.errors.BusyError`."""

    def decorate(method: Method) -> Method:
        @wraps(method)
        def locked(self: JobStore, *args: Any, **kwargs: Any) -> Any:
            busy = (
                f"another process is working on {self.root} right now; {what} waits until it has "
                "finished (or is stopped): run this again then"
            )
            with ExitStack() as stack:
                try:
                    stack.enter_context(exclusive(self.root / ".lock", busy))
                except OSError as exc:
                    raise StateError(
                        f"cannot lock the job store {self.root} ({type(exc).__name__}: {exc}); it must be "
                        "a directory this user can write to"
                    ) from None
                return method(self, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate


def check_label(label: Any) -> str:
    """An evaluation label: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(label, str) or not _LABEL.match(label):
        raise InputError(
            f"an evaluation label is 1-64 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, got {label!r}"
        )
    return label


def _check_meta(meta: Any, path: Path) -> dict:
    """store.json as written by :meth:`JobStore.create`, or a StateError naming it."""
    try:
        if not isinstance(meta, dict):
            raise InputError(f"not a JSON object but {type(meta).__name__}")
        missing = [k for k in _META_KEYS if k not in meta]
        if missing:
            raise InputError(f"no {', '.join(missing)}")
        for name in ("id", "kind", "backend"):
            if not isinstance(meta[name], str) or not meta[name]:
                raise InputError(f"{name} must be a non-empty string, got {meta[name]!r}")
        one_of(meta["mode"], "mode", MODES)
        for name in ("shots", "n_bits", "max_executions"):
            positive_int(meta[name], name)
        parameters = meta["parameters"]
        if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
            raise InputError(f"parameters must be a list of names, got {meta['parameters']!r}")
    except InputError as exc:
        raise StateError(f"job store description {path} is not valid ({exc}); {_META_HINT}") from None
    return meta


def job_pubs(isa: QuantumCircuit, names: list[str], job: PlannedJob, values: list[np.ndarray]) -> list[tuple]:
    """The Sampler PUBs of `job`: `isa` with its slice of each PUB's values, whose columns are
    the parameters `names` (reordered to the ISA circuit's parameters)."""
    column = {name: i for i, name in enumerate(names)}
    order = [column[p.name] for p in isa.parameters]
    return [(isa, values[pub][start:stop][:, order]) for pub, start, stop in job.slices]


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
    """A directory of recorded IBM Quantum jobs for one ISA circuit; see :mod:`qpa_qiskit.jobs`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root} is a file, not a job store directory; give the store's directory")
        path = self.root / "store.json"
        if not path.exists():
            raise InputError(
                f"{self.root} is not a job store (no store.json); create one with qpa jobs submit"
            )
        self.meta = _check_meta(read_json(path, "job store description", _META_HINT), path)
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
        # lazy: a qiskit submodule (import time), only on this path
        from qiskit import qpy

        root = Path(root)
        if root.exists() and not root.is_dir():
            raise InputError(f"{root} is a file; choose a new directory for the jobs")
        if root.exists() and any(root.iterdir()):
            raise InputError(f"{root} exists and is not empty; choose a new directory for the jobs")
        if not isinstance(backend, QPABackend) or backend.kind != "ibm":
            raise InputError(
                f"jobs run on IBM Quantum: use an ibm:<device> backend (ibm:fake_<device> runs "
                f"locally), not {getattr(backend, 'name', backend)!r}"
            )
        one_of(kind, "job store kind", KINDS)
        one_of(mode, "execution mode", MODES)
        max_executions = positive_int(max_executions, "max_executions (executions per job)")
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
            "sampler_options": None
            if backend.family.sampler_options is None
            else backend.family.sampler_options.model_dump(mode="json", exclude_unset=True),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "circuit": describe or {},
        }
        try:
            with atomic_directory(root) as tmp:
                buffer = io.BytesIO()
                qpy.dump(isa, buffer)
                atomic_write(tmp / "circuit.qpy", buffer.getvalue())
                atomic_write(tmp / "store.json", json.dumps(meta, indent=2).encode())
                for label, pubs in (evaluations or {}).items():
                    cls(tmp).add(label, pubs)
        except OSError as exc:
            raise InputError(
                f"cannot write the job store {root} ({type(exc).__name__}: {exc}); choose a directory "
                "this user can write to"
            ) from None
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
        """The ISA circuit of every job, read from circuit.qpy once."""
        if self._isa is None:
            # lazy: a qiskit submodule (import time), only on this path
            from qiskit import qpy

            path = self.root / "circuit.qpy"
            try:
                with open(path, "rb") as f:
                    circuits = qpy.load(f)
            except FileNotFoundError:
                raise StateError(f"circuit {path} is missing; {_CIRCUIT_HINT}") from None
            except Exception as exc:  # qpy raises QpyError, struct.error, ValueError, ... on a broken file
                raise StateError(
                    f"cannot read circuit {path} ({type(exc).__name__}: {exc}); {_CIRCUIT_HINT}"
                ) from None
            if len(circuits) != 1 or not isinstance(circuits[0], QuantumCircuit):
                raise StateError(f"circuit {path} does not hold one circuit; {_CIRCUIT_HINT}")
            if sorted(p.name for p in circuits[0].parameters) != sorted(self.meta["parameters"]):
                raise StateError(
                    f"circuit {path} does not have the parameters that store.json lists; {_CIRCUIT_HINT}"
                )
            self._isa = circuits[0]
        return self._isa

    def backend(self, **options: Any) -> QPABackend:
        """The store's backend; the IBM Quantum account is opened only when a job must be
        submitted or fetched, so collected results read back with no account."""
        recorded = {"sampler_options": self.meta.get("sampler_options")}
        return QPABackend(self.meta["backend"], shots=self.shots, **{"connect": False, **recorded, **options})

    def service(self, backend: QPABackend | None = None, mode: str | None = None) -> RuntimeJobs:
        """Access to the service that runs the store's jobs (the local stand-in for
        ``ibm:fake_<device>``), through `backend` or the store's own, submitting in `mode`
        (default: the mode the store was created with)."""
        backend = backend or self.backend()
        mode = self.meta["mode"] if mode is None else one_of(mode, "execution mode", MODES)
        if backend.is_local_testing:
            return LocalTestingJobs(backend, mode, self.root / "local-service")
        return RuntimeJobs(backend, mode)

    # ------------------------------------------------------------------ evaluations
    def add(self, label: str, pubs: list[np.ndarray]) -> list[PlannedJob]:
        """Record the parameter sets of an evaluation (once); the same label with other
        values is refused, so a replayed training step can never reuse a stale result."""
        check_label(label)
        n_params = len(self.meta["parameters"])
        arrays = []
        for values in pubs:
            try:
                values = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                shown = repr(values)[:200]
                raise InputError(f"parameter sets must be an array of numbers, got {shown}") from None
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
            atomic_write(path, npz_bytes(**{f"pub{i}": a for i, a in enumerate(arrays)}))
        return self.plan(label)

    def labels(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "values").glob("*.npz"))

    def values(self, label: str) -> list[np.ndarray]:
        """The PUB value arrays of evaluation `label`, as recorded by :meth:`add`."""
        path = self.root / "values" / f"{check_label(label)}.npz"
        if not path.exists():
            raise InputError(f"{self.root} has no evaluation {label!r}; it has {self.labels()}")
        hint = (
            f"delete it only if no job of {label!r} was submitted ('qpa jobs status {self.root} "
            "--offline' lists them; training records it again), otherwise restore it from a backup"
        )
        arrays = read_npz(path, f"parameter sets of {label!r}", hint)
        n_params = len(self.meta["parameters"])
        out = [arrays.get(f"pub{i}") for i in range(len(arrays))]
        for a in out:
            if a is None or a.dtype != np.float64 or a.ndim != 2 or a.shape[1] != n_params or not len(a):
                raise StateError(f"parameter sets {path} are not arrays of shape (B, {n_params}); {hint}")
        return out  # type: ignore[return-value]

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

    def job_pubs(self, job: PlannedJob, values: list[np.ndarray]) -> list[tuple]:
        """The Sampler PUBs of `job`: the ISA circuit with its slice of each PUB's values."""
        return job_pubs(self.isa, self.meta["parameters"], job, values)

    # ------------------------------------------------------------------ counts
    def _counts_path(self, key: str) -> Path:
        return self.root / "counts" / (key.replace("/", ".") + ".npz")

    def _read_counts(self, key: str, job: PlannedJob) -> np.ndarray:
        path = self._counts_path(key)
        hint = (
            f"delete it and run 'qpa jobs collect {self.root}' (or resume the training): the job is "
            "fetched again by its id, at no cost"
        )
        counts = read_npz(path, f"counts of {key}", hint).get("counts")
        shape = (job.sets, 2 ** self.meta["n_bits"])
        if (
            counts is None
            or counts.shape != shape
            or counts.dtype.kind not in "iu"
            or not np.all(counts.sum(axis=1) == job.shots)
        ):
            raise StateError(f"counts {path} are not {shape} counts of {job.shots} shots per set; {hint}")
        return counts

    def _has_counts(self, key: str, job: PlannedJob, log: Callable[[str], None]) -> bool:
        if not self._counts_path(key).exists():
            return False
        try:
            self._read_counts(key, job)
        except StateError as exc:
            log(f"{key}: {exc}; fetching it again")
            self._counts_path(key).unlink(missing_ok=True)
            return False
        return True

    def _save_counts(self, key: str, job: PlannedJob, result: Any) -> None:
        isa = self.isa
        if len(result) != len(job.slices):
            raise JobsError(f"{key}: the job returned {len(result)} PUB results, expected {len(job.slices)}")
        parts = [pub_counts(result[i], isa, stop - start) for i, (_, start, stop) in enumerate(job.slices)]
        counts = np.concatenate(parts)
        if not np.all(counts.sum(axis=1) == job.shots):
            raise JobsError(
                f"{key}: the job returned {counts.sum(axis=1)} shots per set, expected {job.shots}"
            )
        atomic_write(self._counts_path(key), npz_bytes(counts=counts))

    # ------------------------------------------------------------------ submit
    @_locked("submitting")
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
            pubs = self.job_pubs(job, values)
            service.open()  # account or session trouble fails here, before an intent is recorded
            self.ledger.append(
                "intent",
                key,
                attempt=attempt,
                tags=tags,
                slices=[list(x) for x in job.slices],
                shots=job.shots,
                executions=job.executions,
                mode=service.mode,
            )
            try:
                job_id = service.submit(pubs, job.shots, tags)
            except Exception as exc:
                self.ledger.append("unconfirmed", key, error=describe_error(exc))
                raise JobsError(
                    f"submitting {key} failed ({describe_error(exc)}); the service may or may not have "
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
    @_locked("refreshing the status")
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

    @_locked("collecting")
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
        again only if the process died before its counts reached the disk, or if its counts
        file no longer reads back. With `wait`, polls until every submitted job has
        finished, with a progress line.
        """
        poll = positive_number(poll, "poll (seconds)")
        max_poll = positive_number(max_poll, "max_poll (seconds)")
        plan = self.plan(label)
        bar = None
        start = time.monotonic()
        try:
            while True:
                report = self._collect_pass(label, plan, service, log, sleep)
                if not wait or not report.pending:
                    return report
                if bar is None and progress:  # a progress line only while something is waiting
                    # lazy: tqdm, only when progress is shown
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
    def _status(
        service: RuntimeJobs,
        key: str,
        job_id: str,
        log: Callable[[str], None],
        sleep: Callable[[float], None],
    ) -> str:
        """The job's status, retried while the failure is transient; any other failure to
        reach the job stops everything with what to check (nothing is recorded)."""
        try:
            return with_retries(lambda: service.status(job_id), f"status of {key}", log=log, sleep=sleep)
        except JobsError:
            raise
        except Exception as exc:
            raise JobsError(
                f"{key}: job {job_id} cannot be read on the service ({describe_error(exc)}). Check that "
                "the account and instance that submitted it are the active ones; the ledger is "
                "unchanged, so run the same command again once they are"
            ) from None

    @staticmethod
    def _usage(service: RuntimeJobs, key: str, job_id: str, log: Callable[[str], None]) -> dict | None:
        """The usage the service reports for a finished job, for the ledger; a failure to get
        it is logged and recorded as None (it never stops a collection)."""
        try:
            return service.usage(job_id)
        except Exception as exc:
            log(f"{key}: the usage of job {job_id} is not known ({describe_error(exc)})")
            return None

    def _collect_pass(
        self,
        label: str,
        plan: list[PlannedJob],
        service: RuntimeJobs,
        log: Callable[[str], None],
        sleep: Callable[[float], None],
    ) -> Report:
        state = self.ledger.state()
        report = Report()
        for job in plan:
            key = self.key(label, job.index)
            s = state.get(key, {})
            job_id = s.get("job_id")
            have_counts = self._has_counts(key, job, log)
            if s.get("last") == "collected" and have_counts:
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
            if not have_counts:
                status = self._status(service, key, job_id, log, sleep)
                if status != s.get("status"):
                    self.ledger.append("status", key, job_id=job_id, status=status)
                if status in ("ERROR", "CANCELLED"):
                    error = redact(
                        with_retries(
                            lambda j=job_id: service.error(j), f"error of {key}", log=log, sleep=sleep
                        )
                    )
                    usage = self._usage(service, key, job_id, log)
                    self.ledger.append(
                        "failed", key, job_id=job_id, status=status, error=error[:500], usage=usage
                    )
                    report.failed[key] = f"{status}: {error}".strip(": ")
                    continue
                if status != "DONE":
                    report.pending[key] = status
                    continue
                result = with_retries(
                    lambda j=job_id: service.result(j), f"result of {key}", log=log, sleep=sleep
                )
                self._save_counts(key, job, result)
            usage = self._usage(service, key, job_id, log)  # the QPU time the job was charged
            path = self._counts_path(key)
            file = str(path.relative_to(self.root))
            self.ledger.append("collected", key, job_id=job_id, file=file, usage=usage)
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
            counts = self._read_counts(key, job)
            row = 0
            for pub, start, stop in job.slices:
                out[offsets[pub] + start : offsets[pub] + stop] = counts[row : row + stop - start]
                row += stop - start
        return out / self.shots

    # ------------------------------------------------------------------ cancel, summary
    @_locked("cancelling")
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
                log(f"{key}: job {s['job_id']} not cancelled ({describe_error(exc)})")
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
