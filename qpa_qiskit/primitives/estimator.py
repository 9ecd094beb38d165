"""``Estimator``: Qiskit's ``BaseEstimatorV2`` on a QPABackend's exact expectation values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Measure
from qiskit.primitives import BaseEstimatorV2, PrimitiveJob, PubResult
from qiskit.primitives.containers import DataBin
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.quantum_info import Kraus, SparseObservable, SparsePauliOp

from ..backends import flatten
from ..validate import number
from .common import (
    PrimitiveCore,
    aer_options,
    check_real_values,
    flat_values,
    unsupported,
)


@dataclass
class _Plan:
    """How one circuit runs: without its final measurements on the fast path, or why not."""

    circuit: QuantumCircuit
    unmeasured: QuantumCircuit
    fallback: str | None = None
    isa: QuantumCircuit | None = None  # for the Aer fallback, transpiled once
    exact: QuantumCircuit | None = None  # the ISA circuit, measurements as dephasing channels
    refused: str | None = None  # why no primitive here can run it


def dephased(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit with each measurement replaced by what it does to the state whose
    expectation values are asked for, the dephasing channel rho -> P0 rho P0 + P1 rho P1 (its
    outcome is never read: control flow is refused before). Aer's density-matrix method then
    computes the values exactly; with measurements it would average over sampled outcomes."""
    if not any(isinstance(inst.operation, Measure) for inst in circuit.data):
        return circuit
    channel = Kraus([np.diag([1.0, 0.0]), np.diag([0.0, 1.0])]).to_instruction()
    out = circuit.copy_empty_like()
    for inst in circuit.data:
        if isinstance(inst.operation, Measure):
            out.append(channel, inst.qubits)
        else:
            out.append(inst.operation, inst.qubits, inst.clbits, copy=False)
    return out


def as_paulis(observable: dict[str, float]) -> dict[str, complex]:
    """An ObservablesArray element ({label: coefficient}, labels maybe with projectors such as
    ``0``, ``+``, ``r``) as Pauli labels and coefficients."""
    if all(set(label) <= set("IXYZ") for label in observable):
        return dict(observable)
    expanded = SparsePauliOp.from_sparse_observable(SparseObservable.from_list(list(observable.items())))
    out: dict[str, complex] = {}
    for label, coeff in expanded.to_list():
        out[label] = out.get(label, 0) + coeff
    return out


class Estimator(PrimitiveCore, BaseEstimatorV2):
    """Expectation values of observables on circuits, exact, on a QPABackend.

    The values are computed exactly: on ``statevector`` from the state; on ``aer_noisy:``
    by the PTM engine, whose state IS the vector of Pauli expectation values, so each
    observable's Pauli terms are read off the final state directly. Noise on expectation
    values: the device's gate errors and thermal relaxation (as scaled or switched by the
    backend's noise options); NOT readout errors, which act on measurements, as in Aer's
    ``EstimatorV2``. Final measurements in a circuit are removed first.

    With ``precision == 0`` (the default) the values are exact and ``stds`` are 0; with
    ``precision > 0`` each value gets Gaussian noise of that standard deviation, seeded, and
    ``stds`` report it.

    Args:
        backend: a :class:`~qpa_qiskit.QPABackend` (built without shots) or a spec string,
            ``"statevector"`` or ``"aer_noisy:<device or snapshot>"``.
        default_precision: precision of a PUB that names none (>= 0).
        seed: seeds the precision noise, as in Qiskit's ``StatevectorEstimator``: an integer
            restarts it for every PUB, so a seeded estimator repeats its noise run after run
            (what qiskit-machine-learning's QNNs expect between forward passes); a numpy
            Generator is one stream used on across runs (a sequence of runs reproducible from
            the generator's seed); None is fresh entropy.
        **options: backend options, with a spec string only.

    Observables are on the circuit's qubits: for an abstract circuit they follow its qubits
    through the transpiler; for an ISA circuit they are on the device's qubits (as for IBM's
    primitives, ``observable.apply_layout(isa.layout)``). Classical bits are ignored.
    Subcircuits added with ``append`` are expanded first (they run on the fast engines).
    Circuits with mid-circuit measurements or resets run on Aer's ``EstimatorV2`` with the
    same noise model, on its density-matrix method, exactly (a mid-circuit measurement is the
    dephasing it does to the state), warned once per circuit; control flow, whose branches
    depend on sampled outcomes, is refused.
    """

    name = "Estimator"

    def __init__(
        self, backend: Any, *, default_precision: float = 0.0, seed: Any = None, **options: Any
    ) -> None:
        self._setup(backend, options, seed)
        self._default_precision = number(default_precision, "default_precision", minimum=0)

    @property
    def default_precision(self) -> float:
        return self._default_precision

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> PrimitiveJob:
        """Runs the PUBs; a PUB's precision (its own, else `precision`, else the default) must be
        a finite number >= 0, as the default is: Qiskit refuses only negative ones, and a nan or
        inf would come back as nan standard deviations or infinite values."""
        if precision is None:
            precision = self._default_precision
        else:
            precision = number(precision, "precision", minimum=0)
        coerced = [EstimatorPub.coerce(pub, precision) for pub in check_real_values(pubs, 2)]
        for i, pub in enumerate(coerced):
            number(pub.precision, f"PUB {i}: precision", minimum=0)
        return self._submit(coerced)

    def _plan(self, circuit: QuantumCircuit) -> _Plan:
        unmeasured = flatten(circuit).remove_final_measurements(inplace=False)
        plan = _Plan(circuit, unmeasured, unsupported(unmeasured))
        if any(inst.is_control_flow() for inst in unmeasured.data):
            plan.refused = (
                "the Estimator's values are exact, and control flow branches on sampled measurement "
                "outcomes: run this circuit on the Sampler, or build it without control flow"
            )
        return plan

    def _run_group(
        self, plan: _Plan, pubs: list[EstimatorPub], rngs: list[np.random.Generator]
    ) -> list[PubResult]:
        """Every Pauli term of every PUB's observables, for every parameter set, in one call."""
        flat = [flat_values(pub.parameter_values, plan.circuit.parameters) for pub in pubs]
        observables = [[as_paulis(o) for o in pub.observables.ravel()] for pub in pubs]
        labels = sorted({label for group in observables for o in group for label in o})
        values = self.backend.expectation_values(plan.unmeasured, labels, np.concatenate(flat))
        column = {label: k for k, label in enumerate(labels)}
        results, start = [], 0
        for pub, rows, terms, rng in zip(pubs, flat, observables, rngs, strict=True):
            coefficients = np.zeros((len(terms), len(labels)), dtype=complex)
            for o, term in enumerate(terms):
                for label, coeff in term.items():
                    coefficients[o, column[label]] += coeff
            table = values[start : start + len(rows)] @ coefficients.real.T  # (param sets, observables)
            start += len(rows)
            results.append(self._result(pub, table, rng))
        return results

    def _result(self, pub: EstimatorPub, table: np.ndarray, rng: np.random.Generator) -> PubResult:
        """Broadcast parameter sets against observables (Qiskit's PUB rules) and add noise."""
        sets = np.arange(table.shape[0]).reshape(pub.parameter_values.shape)
        observables = np.arange(table.shape[1]).reshape(pub.observables.shape)
        sets, observables = np.broadcast_arrays(sets, observables)
        evs = table[sets, observables]
        if pub.precision > 0:
            evs = evs + rng.normal(0.0, pub.precision, evs.shape)
        stds = np.full(evs.shape, float(pub.precision))
        return PubResult(
            DataBin(evs=evs, stds=stds, shape=evs.shape),
            metadata=_metadata(pub),
        )

    def _aer(self, pub: EstimatorPub, plan: _Plan, rng: np.random.Generator) -> PubResult:
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer.primitives import EstimatorV2 as AerEstimator

        isa, values, seed = self._aer_inputs(plan, plan.unmeasured, pub, rng)
        if plan.exact is None:
            plan.exact = dephased(isa)
        observables = pub.observables if isa.layout is None else pub.observables.apply_layout(isa.layout)
        estimator = AerEstimator(options=aer_options(self.backend, seed, density_matrix=True))
        result = estimator.run([(plan.exact, observables, values, pub.precision)]).result()[0]
        return PubResult(result.data, metadata=_metadata(pub))


def _metadata(pub: EstimatorPub) -> dict[str, Any]:
    """A PUB result's metadata, as Qiskit's reference estimator gives it."""
    return {"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata}
