"""The job store: one directory per circuit holding everything needed to submit its jobs
once, find them again after any crash, and collect their counts exactly once.

A store outlives processes (jobs queue for days), so every decision is replayed from its
files (see :mod:`qpa_qiskit.jobs` for the layout) and never from memory, and every file that
cannot be read is reported by name with what to do. This module is the store's local state
(its description, evaluations, plans and counts files), readable with no account; syncing
it with the service (submit, refresh, collect, cancel, under the store's lock) is
:mod:`.sync`.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..backends import QPABackend, pub_counts
from ..errors import InputError, JobsError, StateError
from ..files import atomic_directory, atomic_write, read_json
from ..validate import one_of, positive_int
from .ledger import Ledger
from .local import LocalTestingJobs
from .npz import npz_bytes, read_npz
from .plan import MAX_EXECUTIONS, PlannedJob, plan_jobs
from .service import MODES, RuntimeJobs

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
        if not isinstance(backend, QPABackend) or not backend.runs_remotely:
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
            if backend.sampler_options is None
            else backend.sampler_options.model_dump(mode="json", exclude_unset=True),
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
        return self.plan_of(self.values(label))

    def plan_of(self, values: list[np.ndarray]) -> list[PlannedJob]:
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
    def counts_path(self, key: str) -> Path:
        return self.root / "counts" / (key.replace("/", ".") + ".npz")

    def read_counts(self, key: str, job: PlannedJob) -> np.ndarray:
        path = self.counts_path(key)
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

    def has_counts(self, key: str, job: PlannedJob, log: Callable[[str], None]) -> bool:
        if not self.counts_path(key).exists():
            return False
        try:
            self.read_counts(key, job)
        except StateError as exc:
            log(f"{key}: {exc}; fetching it again")
            self.counts_path(key).unlink(missing_ok=True)
            return False
        return True

    def save_counts(self, key: str, job: PlannedJob, result: Any) -> None:
        isa = self.isa
        if len(result) != len(job.slices):
            raise JobsError(f"{key}: the job returned {len(result)} PUB results, expected {len(job.slices)}")
        parts = [pub_counts(result[i], isa, stop - start) for i, (_, start, stop) in enumerate(job.slices)]
        counts = np.concatenate(parts)
        if not np.all(counts.sum(axis=1) == job.shots):
            raise JobsError(
                f"{key}: the job returned {counts.sum(axis=1)} shots per set, expected {job.shots}"
            )
        atomic_write(self.counts_path(key), npz_bytes(counts=counts))

    def probabilities(self, label: str) -> np.ndarray:
        """(B, 2^N) frequencies of every parameter set of `label`, PUB after PUB, rows in the
        order of the sets and outcomes in the order of :meth:`QPABackend.probabilities`."""
        values = self.values(label)
        plan = self.plan_of(values)
        state = self.ledger.state()
        keys = [self.key(label, job.index) for job in plan]
        missing = [key for key in keys if state.get(key, {}).get("last") != "collected"]
        if missing:
            raise JobsError(f"{len(missing)} job(s) of {label!r} are not collected yet: {', '.join(missing)}")
        offsets = np.cumsum([0, *(len(v) for v in values)])
        out = np.zeros((offsets[-1], 2 ** self.meta["n_bits"]))
        for job, key in zip(plan, keys, strict=True):
            counts = self.read_counts(key, job)
            row = 0
            for pub, start, stop in job.slices:
                out[offsets[pub] + start : offsets[pub] + stop] = counts[row : row + stop - start]
                row += stop - start
        return out / self.shots

    # ------------------------------------------------------------------ summary
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
