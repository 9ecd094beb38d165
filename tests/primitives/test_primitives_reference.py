"""The primitives and QPABackend where Qiskit's, Aer's and qiskit-machine-learning's own tests
found them apart from the reference (issue 22, sections 5 and 6): classical bits without
measurements, subcircuits added with ``append``, the reference seed semantics, exact values
of circuits with resets and mid-circuit measurements, and bad inputs."""

import warnings

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives import StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import DensityMatrix, SparsePauliOp

from qpa_qiskit import QPABackend
from qpa_qiskit.backends import SlowEngineWarning, flatten
from qpa_qiskit.errors import CapacityError, InputError
from qpa_qiskit.primitives import Estimator, Sampler

NOISY = "aer_noisy:fake_brisbane"


def bell_with_bits() -> QuantumCircuit:
    """Gates only, on a circuit that has classical bits (QuantumCircuit(2, 2))."""
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.ry(0.3, 1)
    return qc


def one_angle() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.ry(Parameter("a"), 0)
    return qc


# ------------------------------------------------------------------ classical bits, no measurements
def test_estimator_and_backend_accept_classical_bits_without_measurements():
    qc = bell_with_bits()
    observables = ["ZZ", "XX", "IZ"]
    theirs = StatevectorEstimator().run([(qc, observables)]).result()[0].data.evs
    ours = Estimator("statevector").run([(qc, observables)]).result()[0].data.evs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    backend = QPABackend("statevector")
    np.testing.assert_allclose(backend.expectation_values(qc, observables)[0], theirs, rtol=0, atol=1e-12)
    noisy = Estimator(NOISY).run([(qc, observables)]).result()[0].data.evs
    bare = QuantumCircuit(2)
    bare.compose(qc, inplace=True)  # the same gates without the bits
    expected = Estimator(NOISY).run([(bare, observables)]).result()[0].data.evs
    np.testing.assert_array_equal(noisy, expected)
    # probabilities still need the bits measured: nothing says what they would read
    with pytest.raises(InputError, match="classical bits but no measurements"):
        backend.probabilities(qc)


# ------------------------------------------------------------------ appended subcircuits
def appended_and_composed(n: int, measure: bool = False) -> tuple[QuantumCircuit, QuantumCircuit]:
    weights = real_amplitudes(n, reps=2)
    appended = QuantumCircuit(n)
    appended.append(weights, range(n))
    composed = QuantumCircuit(n).compose(weights)
    if measure:
        appended.measure_all()
        composed.measure_all()
    return appended, composed


def test_appended_subcircuits_run_on_the_fast_engines_with_the_composed_values():
    appended, composed = appended_and_composed(4)
    values = np.random.default_rng(3).uniform(-1, 1, (8, composed.num_parameters))
    observables = ["ZZZZ", "IIIX", "YIZI"]
    for spec in ("statevector", NOISY):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SlowEngineWarning)  # no Aer fallback
            ours = Estimator(spec).run([(appended, observables, values[:, None, :])]).result()[0]
        same = Estimator(spec).run([(composed, observables, values[:, None, :])]).result()[0]
        np.testing.assert_array_equal(ours.data.evs, same.data.evs)

    appended, composed = appended_and_composed(3, measure=True)
    values = values[:, : composed.num_parameters]
    sampler = Sampler(NOISY, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowEngineWarning)
        ours = sampler.run([(appended, values)]).result()[0].data.meas.array
    same = Sampler(NOISY, seed=5).run([(composed, values)]).result()[0].data.meas.array
    np.testing.assert_array_equal(ours, same)


def test_flatten_expands_nested_subcircuits_with_their_phase_measurements_and_resets():
    inner = QuantumCircuit(2, 1, global_phase=0.25)
    inner.h(0)
    inner.reset(1)
    inner.measure(0, 0)
    middle = QuantumCircuit(3, 1, global_phase=0.5)
    middle.append(inner, [2, 0], [0])
    outer = QuantumCircuit(3, 2)
    outer.x(1)
    outer.append(middle, [0, 1, 2], [1])
    flat = flatten(outer)
    assert [(i.operation.name, [flat.find_bit(q).index for q in i.qubits]) for i in flat.data] == [
        ("x", [1]),
        ("h", [2]),
        ("reset", [0]),
        ("measure", [2]),
    ]
    assert flat.find_bit(flat.data[-1].clbits[0]).index == 1
    assert float(flat.global_phase) == pytest.approx(0.75)
    gates_only = QuantumCircuit(1)
    gates_only.h(0)
    assert flatten(gates_only) is gates_only  # nothing to expand: the circuit itself


# ------------------------------------------------------------------ seeds, as the reference primitives
def test_an_integer_seed_repeats_samples_and_noise_run_after_run_as_the_reference_does():
    qc = bell_with_bits()
    qc.measure([0, 1], [0, 1])
    pub = (qc, None, 200)
    for reference in (StatevectorSampler(seed=3),):  # the reference's own behaviour
        assert np.array_equal(*(reference.run([pub]).result()[0].data.c.array for _ in range(2)))
    sampler = Sampler("statevector", seed=3)
    first, second = (sampler.run([pub]).result()[0].data.c.array for _ in range(2))
    assert np.array_equal(first, second)
    # a PUB's samples do not depend on the other PUBs of its job
    together = sampler.run([(qc, None, 50), pub]).result()[1].data.c.array
    assert np.array_equal(together, first)

    bare = bell_with_bits()
    estimator = Estimator("statevector", seed=3)
    noisy_pub = (bare, ["ZZ", "XX"], None, 1 / 64)  # what an EstimatorQNN passes
    runs = [estimator.run([noisy_pub]).result()[0].data.evs for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], Estimator("statevector").run([(bare, ["ZZ", "XX"])]).result()[0].data.evs)
    on_aer = Estimator(NOISY, seed=3)
    mid = QuantumCircuit(1, 1)
    mid.h(0)
    mid.measure(0, 0)
    mid.ry(0.4, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowEngineWarning)
        aer_runs = [on_aer.run([(mid, "Z", None, 0.1)]).result()[0].data.evs for _ in range(2)]
    np.testing.assert_array_equal(aer_runs[0], aer_runs[1])  # the Aer fallback too


def test_a_generator_seed_is_one_stream_across_runs():
    qc = bell_with_bits()
    qc.measure([0, 1], [0, 1])
    a = Sampler("statevector", seed=np.random.default_rng(8))
    b = Sampler("statevector", seed=np.random.default_rng(8))
    runs_a = [a.run([(qc, None, 300)]).result()[0].data.c.array for _ in range(2)]
    runs_b = [b.run([(qc, None, 300)]).result()[0].data.c.array for _ in range(2)]
    assert not np.array_equal(runs_a[0], runs_a[1])  # fresh samples each run
    assert all(np.array_equal(x, y) for x, y in zip(runs_a, runs_b, strict=True))  # reproducible


# ------------------------------------------------------------------ non-unitary circuits, exactly
def with_reset() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.ry(0.8, 1)
    qc.reset(0)
    qc.h(0)
    qc.cx(1, 0)
    qc.ry(0.3, 0)
    return qc


def exact(qc: QuantumCircuit, observables: list[str]) -> np.ndarray:
    rho = DensityMatrix(qc)
    return np.array([rho.expectation_value(SparsePauliOp(o)).real for o in observables])


def test_resets_on_statevector_are_exact_not_sampled():
    qc = with_reset()
    observables = ["ZI", "IZ", "XX", "ZZ", "XI"]
    expected = exact(qc, observables)
    for seed in range(4):
        backend = QPABackend("statevector", seed=seed)
        np.testing.assert_allclose(backend.expectation_values(qc, observables)[0], expected, atol=1e-12)
        probabilities = DensityMatrix(qc).probabilities()
        np.testing.assert_allclose(backend.probabilities(qc)[0], probabilities, atol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SlowEngineWarning)
            result = Estimator("statevector", seed=seed).run([(qc, observables)]).result()[0]
        np.testing.assert_allclose(result.data.evs, expected, rtol=0, atol=1e-12)
        assert np.all(result.data.stds == 0)


def test_mid_circuit_measurements_in_the_estimator_are_exact_dephasing():
    qc = QuantumCircuit(2, 1)
    qc.ry(0.8, 0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.ry(0.5, 0)
    qc.rx(0.2, 1)
    dephased = QuantumCircuit(2)  # what the measurement does to the state, its outcome unread
    dephased.ry(0.8, 0)
    dephased.cx(0, 1)
    state = DensityMatrix(dephased)
    p0 = np.kron(np.eye(2), np.diag([1.0, 0.0]))
    p1 = np.kron(np.eye(2), np.diag([0.0, 1.0]))
    state = DensityMatrix(p0 @ state.data @ p0 + p1 @ state.data @ p1)
    after = QuantumCircuit(2)
    after.ry(0.5, 0)
    after.rx(0.2, 1)
    state = state.evolve(after)
    observables = ["IZ", "ZI", "ZZ", "XI"]
    expected = [state.expectation_value(SparsePauliOp(o)).real for o in observables]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowEngineWarning)
        for seed in range(3):
            evs = Estimator("statevector", seed=seed).run([(qc, observables)]).result()[0].data.evs
            np.testing.assert_allclose(evs, expected, rtol=0, atol=1e-12)
        off = Estimator(NOISY, gate_error=False, thermal_relaxation=False, seed=1)
        np.testing.assert_allclose(off.run([(qc, observables)]).result()[0].data.evs, expected, atol=1e-10)
        noisy = [Estimator(NOISY, seed=s).run([(qc, observables)]).result()[0].data.evs for s in range(2)]
    np.testing.assert_array_equal(noisy[0], noisy[1])  # exact: not a function of the seed


def test_the_estimator_refuses_control_flow_rather_than_sample_it():
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)
    with pytest.raises(InputError, match="control flow"):
        Estimator("statevector").run([(qc, "Z")]).result()


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("values", [[0.5 + 1j], np.array([0.5 + 1j]), np.array([[0.1], [0.2 - 3j]])])
def test_complex_angles_are_refused_not_truncated(values):
    qc = one_angle()
    backend = QPABackend("statevector")
    with pytest.raises(InputError, match="complex values"):
        backend.probabilities(qc, values)
    with pytest.raises(InputError, match="complex values"):
        backend.expectation_values(qc, ["Z"], values)
    with pytest.raises(InputError, match="complex values"):
        Estimator("statevector").run([(qc, "Z", values)])
    measured = qc.measure_all(inplace=False)
    with pytest.raises(TypeError, match="complex values"):  # what Qiskit raises for a complex list
        Sampler("statevector").run([(measured, values)])
    # a complex array whose imaginary part is 0 is real
    real = backend.probabilities(qc, [0.5])
    np.testing.assert_allclose(backend.probabilities(qc, np.array([0.5 + 0j])), real)


def test_no_parameter_sets_give_empty_results_of_the_right_shape():
    qc = one_angle()
    for spec in ("statevector", NOISY):
        backend = QPABackend(spec)
        assert backend.probabilities(qc, np.zeros((0, 1))).shape == (0, 2)
        assert backend.expectation_values(qc, ["Z", "X"], np.zeros((0, 1))).shape == (0, 2)
    ours = Estimator("statevector").run([(qc, ["Z", "X"], np.zeros((0, 1, 1)))]).result()[0]
    theirs = StatevectorEstimator().run([(qc, ["Z", "X"], np.zeros((0, 1, 1)))]).result()[0]
    assert ours.data.evs.shape == theirs.data.evs.shape == (0, 2)
    measured = qc.measure_all(inplace=False)
    ours = Sampler("statevector").run([(measured, np.zeros((0, 1)))]).result()[0]
    theirs = StatevectorSampler().run([(measured, np.zeros((0, 1)))]).result()[0]
    assert ours.data.meas.shape == theirs.data.meas.shape == (0,)


def test_a_memory_budget_is_honoured_on_statevector_and_on_aer():
    qc = real_amplitudes(8, reps=1)
    qc.measure_all()
    values = np.zeros(qc.num_parameters)
    with pytest.raises(CapacityError, match=r"needs 4 KiB .* than memory_budget=1 KiB: raise memory_budget"):
        QPABackend("statevector", memory_budget="1KiB").probabilities(qc, values)
    assert QPABackend("statevector", memory_budget="4KiB").probabilities(qc, values).shape == (1, 256)
    small = real_amplitudes(4, reps=1)
    small.measure_all()
    backend = QPABackend(NOISY, memory_budget="1KiB", engine="aer")
    with pytest.raises(CapacityError, match=r"density-matrix simulation of 4 qubits.*memory_budget=1 KiB"):
        backend.probabilities(small, np.zeros(small.num_parameters))


@pytest.mark.parametrize("primitive", [Sampler, Estimator])
def test_an_ibm_spec_is_refused_without_advising_shots(primitive):
    with pytest.raises(InputError, match="IBM Quantum, whose own client-side primitives") as caught:
        primitive("ibm:fake_brisbane")
    assert "shots" not in str(caught.value)
