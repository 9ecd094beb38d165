"""``Estimator``: Qiskit's ``BaseEstimatorV2`` on a QPABackend's exact expectation values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, PrimitiveJob, PubResult
from qiskit.primitives.containers import DataBin
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.quantum_info import SparseObservable, SparsePauliOp

from ..validate import number
from .common import (
    PrimitiveCore,
    aer_options,
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
    ``precision > 0`` each value gets Gaussian noise of that standard deviation, drawn from
    the seeded stream, and ``stds`` report it.

    Args:
        backend: a :class:`~qpa_qiskit.QPABackend` (built without shots) or a spec string,
            ``"statevector"`` or ``"aer_noisy:<device or snapshot>"``.
        default_precision: precision of a PUB that names none (>= 0).
        seed: seeds the precision noise (an int, a numpy Generator, or None): one random stream
            for the estimator's lifetime, so the same sequence of runs gives the same values.
        **options: backend options, with a spec string only.

    Observables are on the circuit's qubits: for an abstract circuit they follow its qubits
    through the transpiler; for an ISA circuit they are on the device's qubits (as for IBM's
    primitives, ``observable.apply_layout(isa.layout)``). Circuits with mid-circuit
    measurements, resets or control flow run on Aer's ``EstimatorV2`` with the same noise
    model instead (warned once per circuit).
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
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for i, pub in enumerate(coerced):
            if pub.precision < 0:
                raise ValueError(f"PUB {i} has precision {pub.precision}; precision must be >= 0")
        return self._submit(coerced)

    def _plan(self, circuit: QuantumCircuit) -> _Plan:
        unmeasured = circuit.remove_final_measurements(inplace=False)
        return _Plan(circuit, unmeasured, unsupported(unmeasured))

    def _run_group(self, plan: _Plan, pubs: list[EstimatorPub]) -> list[PubResult]:
        """Every Pauli term of every PUB's observables, for every parameter set, in one call."""
        flat = [flat_values(pub.parameter_values, plan.circuit.parameters) for pub in pubs]
        observables = [[as_paulis(o) for o in pub.observables.ravel()] for pub in pubs]
        labels = sorted({label for group in observables for o in group for label in o})
        values = self.backend.expectation_values(plan.unmeasured, labels, np.concatenate(flat))
        column = {label: k for k, label in enumerate(labels)}
        results, start = [], 0
        for pub, rows, terms in zip(pubs, flat, observables, strict=True):
            coefficients = np.zeros((len(terms), len(labels)), dtype=complex)
            for o, term in enumerate(terms):
                for label, coeff in term.items():
                    coefficients[o, column[label]] += coeff
            table = values[start : start + len(rows)] @ coefficients.real.T  # (param sets, observables)
            start += len(rows)
            results.append(self._result(pub, table))
        return results

    def _result(self, pub: EstimatorPub, table: np.ndarray) -> PubResult:
        """Broadcast parameter sets against observables (Qiskit's PUB rules) and add noise."""
        sets = np.arange(table.shape[0]).reshape(pub.parameter_values.shape)
        observables = np.arange(table.shape[1]).reshape(pub.observables.shape)
        sets, observables = np.broadcast_arrays(sets, observables)
        evs = table[sets, observables]
        if pub.precision > 0:
            evs = evs + self._rng.normal(0.0, pub.precision, evs.shape)
        stds = np.full(evs.shape, float(pub.precision))
        return PubResult(
            DataBin(evs=evs, stds=stds, shape=evs.shape),
            metadata=_metadata(pub),
        )

    def _aer(self, pub: EstimatorPub, plan: _Plan) -> PubResult:
        from qiskit_aer.primitives import EstimatorV2 as AerEstimator

        isa, values, seed = self._aer_inputs(plan, plan.unmeasured, pub)
        observables = pub.observables if isa.layout is None else pub.observables.apply_layout(isa.layout)
        estimator = AerEstimator(options=aer_options(self.backend, seed))
        result = estimator.run([(isa, observables, values, pub.precision)]).result()[0]
        return PubResult(result.data, metadata=_metadata(pub))


def _metadata(pub: EstimatorPub) -> dict[str, Any]:
    """A PUB result's metadata, as Qiskit's reference estimator gives it."""
    return {"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata}
