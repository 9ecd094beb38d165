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
