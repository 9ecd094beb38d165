"""The PTM engine against independent Aer density-matrix runs of the same ISA circuit."""

import functools

import numpy as np
import pytest
from conftest import assert_sampled_from
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError

from qpa_qiskit import QPABackend, ansatz
from qpa_qiskit.backends import SlowEngineWarning, fake_device, measured_qubits
from qpa_qiskit.noise import describe_noise
from qpa_qiskit.simulator import PTMProgram, apply_readout


@functools.cache
def device_noise(device: str):
    """The device's Aer noise model, built here (not the cached one the backend uses), once per
    device and process: seconds each (Torino's about 4 s), and only read (Aer copies a model
    before it adds to it)."""
    return NoiseModel.from_backend(fake_device(device))


def aer_density_matrix(isa: QuantumCircuit, device: str, values: np.ndarray, shots=None):
    """Aer's own density-matrix method on the ISA circuit, noise model built here."""
    sim = AerSimulator(method="density_matrix", noise_model=device_noise(device))
    params = list(isa.parameters)
    binds = [{p: values[:, i] for i, p in enumerate(params)}] if params else None
    if shots is None:
        circ = isa.remove_final_measurements(inplace=False)
        circ.save_probabilities(measured_qubits(isa))
        result = sim.run([circ], parameter_binds=binds).result()
        return np.array([result.results[b].data.probabilities for b in range(len(values))])
    result = sim.run([isa], parameter_binds=binds, shots=shots, seed_simulator=3).result()
    out = np.zeros((len(values), 2**isa.num_clbits))
    for b in range(len(values)):
        for key, count in result.results[b].data.counts.items():
            out[b, int(key, 16)] += count
    return out / shots


CASES = [
    ("fake_brisbane", dict(n_qubits=4, reps=2)),
    ("fake_brisbane", dict(n_qubits=3, reps=2, rotation="rx", entanglement="circular")),
    ("fake_torino", dict(n_qubits=4, reps=2)),
    ("fake_athens", dict(n_qubits=5, reps=1, entanglement="circular")),
]


@pytest.mark.parametrize("device, shape", CASES)
def test_exact_noisy_matches_aer_density_matrix(device, shape):
    qc = ansatz(**shape)
    # the qubits this test was written for (qubits 0-3 where no swaps are needed); the noise-aware
    # layout's qubits are test_ptm_and_aer_differ_on_torinos_noise_aware_qubits's
    backend = QPABackend(f"aer_noisy:{device}", layout="preset")
    isa = backend.isa_circuit(qc)
    rng = np.random.default_rng(5)
    values = rng.uniform(0, 2 * np.pi, (4, qc.num_parameters))
    values[2] = values[0]  # a duplicate of the base set
    values[3, :-1] = values[0, :-1]  # differs from the base only in the last parameter
    program = PTMProgram(isa, describe_noise(device_noise(device)))
    reference = aer_density_matrix(isa, device, values)
    np.testing.assert_allclose(program.probabilities(values, readout=False), reference, atol=1e-10)


@pytest.mark.xfail(
    strict=True,
    reason="known, not explained: on the qubits the noise-aware layout picks on Torino (99, 92, 80, "
    "81; qubit 80's T2 is 27.8 us) the PTM engine and Aer's density matrix differ by up to 7.4e-10 "
    "(2.3e-7 relative), above the 1e-10 they agree to elsewhere",
)
def test_ptm_and_aer_differ_on_torinos_noise_aware_qubits():
    qc = ansatz(n_qubits=4, reps=2)
    backend = QPABackend("aer_noisy:fake_torino")
    isa = backend.isa_circuit(qc)
    assert backend.placement(qc)["layout"] == [99, 92, 80, 81]
    values = np.random.default_rng(5).uniform(0, 2 * np.pi, (4, qc.num_parameters))
    program = PTMProgram(isa, describe_noise(device_noise("fake_torino")))
    reference = aer_density_matrix(isa, "fake_torino", values)
    np.testing.assert_allclose(program.probabilities(values, readout=False), reference, atol=1e-10)


def test_parameter_shift_batch_matches_aer():
    qc = ansatz(3, 2)
    backend = QPABackend("aer_noisy:fake_brisbane")
    isa = backend.isa_circuit(qc)
    base = np.random.default_rng(6).uniform(0, 2 * np.pi, qc.num_parameters)
    from qpa_qiskit.qnn import shifted_parameter_sets

    values = shifted_parameter_sets(base)
    program = PTMProgram(isa, describe_noise(device_noise("fake_brisbane")))
    np.testing.assert_allclose(
        program.probabilities(values, readout=False),
        aer_density_matrix(isa, "fake_brisbane", values),
        atol=1e-10,
    )


def test_readout_errors_match_aer_sampling():
    qc = ansatz(3, 2)
    backend = QPABackend("aer_noisy:fake_brisbane")
    values = np.random.default_rng(7).uniform(0, 2 * np.pi, (2, qc.num_parameters))
    exact = backend.probabilities(qc, values)
    shots = 400_000
    sampled = aer_density_matrix(backend.isa_circuit(qc), "fake_brisbane", values, shots=shots)
    assert_sampled_from(sampled, exact, shots)
    # and the readout errors matter at this precision
    no_readout = PTMProgram(backend.isa_circuit(qc), None).probabilities(values)
    assert np.abs(no_readout - exact).max() > 5e-3


def test_apply_readout_by_hand():
    # bit 0 flips 0->1 with 10%, bit 1 reads 1 as 0 with 20%
    c0 = np.array([[0.9, 0.1], [0.0, 1.0]])
    c1 = np.array([[1.0, 0.0], [0.2, 0.8]])
    true = np.array([[0.0, 0.0, 1.0, 0.0]])  # bits (b1, b0) = (1, 0)
    read = apply_readout(true, [c0, c1])
    np.testing.assert_allclose(read, [[0.9 * 0.2, 0.1 * 0.2, 0.9 * 0.8, 0.1 * 0.8]])
    err = ReadoutError([[0.9, 0.1], [0.0, 1.0]])
    np.testing.assert_allclose(err.probabilities, c0)


def test_engines_agree_exact():
    qc = ansatz(3, 2)
    values = np.random.default_rng(8).uniform(0, 2 * np.pi, (3, qc.num_parameters))
    fast = QPABackend("aer_noisy:fake_brisbane", engine="ptm").probabilities(qc, values)
    aer = QPABackend("aer_noisy:fake_brisbane", engine="aer").probabilities(qc, values)
    np.testing.assert_allclose(fast, aer, atol=1e-10)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("engine", ["ptm", "aer"])
def test_sampled_noisy_consistent_with_exact(engine):
    qc = ansatz(3, 2)
    values = np.random.default_rng(9).uniform(0, 2 * np.pi, (3, qc.num_parameters))
    exact = QPABackend("aer_noisy:fake_brisbane").probabilities(qc, values)
    backend = QPABackend("aer_noisy:fake_brisbane", shots_factor=1000, seed=2, engine=engine)
    assert_sampled_from(backend.probabilities(qc, values), exact, backend.num_shots(3))


def test_layout_and_routing_undone():
    # circular entanglement on a heavy-hex device needs routing; the noisy distribution
    # must still be over the logical qubits, close to the ideal one
    qc = ansatz(5, 1, entanglement="circular")
    values = np.random.default_rng(10).uniform(0, 2 * np.pi, qc.num_parameters)
    backend = QPABackend("aer_noisy:fake_brisbane")
    isa = backend.isa_circuit(qc)
    assert isa.count_ops().get("ecr", 0) > 5 * 1  # routed: more two-qubit gates than CNOTs
    noisy = backend.probabilities(qc, values)[0]
    ideal = Statevector(qc.remove_final_measurements(inplace=False).assign_parameters(values)).probabilities()
    tvd = 0.5 * np.abs(noisy - ideal).sum()
    assert tvd < 0.15
    assert 0.5 * np.abs(noisy[::-1] - ideal).sum() > 3 * tvd


def test_ptm_engine_refuses_what_it_cannot_represent():
    from qiskit.circuit import Parameter

    theta = Parameter("t")
    qc = QuantumCircuit(2, 2)
    qc.ry(theta, 0)
    qc.delay(320, 0, unit="dt")  # the model's noise pass adds relaxation in delays: Aer's alone
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    with pytest.raises(Exception, match="engine='ptm' cannot simulate"):
        QPABackend("aer_noisy:fake_brisbane", engine="ptm").probabilities(qc, [0.9])
    with pytest.warns(SlowEngineWarning, match="delays under a noise model"):  # auto falls back, and says so
        probs = QPABackend("aer_noisy:fake_brisbane").probabilities(qc, [0.9])
    reference = QPABackend("aer_noisy:fake_brisbane", engine="aer").probabilities(qc, [0.9])
    np.testing.assert_allclose(probs, reference, atol=1e-12)


def test_random_circuits_with_ancilla_and_permuted_clbits_match_aer():
    """Gates on far-apart qubits, an unmeasured qubit, clbits in another order than qubits."""
    from qiskit.circuit import ParameterVector

    rng = np.random.default_rng(13)
    theta = ParameterVector("t", 6)
    qc = QuantumCircuit(5, 4)
    k = 0
    for _ in range(14):
        kind = rng.integers(4)
        a, b = (int(v) for v in rng.choice(5, size=2, replace=False))
        if kind == 0 and k < len(theta):
            qc.rz(theta[k], a)
            k += 1
        elif kind == 1:
            qc.sx(a)
        elif kind == 2:
            qc.cx(a, b)
        else:
            qc.ecr(a, b)
    for t in theta[k:]:
        qc.ry(t, int(rng.integers(5)))
    qc.measure([3, 0, 4, 1], [0, 1, 2, 3])  # qubit 2 is not measured
    values = rng.uniform(0, 2 * np.pi, (3, len(theta)))
    program = PTMProgram(qc, describe_noise(device_noise("fake_brisbane")))
    np.testing.assert_allclose(
        program.probabilities(values, readout=False),
        aer_density_matrix(qc, "fake_brisbane", values),
        atol=1e-10,
    )


def test_noise_description_follows_aer_local_then_default():
    from qiskit_aer.noise import depolarizing_error

    model = NoiseModel()
    default, local = depolarizing_error(0.01, 1), depolarizing_error(0.2, 1)
    model.add_all_qubit_quantum_error(default, ["sx"])
    model.add_quantum_error(local, ["sx"], [1])
    model.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.05, 0.95]]))
    model.add_readout_error(ReadoutError([[0.7, 0.3], [0.0, 1.0]]), [2])
    noise = describe_noise(model)
    assert noise.gate_error("sx", (1,)) == local and noise.gate_error("sx", (0,)) == default
    assert noise.gate_error("x", (0,)) is None
    np.testing.assert_allclose(noise.readout_error(2), [[0.7, 0.3], [0.0, 1.0]])
    np.testing.assert_allclose(noise.readout_error(0), [[0.9, 0.1], [0.05, 0.95]])
    assert not noise.has_noise_passes and not noise.is_ideal and describe_noise(None).is_ideal
    # and the engine applies exactly that: a circuit on qubits 0-2 against Aer with this model
    qc = QuantumCircuit(3, 3)
    qc.sx([0, 1, 2])
    qc.cx(0, 2)
    qc.measure([0, 1, 2], [0, 1, 2])
    sim = AerSimulator(method="density_matrix", noise_model=model)
    snap = qc.remove_final_measurements(inplace=False)
    snap.save_probabilities([0, 1, 2])
    reference = np.asarray(sim.run(snap).result().results[0].data.probabilities)
    from qpa_qiskit.simulator import readout_matrices

    exact = PTMProgram(qc, noise).probabilities(np.empty((1, 0)))
    np.testing.assert_allclose(
        exact[0], apply_readout(reference[None], readout_matrices(noise, [0, 1, 2]))[0]
    )
    with pytest.raises(TypeError, match="describe_noise"):
        PTMProgram(qc, model)


def test_the_engine_walks_noise_aware_qubits_as_cheaply_as_the_preset_ones():
    """The noise-aware qubits of a 10- and 12-qubit ladder ([112, 126, 125, ...]) interleaved
    its chain in ascending order (every block copied the state into a permuted layout) and the
    transpiler emitted it layer by layer (every qubit alive to the last layer): twice the time
    of the preset qubits. Now every two-qubit block acts on neighbouring axes and the walk reads
    as many state entries on either layout; the probabilities stay Aer's."""
    import math

    for n in (10, 12):
        circuit = ansatz(n, 8)
        walks = {}
        for layout in ("preset", "noise_aware"):
            compiled = QPABackend("aer_noisy:brisbane", layout=layout).program(circuit).compiled
            assert all(b.qubits[-1] - b.qubits[0] == len(b.qubits) - 1 for b in compiled.blocks)
            assert all(len(b.qubits) == 2 for b in compiled.blocks)  # one-qubit tails folded in
            walks[layout] = sum(math.prod(s) for s in compiled.cone[1][:-1])
        assert walks["noise_aware"] == walks["preset"], walks
    values = np.random.default_rng(3).uniform(0, 2 * np.pi, (2, ansatz(5, 2).num_parameters))
    fast = QPABackend("aer_noisy:brisbane", engine="ptm").probabilities(ansatz(5, 2), values)
    aer = QPABackend("aer_noisy:brisbane", engine="aer").probabilities(ansatz(5, 2), values)
    np.testing.assert_allclose(fast, aer, atol=1e-9)  # the noise-aware qubits' tolerance
