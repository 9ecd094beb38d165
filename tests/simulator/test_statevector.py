import numpy as np
import pytest
from conftest import assert_sampled_from
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector

from qpa_qiskit import QPABackend, ansatz


@pytest.mark.parametrize("rotation, entanglement", [("ry", "linear"), ("rx", "circular")])
def test_exact_matches_statevector(rotation, entanglement):
    qc = ansatz(4, 3, rotation=rotation, entanglement=entanglement)
    values = np.random.default_rng(3).uniform(-np.pi, 3 * np.pi, (5, qc.num_parameters))
    probs = QPABackend("statevector").probabilities(qc, values)
    assert probs.shape == (5, 16) and probs.dtype == np.float64
    bare = qc.remove_final_measurements(inplace=False)
    for row, v in zip(probs, values, strict=False):
        np.testing.assert_allclose(row, Statevector(bare.assign_parameters(v)).probabilities(), atol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


def test_single_parameter_set_gives_one_row():
    qc = ansatz(3, 1)
    values = np.array([0.4, 1.1, 2.5])
    probs = QPABackend("ideal").probabilities(qc, values)
    assert probs.shape == (1, 8)
    bare = qc.remove_final_measurements(inplace=False)
    np.testing.assert_allclose(
        probs[0], Statevector(bare.assign_parameters(values)).probabilities(), atol=1e-12
    )


def test_little_endian_order():
    qc = QuantumCircuit(3, 3)
    qc.x(0)  # bit 0 set: index 1
    qc.x(2)  # bit 2 set: index 4
    qc.measure(range(3), range(3))
    probs = QPABackend("statevector").probabilities(qc)[0]
    assert probs[0b101] == pytest.approx(1.0)


def test_unmeasured_circuit_measures_every_qubit():
    qc = QuantumCircuit(2)
    qc.x(1)
    probs = QPABackend("statevector").probabilities(qc)[0]
    np.testing.assert_allclose(probs, [0, 0, 1, 0], atol=1e-12)


def test_sampled_consistent_with_exact():
    qc = ansatz(3, 2)
    values = np.random.default_rng(4).uniform(0, 2 * np.pi, (4, qc.num_parameters))
    exact = QPABackend("statevector").probabilities(qc, values)
    backend = QPABackend("statevector", shots_factor=500, seed=11)
    shots = backend.num_shots(3)
    freqs = backend.probabilities(qc, values)
    assert shots == 4000
    assert_sampled_from(freqs, exact, shots)
    assert not np.allclose(freqs, exact)


def test_seed_reproducible():
    qc = ansatz(3, 1)
    values = np.full(3, 0.7)
    a = QPABackend("statevector", shots=200, seed=5).probabilities(qc, values)
    b = QPABackend("statevector", shots=200, seed=5).probabilities(qc, values)
    np.testing.assert_array_equal(a, b)
