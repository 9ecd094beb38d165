"""What the families that run Aer share: one Aer run of every parameter set, exact
probabilities or shot frequencies (:func:`aer_run`), exact expectation values
(:func:`aer_expectation_values`), and the memory an Aer simulation may take
(:func:`check_memory`).

Why apart: :mod:`.statevector` and :mod:`.aer_noisy` run Aer the same way (one run with
parameter binds, one experiment per parameter set); the facade (:mod:`.core`) only reads
:func:`available_memory` for its default memory budget.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from ..circuits import measured_qubits
from ..errors import CapacityError
from ..simulator.ptm import size_text
from .family import Prepared


def without_measurements(circuit: QuantumCircuit) -> QuantumCircuit:
    """ISA circuit with final measurements replaced by an exact probability snapshot."""
    qubits = measured_qubits(circuit)
    exact = circuit.remove_final_measurements(inplace=False)
    exact.save_probabilities(qubits)
    return exact


def available_memory() -> int:
    """Bytes of memory available to a simulation now."""
    try:
        # lazy: psutil, only when a memory budget is checked
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(what: str, need: int, budget: int | None) -> None:
    """Refuse an Aer simulation (`what`, such as "density-matrix simulation of 5 qubits") that
    needs `need` bytes per parameter set, more than is available or than `budget` allows."""
    available = available_memory()
    if need > available:
        raise CapacityError(f"{what} needs {gib(need)} per parameter set; {gib(available)} is available")
    if budget is not None and need > budget:
        raise CapacityError(
            f"{what} needs {size_text(need)} per parameter set, more than memory_budget="
            f"{size_text(budget)}: raise memory_budget (to at least {size_text(need)}, at most the "
            f"{gib(available)} available) or use fewer qubits"
        )


def aer_run(
    simulator: Any,
    circuit: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    shots: int | None,
    seed: int,
) -> np.ndarray:
    """One Aer run of all B parameter sets: exact probabilities (a ``save_probabilities``
    circuit, ``shots=None``) or shot frequencies, (B, 2^N)."""
    n_sets = values.shape[0]
    result = _aer_result(simulator, circuit, prepared, values, shots, seed)
    if shots is None:
        return np.array([np.asarray(result.results[b].data.probabilities) for b in range(n_sets)])
    out = np.zeros((n_sets, 2**prepared.n_bits))
    for b in range(n_sets):
        for key, count in result.results[b].data.counts.items():
            out[b, int(key, 16)] += count
    return out / shots


def _aer_result(
    simulator: Any,
    circuit: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    shots: int | None,
    seed: int,
) -> Any:
    """One Aer run of `circuit` for every parameter set (B, P) in ``prepared.parameters`` order."""
    if prepared.parameters:
        column = {p: i for i, p in enumerate(prepared.parameters)}
        binds = [{p: values[:, column[p]] for p in circuit.parameters}]
        circuits = [circuit]
    else:  # no parameters to bind: B copies, so every row is its own experiment
        binds, circuits = None, [circuit] * values.shape[0]
    result = simulator.run(circuits, parameter_binds=binds, shots=shots, seed_simulator=seed).result()
    if not result.success:
        raise RuntimeError(f"Aer failed: {result.status}")
    return result


def aer_expectation_values(
    simulator: Any,
    unmeasured: QuantumCircuit,
    prepared: Prepared,
    values: np.ndarray,
    terms: list[dict[int, int]],
) -> np.ndarray:
    """Exact expectation values (B, K) of Pauli terms on physical qubits, by one Aer run with
    a ``save_expectation_value`` per term (what Aer's EstimatorV2 does)."""
    # lazy: a qiskit submodule (import time), only on this path
    from qiskit.quantum_info import Pauli

    circuit = unmeasured.copy()
    # every term on the same qubits, padded with I: Aer 0.18's qubit truncation remaps a save on
    # a subset of them wrongly (qiskit-aer issue 2442: all the subsets then read as their union)
    qubits = sorted({q for term in terms for q in term})
    for k, term in enumerate(terms):
        if term:
            label = "".join("IXYZ"[term.get(q, 0)] for q in reversed(qubits))
            circuit.save_expectation_value(Pauli(label), qubits, label=f"term{k}")
    result = _aer_result(simulator, circuit, prepared, values, None, 0)
    out = np.ones((values.shape[0], len(terms)))
    for b in range(values.shape[0]):
        data = result.data(b)
        for k, term in enumerate(terms):
            if term:
                out[b, k] = float(np.real(data[f"term{k}"]))
    return out
