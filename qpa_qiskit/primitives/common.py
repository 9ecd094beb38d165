"""What the Sampler and the Estimator share: the backend they run on, their random state,
the circuits they derive once per circuit, the warning of a slow fallback, and
:class:`PrimitiveCore`, the job loop both run (PUBs grouped by circuit, under a lock).

Seeds follow Qiskit's reference primitives (``StatevectorSampler``/``StatevectorEstimator``):
an integer seed restarts the random state for every PUB, so a seeded primitive gives the same
samples and the same precision noise run after run (and a PUB's result does not depend on the
other PUBs of its job); a numpy ``Generator`` is one stream used on, run after run (a sequence
of runs is reproducible from the generator's seed); None draws fresh entropy for every PUB.
"""

from __future__ import annotations

import numbers
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Measure
from qiskit.primitives import PrimitiveJob, PrimitiveResult

from ..backends import QPABackend, SlowEngineWarning, family_class, fingerprint, parse_spec, redact
from ..errors import InputError

SPEC_FORMS = '"statevector", "aer_noisy:<fake device | snapshot name | snapshot.json>"'


def resolve_backend(backend: Any, options: dict[str, Any], primitive: str) -> QPABackend:
    """The QPABackend a primitive runs on: given, or built from a spec string and options."""
    if isinstance(backend, str):
        if family_class(backend).runs_remotely:  # refused before building: it asks for shots, which we refuse
            kind, device = parse_spec(backend)
            raise InputError(ibm_refusal(primitive, redact(f"{kind}:{device}")))
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
    if backend.runs_remotely:
        raise InputError(ibm_refusal(primitive, backend.name))
    if backend.shots is not None or backend.shots_factor is not None:
        raise InputError(
            f"{primitive} takes its shots or precision from each PUB; pass a QPABackend built without "
            "shots or shots_factor"
        )
    return backend


def ibm_refusal(primitive: str, name: str) -> str:
    """Why a primitive refuses an ``ibm:`` backend, and what to use."""
    return (
        f"{primitive} simulates; {name!r} is IBM Quantum, whose own client-side primitives "
        "run there: use qiskit_ibm_runtime.executor_sampler.Sampler / "
        "qiskit_ibm_runtime.executor_estimator.Estimator, or a simulation backend "
        f"({SPEC_FORMS})"
    )


_LOCKS: weakref.WeakKeyDictionary[QPABackend, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def backend_lock(backend: QPABackend) -> threading.Lock:
    """The lock a primitive holds while its job runs on `backend`: jobs run in threads, and a
    backend's caches and an engine's buffers are not for two runs at once."""
    with _LOCKS_LOCK:
        if backend not in _LOCKS:
            _LOCKS[backend] = threading.Lock()
        return _LOCKS[backend]


def check_seed(seed: Any) -> int | np.random.Generator | None:
    """A primitive's seed: None, an integer >= 0 or a numpy Generator (see the module's text)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)
    raise InputError(f"seed must be None, an integer >= 0 or a numpy Generator, got {seed!r}")


def pub_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The random state of one PUB, as Qiskit's reference primitives make it: restarted from an
    integer seed, the Generator itself (one stream), or fresh entropy for None."""
    return np.random.default_rng(seed)


class ComplexValuesError(InputError, TypeError):
    """Complex parameter values: an InputError, and the TypeError Qiskit's own PUB coercion
    raises for complex numbers in a list."""


def check_real_values(pubs: Iterable[Any], position: int) -> list[Any]:
    """The PUB-likes as a list, refusing complex parameter values (Qiskit's PUB coercion casts
    a complex numpy array to float, silently dropping the imaginary part); `position` is where
    the values sit in a tuple PUB (1 for the Sampler, 2 for the Estimator)."""
    pubs = list(pubs)
    for i, pub in enumerate(pubs):
        if not isinstance(pub, (tuple, list)) or len(pub) <= position or pub[position] is None:
            continue
        values = pub[position]
        arrays = values.values() if isinstance(values, dict) else [values]
        for array in arrays:
            if isinstance(array, (np.ndarray, list, tuple, complex, np.complexfloating)):
                try:
                    is_complex = np.iscomplexobj(np.asarray(array))
                except (TypeError, ValueError):
                    continue  # ragged or odd: Qiskit's coercion says what is wrong
                if is_complex:
                    raise ComplexValuesError(
                        f"PUB {i}: parameter values must be real numbers (angles), got complex values; "
                        "pass their real part if that is what is meant"
                    )
    return pubs


def flat_values(parameter_values: Any, parameters: Any) -> np.ndarray:
    """A PUB's BindingsArray as (B, P) rows in ``parameters`` order, B = the product of its shape."""
    rows = int(np.prod(parameter_values.shape, dtype=int))
    return parameter_values.as_array(parameters).reshape(rows, len(parameters))


def unsupported(circuit: QuantumCircuit) -> str | None:
    """Why the fast path cannot run this circuit (None if it can): it takes unitary gates,
    barriers and delays, with measurements only at the end of each qubit's work. Give it the
    circuit through :func:`~qpa_qiskit.backends.flatten`: a subcircuit added with ``append`` is an
    instruction, not a gate, until it is expanded."""
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


def aer_options(backend: QPABackend, seed: int, *, density_matrix: bool = False) -> dict[str, Any]:
    """Options for Aer's V2 primitives simulating what `backend` simulates: the density-matrix
    method with the noise model, or without noise where `density_matrix` is asked for (the
    statevector method samples a reset, one branch per shot; the density matrix is exact)."""
    model = backend.noise_model
    backend_options: dict[str, Any] = {"seed_simulator": seed}
    if model is not None:
        backend_options.update(noise_model=model, method="density_matrix")
    elif density_matrix:
        backend_options.update(method="density_matrix")
    return {"backend_options": backend_options, "run_options": {"seed_simulator": seed}}


class PrimitiveCore:
    """What the Sampler and the Estimator do alike: hold the backend and the seed,
    plan each circuit once, and run a job's PUBs grouped by circuit, under the backend's lock.

    A subclass sets ``name`` and implements ``_plan(circuit)`` (an object with a ``fallback``
    reason or None), ``_run_group(plan, pubs, rngs)`` (the results of PUBs sharing one circuit,
    in one backend submission, each PUB with its random state) and ``_aer(pub, plan, rng)``
    (one PUB on Aer's own primitive).
    """

    name: str

    def _setup(self, backend: Any, options: dict[str, Any], seed: Any) -> None:
        self.backend = resolve_backend(backend, options, self.name)
        self._seed = check_seed(seed)
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
        rngs = [pub_rng(self._seed) for _ in pubs]  # in PUB order: a Generator seed is one stream
        results: list[Any] = [None] * len(pubs)
        groups: dict[int, list[int]] = {}
        for plan in plans:
            if getattr(plan, "refused", None):
                raise InputError(plan.refused)
        for i, plan in enumerate(plans):
            if plan.fallback is not None:
                self._notice.tell(id(plan), plan.fallback)
                results[i] = self._aer(pubs[i], plan, rngs[i])
            else:
                groups.setdefault(id(plan), []).append(i)
        for members in groups.values():
            done = self._run_group(plans[members[0]], [pubs[i] for i in members], [rngs[i] for i in members])
            for i, result in zip(members, done, strict=True):
                results[i] = result
        return PrimitiveResult(results, metadata={"version": 2})

    def _aer_inputs(
        self, plan: Any, circuit: QuantumCircuit, pub: Any, rng: np.random.Generator
    ) -> tuple[QuantumCircuit, np.ndarray, int]:
        """What Aer's primitive takes for one PUB: `circuit` as it runs on the device (transpiled
        once, kept as ``plan.isa``), the PUB's values in that circuit's parameter order, and a
        seed drawn from the PUB's random state."""
        if plan.isa is None:
            plan.isa = self.backend.transpile(circuit)
        values = pub.parameter_values.as_array(plan.circuit.parameters)
        column = {p: i for i, p in enumerate(plan.circuit.parameters)}
        return plan.isa, values[..., [column[p] for p in plan.isa.parameters]], int(rng.integers(2**31))
