"""What the Sampler and the Estimator share: the backend they run on, their random state,
the circuits they derive once per circuit, the warning of a slow fallback, and
:class:`PrimitiveCore`, the job loop both run (PUBs grouped by circuit, under a lock)."""

from __future__ import annotations

import numbers
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Measure
from qiskit.primitives import PrimitiveJob, PrimitiveResult

from ..backends import QPABackend, SlowEngineWarning, fingerprint
from ..errors import InputError

SPEC_FORMS = '"statevector", "aer_noisy:<fake device | snapshot name | snapshot.json>"'


def resolve_backend(backend: Any, options: dict[str, Any], primitive: str) -> QPABackend:
    """The QPABackend a primitive runs on: given, or built from a spec string and options."""
    if isinstance(backend, str):
        backend = QPABackend(backend, **options)
    elif isinstance(backend, QPABackend):
        if options:
            raise InputError(
                f"{primitive}: backend options ({', '.join(sorted(options))}) go with a spec string; "
                "this QPABackend is already built with its own"
            )
    else:
        raise InputError(
            f"{primitive} runs on a QPABackend or a spec string ({SPEC_FORMS}), got {type(backend).__name__}"
        )
    if backend.kind == "ibm":
        raise InputError(
            f"{primitive} simulates; {backend.name!r} is IBM Quantum, whose own client-side primitives "
            "run there: use qiskit_ibm_runtime.executor_sampler.Sampler / "
            "qiskit_ibm_runtime.executor_estimator.Estimator, or a simulation backend "
            f"({SPEC_FORMS})"
        )
    if backend.shots is not None or backend.shots_factor is not None:
        raise InputError(
            f"{primitive} takes its shots or precision from each PUB; pass a QPABackend built without "
            "shots or shots_factor"
        )
    return backend


_LOCKS: weakref.WeakKeyDictionary[QPABackend, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def backend_lock(backend: QPABackend) -> threading.Lock:
    """The lock a primitive holds while its job runs on `backend`: jobs run in threads, and a
    backend's caches and an engine's buffers are not for two runs at once."""
    with _LOCKS_LOCK:
        if backend not in _LOCKS:
            _LOCKS[backend] = threading.Lock()
        return _LOCKS[backend]


def make_rng(seed: Any) -> np.random.Generator:
    """The primitive's random state: one stream for its lifetime, so a sequence of runs is
    reproducible from the seed (an int >= 0, a numpy Generator, or None for fresh entropy)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise InputError(f"seed must be None, an integer >= 0 or a numpy Generator, got {seed!r}")


def flat_values(parameter_values: Any, parameters: Any) -> np.ndarray:
    """A PUB's BindingsArray as (B, P) rows in ``parameters`` order, B = the product of its shape."""
    rows = int(np.prod(parameter_values.shape, dtype=int))
    return parameter_values.as_array(parameters).reshape(rows, len(parameters))


def unsupported(circuit: QuantumCircuit) -> str | None:
    """Why the fast path cannot run this circuit (None if it can): it takes unitary gates,
    barriers and delays, with measurements only at the end of each qubit's work."""
    measured: set[int] = set()
    for inst in circuit.data:
        op = inst.operation
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if inst.is_control_flow():
            return f"control flow ({op.name})"
        if isinstance(op, Measure):
            measured.update(qubits)
            continue
        if op.name == "barrier":
            continue
        if measured.intersection(qubits):
            return f"{op.name!r} after a measurement (mid-circuit measurement)"
        if not isinstance(op, Gate) and op.name != "delay":
            return f"the non-unitary instruction {op.name!r}"
    return None


class Derived:
    """Circuits a primitive derives from a PUB's circuit, built once per circuit.

    Keyed by :func:`~qpa_qiskit.backends.fingerprint` (a circuit edited in place is derived
    again), with the derived objects kept alive so the backend's own per-circuit cache hits.
    Within one run the same circuit object is fingerprinted once.
    """

    def __init__(self, build: Callable[[QuantumCircuit], Any]) -> None:
        self._build = build
        self._by_print: dict[int, Any] = {}

    def lookup(self, circuits: list[QuantumCircuit]) -> list[Any]:
        seen: dict[int, Any] = {}
        out = []
        for circuit in circuits:
            if id(circuit) not in seen:
                key = fingerprint(circuit)
                if key not in self._by_print:
                    self._by_print[key] = self._build(circuit)
                seen[id(circuit)] = self._by_print[key]
            out.append(seen[id(circuit)])
        return out


class FallbackNotice:
    """Warns once per circuit that it runs on Aer, and why."""

    def __init__(self, primitive: str) -> None:
        self.primitive = primitive
        self._told: set[int] = set()

    def tell(self, plan_id: int, reason: str) -> None:
        if plan_id in self._told:
            return
        self._told.add(plan_id)
        warnings.warn(
            f"{self.primitive}: the fast exact engine cannot run this circuit ({reason}); it runs on "
            "Aer's own V2 primitive with the same noise model instead, which is slower.",
            SlowEngineWarning,
            stacklevel=4,
        )


def aer_options(backend: QPABackend, seed: int) -> dict[str, Any]:
    """Options for Aer's V2 primitives simulating what `backend` simulates."""
    model = backend.noise_model
    backend_options: dict[str, Any] = {"seed_simulator": seed}
    if model is not None:
        backend_options.update(noise_model=model, method="density_matrix")
    return {"backend_options": backend_options, "run_options": {"seed_simulator": seed}}


class PrimitiveCore:
    """What the Sampler and the Estimator do alike: hold the backend and the random stream,
    plan each circuit once, and run a job's PUBs grouped by circuit, under the backend's lock.

    A subclass sets ``name`` and implements ``_plan(circuit)`` (an object with a ``fallback``
    reason or None), ``_run_group(plan, pubs)`` (the results of PUBs sharing one circuit, in
    one backend submission) and ``_aer(pub, plan)`` (one PUB on Aer's own primitive).
    """

    name: str

    def _setup(self, backend: Any, options: dict[str, Any], seed: Any) -> None:
        self.backend = resolve_backend(backend, options, self.name)
        self._seed = seed
        self._rng = make_rng(seed)
        self._plans = Derived(self._plan)
        self._notice = FallbackNotice(self.name)

    @property
    def seed(self) -> Any:
        return self._seed

    def _submit(self, pubs: list) -> PrimitiveJob:
        job = PrimitiveJob(self._locked_run, pubs)
        job._submit()
        return job

    def _locked_run(self, pubs: list) -> PrimitiveResult:
        with backend_lock(self.backend):
            return self._run(pubs)

    def _run(self, pubs: list) -> PrimitiveResult:
        plans = self._plans.lookup([pub.circuit for pub in pubs])
        results: list[Any] = [None] * len(pubs)
        groups: dict[int, list[int]] = {}
        for i, plan in enumerate(plans):
            if plan.fallback is not None:
                self._notice.tell(id(plan), plan.fallback)
                results[i] = self._aer(pubs[i], plan)
            else:
                groups.setdefault(id(plan), []).append(i)
        for members in groups.values():
            done = self._run_group(plans[members[0]], [pubs[i] for i in members])
            for i, result in zip(members, done, strict=True):
                results[i] = result
        return PrimitiveResult(results, metadata={"version": 2})

    def _aer_inputs(
        self, plan: Any, circuit: QuantumCircuit, pub: Any
    ) -> tuple[QuantumCircuit, np.ndarray, int]:
        """What Aer's primitive takes for one PUB: `circuit` as it runs on the device (transpiled
        once, kept as ``plan.isa``), the PUB's values in that circuit's parameter order, and a
        seed drawn from the stream."""
        if plan.isa is None:
            plan.isa = self.backend.transpile(circuit)
        values = pub.parameter_values.as_array(plan.circuit.parameters)
        column = {p: i for i, p in enumerate(plan.circuit.parameters)}
        return plan.isa, values[..., [column[p] for p in plan.isa.parameters]], int(self._rng.integers(2**31))
