import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from qpa_qiskit import InputError, QPABackend, QuantumProbabilities, ansatz
from qpa_qiskit.qnn import shifted_parameter_sets


def finite_difference_vjp(backend, qc, theta, upstream, h=1e-5):
    grad = np.zeros_like(theta)
    for k in range(len(theta)):
        e = np.zeros_like(theta)
        e[k] = h
        rows = backend.probabilities(qc, np.stack([theta + e, theta - e]))
        grad[k] = (rows[0] - rows[1]) @ upstream / (2 * h)
    return grad


@pytest.mark.parametrize("spec", ["statevector", "aer_noisy:fake_brisbane"])
def test_exact_gradient_matches_finite_differences(spec):
    qc = ansatz(3, 2, rotation="rx", entanglement="circular")
    backend = QPABackend(spec)
    init = np.random.default_rng(1).uniform(0, 2 * np.pi, qc.num_parameters)
    layer = QuantumProbabilities(backend, qc, init=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=8))
    (layer() @ upstream).backward()
    expected = finite_difference_vjp(backend, qc, init, upstream.numpy())
    np.testing.assert_allclose(layer.theta.grad.numpy(), expected, atol=1e-6)


def test_gradient_matches_qiskit_machine_learning():
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import SamplerQNN
    from qiskit_machine_learning.primitives import QMLSampler

    qc = ansatz(3, 2)
    init = np.random.default_rng(3).uniform(0, 2 * np.pi, qc.num_parameters)
    upstream = torch.from_numpy(np.random.default_rng(4).normal(size=8))
    ours = QuantumProbabilities(QPABackend("statevector"), qc, init=init)
    out = ours()
    (out @ upstream).backward()
    qnn = SamplerQNN(circuit=qc, sampler=QMLSampler(), weight_params=list(qc.parameters))
    theirs = TorchConnector(qnn, initial_weights=init)
    their_out = theirs(torch.empty(0)).reshape(-1).double()
    (their_out @ upstream).backward()
    np.testing.assert_allclose(out.detach().numpy(), their_out.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.theta.grad.numpy(), theirs.weight.grad.double().numpy(), atol=1e-6)


def test_one_submission_per_step(monkeypatch):
    qc = ansatz(3, 2)
    backend = QPABackend("statevector", shots_factor=10)  # shots: the parameter-shift rule
    calls = []
    original = backend.probabilities
    monkeypatch.setattr(backend, "probabilities", lambda c, v: calls.append(np.shape(v)) or original(c, v))
    layer = QuantumProbabilities(backend, qc)
    assert layer.gradient == "shift"
    layer().sum().backward()
    assert calls == [(13, 6)]
    with torch.no_grad():
        layer()
    assert calls[-1] == (6,)


def test_adjoint_step_is_one_vjp(monkeypatch):
    qc = ansatz(3, 2)
    backend = QPABackend("statevector")
    calls = []
    probs, vjp = backend.probabilities, backend.vjp
    monkeypatch.setattr(backend, "probabilities", lambda c, v: calls.append(np.shape(v)) or probs(c, v))
    monkeypatch.setattr(backend, "vjp", lambda c, v: calls.append(("vjp", np.shape(v))) or vjp(c, v))
    layer = QuantumProbabilities(backend, qc)
    layer().sum().backward()
    assert calls == [("vjp", (6,))]  # the forward pass keeps what the backward pass needs
    with torch.no_grad():
        layer()
    assert calls[-1] == (6,)


def test_shifted_sets_layout():
    rows = shifted_parameter_sets(np.array([0.1, 0.2]))
    expected = [
        [0.1, 0.2],
        [0.1 + np.pi / 2, 0.2],
        [0.1 - np.pi / 2, 0.2],
        [0.1, 0.2 + np.pi / 2],
        [0.1, 0.2 - np.pi / 2],
    ]
    np.testing.assert_allclose(rows, expected)


def test_shot_based_gradient_is_the_parameter_shift_estimator():
    qc = ansatz(2, 2)
    init = np.random.default_rng(5).uniform(0, 2 * np.pi, qc.num_parameters)
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    exact = QuantumProbabilities(QPABackend("statevector"), qc, init=init)
    (exact() @ upstream).backward()
    grads = []
    for seed in range(20):
        noisy = QuantumProbabilities(QPABackend("statevector", shots=2000, seed=seed), qc, init=init)
        (noisy() @ upstream).backward()
        grads.append(noisy.theta.grad.numpy())
    grads = np.array(grads)
    # unbiased: the mean over independent estimates approaches the exact gradient
    stderr = grads.std(axis=0, ddof=1) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(axis=0) - exact.theta.grad.numpy()) < 5 * stderr + 1e-9)
    assert np.all(grads.std(axis=0) > 0)


def test_trains_in_an_optimizer_loop():
    torch.manual_seed(0)
    layer = QuantumProbabilities(QPABackend("aer_noisy:fake_brisbane"), ansatz(3, 2))
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    target = 0b101
    start = layer()[target].item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = -torch.log(layer()[target])
        loss.backward()
        optimizer.step()
    assert layer()[target].item() > max(0.7, start + 0.3)


def test_bad_inputs():
    backend = QPABackend("statevector")
    with pytest.raises(InputError, match=r"init must have shape \(6,\)"):
        QuantumProbabilities(backend, ansatz(3, 2), init=np.zeros(5))
    with pytest.raises(InputError, match="backend must be a QPABackend"):
        QuantumProbabilities("statevector", ansatz(3, 2))
    theta = Parameter("t")
    twice = QuantumCircuit(2)
    twice.ry(theta, 0)
    twice.ry(theta, 1)
    with pytest.raises(InputError, match="exactly one"):
        QuantumProbabilities(backend, twice)
    scaled = QuantumCircuit(1)
    scaled.ry(2 * theta, 0)
    with pytest.raises(InputError, match="bare angle"):
        QuantumProbabilities(backend, scaled)
    with pytest.raises(InputError, match="no parameters"):
        QuantumProbabilities(backend, QuantumCircuit(1))


@pytest.mark.parametrize("spec", ["statevector", "aer_noisy:fake_brisbane"])
def test_adjoint_gradient_of_angles_that_are_not_affine(spec):
    """ry(a b), rz(2 (pi - a)(pi - c)), rx(c^2 + b): the chain rule through each."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(3)
    qc.h([0, 1, 2])
    qc.ry(a * b, 0)
    qc.cx(0, 1)
    qc.rz(2 * (np.pi - a) * (np.pi - c), 1)
    qc.rx(c * c + b, 2)
    qc.cx(1, 2)
    qc.ry(a, 2)
    qc.measure_all()
    backend = QPABackend(spec)
    theta = np.array([0.7, -1.1, 0.4])
    upstream = np.random.default_rng(5).normal(size=8)
    probs, pullback = backend.vjp(qc, theta)
    np.testing.assert_allclose(probs, backend.probabilities(qc, theta)[0], atol=1e-12)
    np.testing.assert_allclose(
        pullback(upstream), finite_difference_vjp(backend, qc, theta, upstream), atol=1e-7
    )
    if spec != "statevector":  # and the values are Aer's
        reference = QPABackend(spec, engine="aer").probabilities(qc, theta)
        np.testing.assert_allclose(probs, reference[0], atol=1e-12)


# ---------------------------------------------------------------------------- SPSA
def test_spsa_sets_layout():
    from qpa_qiskit.qnn import spsa_parameter_sets

    directions = np.array([[1.0, -1.0], [-1.0, -1.0]])
    rows = spsa_parameter_sets(np.array([0.1, 0.2]), directions, 0.5)
    expected = [[0.1, 0.2], [0.6, -0.3], [-0.4, 0.7], [-0.4, -0.3], [0.6, 0.7]]
    np.testing.assert_allclose(rows, expected)


def spsa_layer(backend, qc, init, seed=0, **settings):
    return QuantumProbabilities(backend, qc, init=init, seed=seed, gradient="spsa", **settings)


def test_spsa_step_is_one_submission_of_the_forward_set_and_2k_perturbed_sets(monkeypatch):
    qc = ansatz(3, 2)
    backend = QPABackend("statevector", shots_factor=10)
    calls = []
    original = backend.probabilities
    monkeypatch.setattr(backend, "probabilities", lambda c, v: calls.append(np.shape(v)) or original(c, v))
    layer = spsa_layer(backend, qc, None, spsa_samples=4)
    assert layer.gradient == "spsa" and "spsa_samples=4" in repr(layer)
    layer().sum().backward()
    assert calls == [(1 + 2 * 4, 6)]  # P = 6 angles; the shift rule would send 2P + 1 = 13
    with torch.no_grad():
        layer()
    assert calls[-1] == (6,)  # no gradient wanted: the forward set only, and no directions drawn


def test_spsa_vjp_averages_to_the_adjoint_vjp_within_five_standard_errors():
    """On an exact backend each SPSA estimate is g · dp/dθ plus the other directions' cross
    terms, of mean zero, and a bias of O(ε²) (its mean is tan(ε)/ε times the gradient of the
    circuit over-rotated by ±ε at random: the next test); ε = 0.01 makes that bias about 1e-4
    relative, negligible here. The mean of n = 500 independent estimates (each a mean over
    K = 8 directions) is tested against the adjoint VJP component by component within 5
    standard errors, estimated from the 500 estimates: here 8% to 90% of a component's size
    (the small components are the loose ones). Not trivially loose: the same tolerance rejects
    a wrong sign and a scale of 2 in every component, and a scale of 1/2 in some."""
    qc = ansatz(3, 2)
    init = np.random.default_rng(7).uniform(0, 2 * np.pi, qc.num_parameters)
    upstream = torch.from_numpy(np.random.default_rng(8).normal(size=8))
    adjoint = QuantumProbabilities(QPABackend("statevector"), qc, init=init)
    assert adjoint.gradient == "adjoint"
    (adjoint() @ upstream).backward()
    exact = adjoint.theta.grad.numpy()
    layer = spsa_layer(QPABackend("statevector"), qc, init, spsa_samples=8, spsa_epsilon=0.01)
    estimates = []
    for _ in range(500):  # 4,000 directions
        layer.theta.grad = None
        (layer() @ upstream).backward()
        estimates.append(layer.theta.grad.numpy().copy())
    estimates = np.array(estimates)
    mean = estimates.mean(axis=0)
    stderr = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(stderr > 0)
    assert np.all(np.abs(mean - exact) < 5 * stderr), (mean, exact, stderr)
    # not trivially loose: the tolerance is tighter than the errors a wrong sign or scale makes
    assert np.all(np.abs(-mean - exact) > 5 * stderr)  # here every component: z from 12 to 130
    assert np.all(np.abs(2 * mean - exact) > 5 * stderr)  # z from 8 to 65
    assert np.any(np.abs(0.5 * mean - exact) > 5 * stderr)


@pytest.mark.parametrize("epsilon", [0.2, 1.0])
def test_spsa_mean_over_every_direction_is_the_gradient_of_the_randomly_over_rotated_circuit(epsilon):
    """The mean over all 2^P Rademacher directions is exact, not a sample: tan(ε)/ε times the
    gradient of p̃(θ) = E_Δ[p(θ + εΔ)], the circuit with every angle over-rotated by ±ε at
    random (qnn's module docstring derives it), whose gradient is the mean of the adjoint
    gradients at θ + εΔ. At ε = 1 that is far from p's own gradient: the identity is not that."""
    import itertools

    from qpa_qiskit.qnn import spsa_parameter_sets

    qc = ansatz(3, 2)
    n = qc.num_parameters
    backend = QPABackend("statevector")
    init = np.random.default_rng(9).uniform(0, 2 * np.pi, n)
    upstream = np.random.default_rng(10).normal(size=8)
    directions = np.array(list(itertools.product([1.0, -1.0], repeat=n)))
    rows = backend.probabilities(qc, spsa_parameter_sets(init, directions, epsilon))
    along = (rows[1::2] - rows[2::2]) @ upstream / (2 * epsilon)
    mean = along @ directions / len(directions)
    smoothed = np.mean([backend.vjp(qc, init + epsilon * d)[1](upstream) for d in directions], axis=0)
    np.testing.assert_allclose(mean, np.tan(epsilon) / epsilon * smoothed, atol=1e-12)
    exact = backend.vjp(qc, init)[1](upstream)
    assert np.abs(mean - exact).max() > 0.01  # a bias the statistical test avoids with a small ε


def test_spsa_directions_come_from_a_seeded_stream_of_the_layers_own():
    qc = ansatz(2, 2)
    init = np.random.default_rng(11).uniform(0, 2 * np.pi, qc.num_parameters)
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    def gradients(seed, steps=3):
        torch.manual_seed(123)  # the global stream plays no part
        layer = spsa_layer(QPABackend("statevector", shots=500, seed=1), qc, init, seed=seed, spsa_samples=2)
        out = []
        for _ in range(steps):
            layer.theta.grad = None
            (layer() @ upstream).backward()
            out.append(layer.theta.grad.clone())
        return torch.stack(out)

    same = gradients(0)
    assert torch.equal(same, gradients(0))
    assert not torch.equal(same, gradients(1))
    assert not torch.equal(same[0], same[1])  # each evaluation draws new directions
    # the stream's state resumes the draws exactly
    layer = spsa_layer(QPABackend("statevector"), qc, init, seed=0)
    state = layer.spsa_stream.get_state()
    first = rademacher_draw(layer)
    layer.spsa_stream.set_state(state)
    assert np.array_equal(first, rademacher_draw(layer))
    assert set(np.unique(first)) <= {-1.0, 1.0}


def rademacher_draw(layer):
    from qpa_qiskit.qnn import rademacher

    return rademacher(50, layer.theta.numel(), layer.spsa_stream)


def test_spsa_settings_are_checked():
    backend = QPABackend("statevector")
    qc = ansatz(2, 1)
    for bad in (0, -0.1, float("nan"), float("inf"), "0.2", np.pi, 4.0):
        with pytest.raises(InputError, match="spsa_epsilon must be a finite number > 0"):
            spsa_layer(backend, qc, None, spsa_epsilon=bad)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(InputError, match="spsa_samples must be a positive integer"):
            spsa_layer(backend, qc, None, spsa_samples=bad)
    with pytest.raises(InputError, match=r"spsa_samples set\(s\) the SPSA gradient, and gradient is 'auto'"):
        QuantumProbabilities(backend, qc, spsa_samples=2)
