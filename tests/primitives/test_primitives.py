"""qpa_qiskit.primitives against Qiskit's reference primitives and Aer's, in their own terms."""

import warnings

import numpy as np
import pytest
import torch
from conftest import assert_sampled_from
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import ParameterVector
from qiskit.circuit.random import random_circuit
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    PrimitiveJob,
    PrimitiveResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.primitives.containers import BitArray
from qiskit.quantum_info import DensityMatrix, SparsePauliOp, Statevector, random_pauli_list

from qpa_qiskit import QPABackend
from qpa_qiskit.backends import SlowEngineWarning, measured_qubits
from qpa_qiskit.circuits import ansatz
from qpa_qiskit.errors import InputError, SpecError
from qpa_qiskit.primitives import Estimator, Sampler

NOISY = "aer_noisy:fake_brisbane"


def parameterised(n_qubits: int, depth: int, seed: int) -> QuantumCircuit:
    """A random circuit with a few parameterised rotations spliced in."""
    rng = np.random.default_rng(seed)
    qc = random_circuit(n_qubits, depth, max_operands=2, seed=seed)
    theta = ParameterVector("t", 3)
    out = QuantumCircuit(n_qubits)
    for k, inst in enumerate(qc.data):
        out.append(inst)
        if k % 3 == 0:
            q = int(rng.integers(n_qubits))
            getattr(out, ["rx", "ry", "rz"][k % 3 and 1])(theta[(k // 3) % 3], q)
    for p in theta:
        if p not in out.parameters:
            out.ry(p, 0)
    return out


def exact_distribution(circuit: QuantumCircuit, values: np.ndarray, qubits: list[int]) -> np.ndarray:
    bound = circuit.remove_final_measurements(inplace=False).assign_parameters(values)
    return Statevector(bound).probabilities(qubits)


# ------------------------------------------------------------------ interfaces
def test_they_are_v2_primitives_and_return_jobs():
    qc = ansatz(2, 1)
    sampler, estimator = Sampler("statevector", seed=0), Estimator("statevector")
    assert isinstance(sampler, BaseSamplerV2) and isinstance(estimator, BaseEstimatorV2)
    assert sampler.default_shots == 1024 and estimator.default_precision == 0.0
    job = sampler.run([(qc, np.zeros(qc.num_parameters))])
    assert isinstance(job, PrimitiveJob)
    result = job.result()
    assert isinstance(result, PrimitiveResult) and result.metadata == {"version": 2}
    assert result[0].metadata == {"shots": 1024, "circuit_metadata": {}}
    unmeasured = qc.remove_final_measurements(inplace=False)
    unmeasured.metadata = {"tag": 7}
    result = estimator.run([(unmeasured, "ZZ", np.zeros(qc.num_parameters))]).result()
    assert result[0].metadata == {"target_precision": 0.0, "circuit_metadata": {"tag": 7}}


# ------------------------------------------------------------------ sampler, statevector
def test_sampler_registers_shapes_and_distribution_match_statevector_sampler():
    qreg = QuantumRegister(4)
    alpha, beta, idle = (
        ClassicalRegister(3, "alpha"),
        ClassicalRegister(2, "beta"),
        ClassicalRegister(1, "idle"),
    )
    qc = QuantumCircuit(qreg, alpha, beta, idle)
    qc.compose(parameterised(4, 4, seed=1), inplace=True)
    qc.measure([2, 0, 3], alpha)
    qc.measure([1, 2], beta)  # qubit 2 read twice; idle is never written
    values = np.random.default_rng(2).uniform(-np.pi, np.pi, (2, 3, qc.num_parameters))
    shots = 4000
    ours = Sampler("statevector", seed=3).run([(qc, values)], shots=shots).result()[0]
    theirs = StatevectorSampler(seed=3).run([(qc, values)], shots=shots).result()[0]
    assert sorted(ours.data.keys()) == sorted(theirs.data.keys()) == ["alpha", "beta", "idle"]
    assert ours.data.shape == theirs.data.shape == (2, 3)
    for name in ("alpha", "beta", "idle"):
        a, b = ours.data[name], theirs.data[name]
        assert isinstance(a, BitArray)
        assert (a.shape, a.num_bits, a.num_shots, a.array.shape) == (
            b.shape,
            b.num_bits,
            b.num_shots,
            b.array.shape,
        )
    assert ours.data.idle.get_counts() == {"0": shots * 6}
    for index in np.ndindex(2, 3):
        exact = exact_distribution(qc, values[index], [2, 0, 3])  # alpha's bits
        freqs = ours.data.alpha.get_int_counts(index)
        assert_sampled_from(
            np.bincount(list(np.repeat(*zip(*freqs.items(), strict=True))), minlength=8) / shots, exact, shots
        )
        both = np.concatenate(
            [ours.data.alpha.slice_bits([0])[index].array, ours.data.beta.slice_bits([1])[index].array],
            axis=1,
        )
        assert np.array_equal(both[:, 0], both[:, 1])  # the same measurement of qubit 2


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_sampler_random_circuits_against_exact(seed):
    qc = parameterised(3, 5, seed)
    qc.measure_all()
    values = np.random.default_rng(seed).uniform(-3, 3, (5, qc.num_parameters))
    shots = 3000
    result = Sampler("statevector", seed=seed).run([(qc, values, shots)]).result()[0]
    for b in range(5):
        counts = result.data.meas.get_int_counts(b)
        freqs = np.zeros(8)
        for k, v in counts.items():
            freqs[k] = v / shots
        assert_sampled_from(freqs, exact_distribution(qc, values[b], [0, 1, 2]), shots)


def test_sampler_seed_reproduces_a_sequence_of_runs_and_per_pub_shots():
    qc = ansatz(3, 1)
    values = np.linspace(0, 1, qc.num_parameters)
    # a Generator: one stream, used on run after run (reproducible from its seed)
    a, b = (
        Sampler("statevector", seed=np.random.default_rng(11)),
        Sampler("statevector", seed=np.random.default_rng(11)),
    )
    first = [a.run([(qc, values)]).result()[0].data.c.array for _ in range(2)]
    second = [b.run([(qc, values)]).result()[0].data.c.array for _ in range(2)]
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # one stream, not the same draw each run
    result = a.run([(qc, values, 10), (qc, values)], shots=7).result()
    assert result[0].data.c.num_shots == 10 and result[1].data.c.num_shots == 7
    assert result[0].metadata["shots"] == 10


def test_pubs_of_one_circuit_go_out_as_one_submission(monkeypatch):
    qc = ansatz(3, 2)
    sampler = Sampler("statevector", seed=0)
    calls = []
    original = sampler.backend.probabilities
    monkeypatch.setattr(
        sampler.backend, "probabilities", lambda c, v: calls.append(np.shape(v)) or original(c, v)
    )
    rng = np.random.default_rng(0)
    pubs = [(qc, rng.normal(size=qc.num_parameters)) for _ in range(12)] + [
        (qc, rng.normal(size=(2, 3, qc.num_parameters)))
    ]
    result = sampler.run(pubs).result()
    assert calls == [(18, qc.num_parameters)]
    assert result[12].data.c.shape == (2, 3)


# ------------------------------------------------------------------ estimator, statevector
@pytest.mark.parametrize(
    ("seed", "param_shape", "obs_shape"),
    [(0, (), ()), (1, (4,), (4,)), (2, (3, 1), (1, 2)), (3, (2, 3), (3,)), (4, (5,), ())],
)
def test_estimator_equals_statevector_estimator(seed, param_shape, obs_shape):
    circuit = parameterised(3, 4, seed)
    rng = np.random.default_rng(seed)
    values = rng.uniform(-np.pi, np.pi, (*param_shape, circuit.num_parameters))
    n_obs = int(np.prod(obs_shape, dtype=int))
    paulis = random_pauli_list(3, 3 * n_obs, seed=seed, phase=False)
    observables = np.empty(n_obs, dtype=object)
    for k in range(n_obs):
        observables[k] = SparsePauliOp(paulis[3 * k : 3 * k + 3], rng.normal(size=3))
    observables = observables.reshape(obs_shape).tolist() if obs_shape else observables[0]
    ours = Estimator("statevector").run([(circuit, observables, values)]).result()[0]
    theirs = StatevectorEstimator().run([(circuit, observables, values)]).result()[0]
    assert ours.data.shape == theirs.data.shape == ours.data.evs.shape
    np.testing.assert_allclose(ours.data.evs, theirs.data.evs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.data.stds, theirs.data.stds)  # zeros at precision 0


def test_estimator_precision_is_seeded_gaussian_noise():
    circuit = ansatz(2, 1).remove_final_measurements(inplace=False)
    values = np.full(circuit.num_parameters, 0.4)
    exact = Estimator("statevector").run([(circuit, "ZI", values)]).result()[0].data.evs
    pub = (circuit, "ZI", np.broadcast_to(values, (4000, circuit.num_parameters)), 0.05)
    noisy = Estimator("statevector", seed=5).run([pub]).result()[0]
    again = Estimator("statevector", seed=5).run([pub]).result()[0]
    assert np.array_equal(noisy.data.evs, again.data.evs)
    assert np.all(noisy.data.stds == 0.05) and noisy.metadata["target_precision"] == 0.05
    deviation = noisy.data.evs - exact
    assert abs(deviation.mean()) < 4 * 0.05 / np.sqrt(4000)
    assert 0.045 < deviation.std() < 0.055


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.float64("nan")])
def test_estimator_refuses_a_precision_that_is_not_a_finite_number(bad):
    """Qiskit refuses only a negative precision: nan came back as nan stds, inf as infinite values."""
    circuit = ansatz(2, 1).remove_final_measurements(inplace=False)
    values = np.zeros(circuit.num_parameters)
    estimator = Estimator("statevector", seed=1)
    with pytest.raises(InputError, match=r"^PUB 1: precision must be a finite number >= 0, got "):
        estimator.run([(circuit, "ZI", values), (circuit, "ZI", values, bad)])
    with pytest.raises(InputError, match=r"^precision must be a finite number >= 0, got "):
        estimator.run([(circuit, "ZI", values)], precision=bad)


def test_estimator_projector_observables_expand_into_paulis():
    from qiskit.quantum_info import SparseObservable

    circuit = QuantumCircuit(2)
    circuit.ry(0.7, 0)
    circuit.h(1)
    ours = Estimator("statevector").run([(circuit, SparseObservable("+0"))]).result()[0].data.evs
    expected = (
        Statevector(circuit).probabilities_dict()["00"] + Statevector(circuit).probabilities_dict()["10"]
    )
    np.testing.assert_allclose(ours, expected, atol=1e-12)


# ------------------------------------------------------------------ noisy: against Aer
def aer_estimator(backend, precision=0.0):
    from qiskit_aer.primitives import EstimatorV2

    options = {"method": "density_matrix", "noise_model": backend.noise_model}
    return EstimatorV2(options={"backend_options": options, "default_precision": precision})


# On the preset's qubits (0-3) ours and Aer's agree to 1e-10. On the noise-aware qubits Aer's
# own two paths (its EstimatorV2 and its density matrix behind engine="aer") differ from each
# other by up to 3.4e-10, so no engine can be held to 1e-10 against either there.
@pytest.mark.parametrize("layout, atol", [("preset", 1e-10), ("noise_aware", 1e-9)])
@pytest.mark.parametrize("spec_options", [{}, {"noise_scale": 2.0}, {"thermal_relaxation": False}])
def test_noisy_estimator_equals_aer_estimator(spec_options, layout, atol):
    spec_options = {**spec_options, "layout": layout}
    circuit = ansatz(4, 2).remove_final_measurements(inplace=False)
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 2 * np.pi, (3, circuit.num_parameters))
    observables = [
        SparsePauliOp(p, c)
        for p, c in zip(random_pauli_list(4, 5, seed=8, phase=False), rng.normal(size=5), strict=True)
    ]
    estimator = Estimator(NOISY, **spec_options)
    ours = estimator.run([(circuit, [[o] for o in observables], values)]).result()[0].data.evs  # (5, 3)
    # Aer's EstimatorV2 on the very ISA circuit, the observables placed where the qubits ended
    backend = estimator.backend
    isa = backend.isa_circuit(circuit).remove_final_measurements(inplace=False)
    physical = measured_qubits(backend.isa_circuit(circuit))
    placed = [[o.apply_layout(physical, isa.num_qubits)] for o in observables]
    columns = [list(circuit.parameters).index(p) for p in isa.parameters]
    theirs = aer_estimator(backend).run([(isa, placed, values[:, columns])]).result()[0].data.evs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)
    # the ISA circuit runs as given, with observables on the device's qubits: the same values
    isa_ours = Estimator(backend).run([(isa, placed, values[:, columns])]).result()[0].data.evs
    np.testing.assert_allclose(isa_ours, theirs, rtol=0, atol=atol)
    # and Aer's density matrix behind our Estimator (engine="aer"), abstract and ISA alike
    on_aer = Estimator(NOISY, engine="aer", **spec_options)
    np.testing.assert_allclose(
        on_aer.run([(circuit, [[o] for o in observables], values)]).result()[0].data.evs, theirs, atol=atol
    )
    np.testing.assert_allclose(
        on_aer.run([(isa, placed, values[:, columns])]).result()[0].data.evs, theirs, atol=atol
    )


def test_noisy_estimator_has_no_readout_error_and_differs_from_ideal():
    circuit = QuantumCircuit(1)
    circuit.x(0)
    noisy = Estimator(NOISY).run([(circuit, "Z")]).result()[0].data.evs
    ideal = Estimator("statevector").run([(circuit, "Z")]).result()[0].data.evs
    readout_off = Estimator(NOISY, readout_error=False).run([(circuit, "Z")]).result()[0].data.evs
    assert ideal == -1 and noisy > -1  # gate error and relaxation of one x gate
    assert noisy == readout_off  # readout errors do not act on expectation values


def test_noisy_sampler_draws_from_the_density_matrix_distribution_with_readout():
    from qiskit_aer import AerSimulator

    qc = ansatz(3, 2)
    values = np.random.default_rng(9).uniform(0, 2 * np.pi, (2, qc.num_parameters))
    sampler = Sampler(NOISY, seed=2)
    shots = 20000
    result = sampler.run([(qc, values, shots)]).result()[0]
    backend = sampler.backend
    isa = backend.isa_circuit(qc)
    columns = [list(qc.parameters).index(p) for p in isa.parameters]
    # Aer's density matrix with the noise model, sampled by Aer (readout errors included)
    sim = AerSimulator(method="density_matrix", noise_model=backend.noise_model)
    aer = (
        sim.run(isa.assign_parameters(values[0, columns]), shots=200000, seed_simulator=1)
        .result()
        .get_counts()
    )
    aer_p = np.zeros(8)
    for key, count in aer.items():
        aer_p[int(key, 2)] = count / 200000
    freqs = np.zeros(8)
    for k, v in result.data.c.get_int_counts(0).items():
        freqs[k] = v / shots
    exact = QPABackend(NOISY).probabilities(qc, values)
    assert_sampled_from(freqs, exact[0], shots)
    assert np.abs(aer_p - exact[0]).sum() / 2 < 0.01  # Aer's own samples: the same distribution
    without_readout = QPABackend(NOISY, readout_error=False).probabilities(qc, values)[0]
    # readout noise is really in: the qubits read out with 0.6-1.2% error here, which moves the
    # exact distribution by 0.014 in TVD (both exact: nothing else differs)
    assert np.abs(without_readout - exact[0]).sum() / 2 > 0.01


def test_density_matrix_reference_for_a_small_noisy_estimate():
    from qiskit_aer import AerSimulator

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    estimator = Estimator(NOISY)
    ours = estimator.run([(circuit, ["XX", "ZZ", "YY"])]).result()[0].data.evs
    isa = estimator.backend.isa_circuit(circuit)
    physical = measured_qubits(isa)
    bare = isa.remove_final_measurements(inplace=False)
    bare.save_density_matrix(physical)
    rho = AerSimulator(method="density_matrix", noise_model=estimator.backend.noise_model).run(bare).result()
    state = DensityMatrix(rho.data(0)["density_matrix"])
    expected = [state.expectation_value(SparsePauliOp(p)).real for p in ("XX", "ZZ", "YY")]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ fallback
def test_mid_circuit_measurement_and_reset_fall_back_to_aer_once():
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    qc.cx(0, 1)
    qc.measure(1, 1)
    sampler = Sampler(NOISY, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = sampler.run([(qc, None, 4000)]).result()[0]
        sampler.run([qc]).result()
    slow = [w for w in caught if issubclass(w.category, SlowEngineWarning)]
    assert len(slow) == 1 and "mid-circuit measurement" in str(slow[0].message)
    counts = first.data.c.get_counts()
    assert counts.get("11", 0) + counts.get("00", 0) > 0.85 * 4000  # correlated, up to noise
    assert first.data.c.num_shots == 4000

    estimator = Estimator("statevector")
    resets = QuantumCircuit(1)
    resets.x(0)
    resets.reset(0)
    resets.h(0)
    with pytest.warns(SlowEngineWarning, match="non-unitary instruction 'reset'"):
        value = estimator.run([(resets, "X")]).result()[0].data.evs
    np.testing.assert_allclose(value, 1.0, atol=1e-12)


def test_isa_circuits_run_as_given():
    backend = QPABackend(NOISY)
    isa = backend.isa_circuit(ansatz(2, 1))
    assert backend.transpile(isa) is isa
    assert backend.transpile(ansatz(2, 1)) is not None
    values = np.full(isa.num_parameters, 0.3)
    sampled = Sampler(backend, seed=0).run([(isa, values)]).result()[0]
    assert sampled.data.c.num_bits == 2


# ------------------------------------------------------------------ errors
def reference_error(primitive, pub):
    with pytest.raises(Exception) as caught:
        primitive.run([pub]).result()
    return caught.type


@pytest.mark.parametrize(
    "pub",
    [
        lambda qc: (qc, np.zeros(qc.num_parameters + 1)),  # wrong number of values
        lambda qc: (qc, np.zeros(qc.num_parameters), 0),  # zero shots
        lambda qc: (qc, np.zeros(qc.num_parameters), -5),
        lambda qc: (qc, {"nope": 1.0}),  # values for a parameter the circuit lacks
        lambda qc: "not a circuit",
    ],
)
def test_malformed_sampler_pubs_raise_what_the_reference_raises(pub):
    qc = ansatz(2, 1)
    expected = reference_error(StatevectorSampler(), pub(qc))
    assert reference_error(Sampler("statevector"), pub(qc)) is expected


@pytest.mark.parametrize(
    "pub",
    [
        lambda qc: (qc, "ZZZ", np.zeros(qc.num_parameters)),  # observable on the wrong width
        lambda qc: (qc, "ZZ", np.zeros(qc.num_parameters + 2)),  # wrong number of values
        lambda qc: (qc, SparsePauliOp("ZZ", 1j), np.zeros(qc.num_parameters)),  # not Hermitian
        lambda qc: (qc, ["ZZ", "XX", "YY"], np.zeros((2, qc.num_parameters))),  # shapes do not broadcast
        lambda qc: (qc, "ZZ", np.zeros(qc.num_parameters), -0.1),  # negative precision
        lambda qc: (qc, "AB", np.zeros(qc.num_parameters)),
    ],
)
def test_malformed_estimator_pubs_raise_what_the_reference_raises(pub):
    qc = ansatz(2, 1).remove_final_measurements(inplace=False)
    expected = reference_error(StatevectorEstimator(), pub(qc))
    got = reference_error(Estimator("statevector"), pub(qc))
    assert issubclass(got, expected) or got is expected


def test_bad_constructor_arguments_say_what_is_accepted():
    with pytest.raises(SpecError, match="unknown backend spec"):
        Sampler("nonsense")
    with pytest.raises(InputError, match=r"qiskit_ibm_runtime\.executor_sampler\.Sampler"):
        Sampler(QPABackend("ibm:fake_brisbane", shots=100))
    with pytest.raises(InputError, match="without shots"):
        Estimator(QPABackend("statevector", shots=100))
    with pytest.raises(InputError, match="go with a spec string"):
        Sampler(QPABackend(NOISY), noise_scale=2)
    with pytest.raises(InputError, match="QPABackend or a spec string"):
        Estimator(42)
    with pytest.raises(InputError, match="seed"):
        Sampler("statevector", seed=-1)
    with pytest.raises(InputError, match="default_shots"):
        Sampler("statevector", default_shots=0)
    with pytest.raises(InputError, match="default_precision"):
        Estimator("statevector", default_precision=-1)
    assert Sampler(NOISY, noise_scale=0.5).backend.family.settings.scale == 0.5


# ------------------------------------------------------------------ qiskit-machine-learning
def qnn_data():
    x = ParameterVector("x", 2)
    w = ParameterVector("w", 4)
    circuit = QuantumCircuit(2)
    circuit.ry(x[0], 0)
    circuit.ry(x[1], 1)
    circuit.ry(w[0], 0)
    circuit.rz(w[1], 1)
    circuit.cx(0, 1)
    circuit.ry(w[2], 0)
    circuit.ry(w[3], 1)
    inputs = torch.tensor([[0.1, 0.9], [1.2, -0.4], [-0.7, 0.3]])
    targets = torch.tensor([[0.8], [-0.6], [0.2]])
    return circuit, x, w, inputs, targets


def test_estimator_qnn_gradients_equal_the_reference_and_it_trains_on_noise():
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    circuit, x, w, inputs, targets = qnn_data()
    init = np.array([0.3, -0.2, 0.5, 0.1])

    def model(estimator):
        qnn = EstimatorQNN(
            circuit=circuit,
            observables=SparsePauliOp("ZZ"),
            input_params=x,
            weight_params=w,
            estimator=estimator,
            default_precision=0.0,  # QML's default adds shot-like noise to the forward pass
        )
        return TorchConnector(qnn, initial_weights=init)

    outputs, grads = [], []
    for estimator in (Estimator("statevector"), StatevectorEstimator()):
        net = model(estimator)
        out = net(inputs)
        ((out - targets) ** 2).mean().backward()
        outputs.append(out.detach().numpy())
        grads.append(net.weight.grad.numpy().copy())
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6)

    net = model(Estimator(NOISY))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.2)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = ((net(inputs) - targets) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05


def test_sampler_qnn_trains_on_noisy_sampler():
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import SamplerQNN

    circuit, x, w, inputs, _ = qnn_data()
    measured = circuit.measure_all(inplace=False)
    qnn = SamplerQNN(
        circuit=measured, input_params=x, weight_params=w, sampler=Sampler(NOISY, seed=4, default_shots=4000)
    )
    net = TorchConnector(qnn, initial_weights=np.array([0.3, -0.2, 0.5, 0.1]))
    assert net(inputs).shape == (3, 4)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.2)
    probs = []
    for _ in range(8):
        optimizer.zero_grad()
        p00 = net(inputs)[:, 0].mean()
        (-p00).backward()
        optimizer.step()
        probs.append(p00.item())
    # maximising P(00) works through shot noise (the mean's shot noise is about 0.005)
    assert probs[-1] > probs[0] + 0.04


def test_readme_primitives_examples_run_as_written():
    """The python blocks of the primitives section (docs/primitives.md), in order, in one namespace."""
    from pages import code_blocks, page, section

    blocks = code_blocks(section(page("docs/primitives.md"), "## Qiskit primitives"), "python")
    assert len(blocks) == 2 and all(block.not_run is None for block in blocks)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block.code, "docs/primitives.md", "exec"), namespace)
    assert namespace["evs"].shape == (2, 3)
    assert sum(namespace["counts"].values()) == 4000
    assert namespace["model"](torch.empty(0)).shape == (16,)


def test_jobs_submitted_together_give_the_values_of_jobs_run_alone():
    """Jobs run in threads; two on one backend must not share the engine's buffers at once."""
    circuit = ansatz(4, 2).remove_final_measurements(inplace=False)
    rng = np.random.default_rng(12)
    sets = [rng.uniform(0, 2 * np.pi, (9, circuit.num_parameters)) for _ in range(4)]
    backend = QPABackend(NOISY)
    together = [Estimator(backend), Estimator(backend)]
    jobs = [together[k % 2].run([(circuit, ["ZIZI", "XXII"], v[:, None, :])]) for k, v in enumerate(sets)]
    alone = Estimator(NOISY)
    for job, values in zip(jobs, sets, strict=True):
        expected = alone.run([(circuit, ["ZIZI", "XXII"], values[:, None, :])]).result()[0].data.evs
        np.testing.assert_allclose(job.result()[0].data.evs, expected, rtol=0, atol=1e-12)


def test_feature_map_angles_that_are_not_affine_run_exactly_on_the_fast_engine():
    """A ZZ feature map's angles 2(pi - x0)(pi - x1): evaluated per set, equal to Aer."""
    from qiskit.circuit.library import efficient_su2, zz_feature_map

    features, weights = zz_feature_map(2), efficient_su2(2, reps=1)
    circuit = features.compose(weights)
    values = np.random.default_rng(13).uniform(-1, 1, (3, circuit.num_parameters))
    estimator = Estimator(NOISY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowEngineWarning)  # no fallback
        ours = estimator.run([(circuit, ["ZZ", "XI"], values[:, None, :])]).result()[0].data.evs
    backend = estimator.backend
    isa = backend.isa_circuit(circuit).remove_final_measurements(inplace=False)
    physical = measured_qubits(backend.isa_circuit(circuit))
    placed = [SparsePauliOp(p).apply_layout(physical, isa.num_qubits) for p in ("ZZ", "XI")]
    columns = [list(circuit.parameters).index(p) for p in isa.parameters]
    theirs = aer_estimator(backend).run([(isa, placed, values[:, None, columns])]).result()[0].data.evs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_backend_expectation_values_refuse_what_they_cannot_mean():
    circuit = ansatz(2, 1)  # it measures
    backend = QPABackend("statevector")
    with pytest.raises(InputError, match="remove_final_measurements"):
        backend.expectation_values(circuit, ["ZZ"], np.zeros(circuit.num_parameters))
    bare = circuit.remove_final_measurements(inplace=False)
    for label in ("ZZZ", "AB", 3):
        with pytest.raises(InputError, match="characters from I, X, Y, Z"):
            backend.expectation_values(bare, [label], np.zeros(circuit.num_parameters))
    with pytest.raises(InputError, match="shape"):
        backend.expectation_values(bare, ["ZZ"], np.zeros(circuit.num_parameters + 1))
    values = backend.expectation_values(bare, ["II", "ZI"], np.zeros((2, circuit.num_parameters)))
    np.testing.assert_allclose(values, [[1.0, 1.0], [1.0, 1.0]], atol=1e-12)  # identity, and |00>
