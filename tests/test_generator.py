import math

import numpy as np
import pytest
import torch

from qpa_qiskit import InputError, QPABackend
from qpa_qiskit.config import GeneratorConfig
from qpa_qiskit.generator import QPAGenerator, qubits_for


def generator(n_weights, chunk_size, backend, **settings):
    return QPAGenerator(n_weights, backend, GeneratorConfig(chunk_size=chunk_size, **settings))


@pytest.mark.parametrize(
    "m, chunk, n_chunks, n_qubits",
    [(1000, 64, 16, 4), (1000, 63, 16, 4), (1025, 64, 17, 5), (10, 10, 1, 1), (3, 1, 3, 2)],
)
def test_qubits_for(m, chunk, n_chunks, n_qubits):
    assert qubits_for(m, chunk) == (n_chunks, n_qubits)


def test_shapes_and_counts():
    torch.manual_seed(0)
    gen = generator(1000, 64, QPABackend("statevector"), reps=2, hidden=(8,))
    out = gen()
    assert out.shape == (1000,)
    counts = gen.counts()
    mapping = (5 * 8 + 8) + (8 * 64 + 64)
    assert counts == {
        "circuit_angles": 4 * 2,
        "probability_logits": 0,
        "mapping": mapping,
        "completion": 0,
        "trainable": 4 * 2 + mapping,
        "generated": 1000,
    }
    assert gen.circuit.num_qubits == 4


def test_labels_are_fixed_basis_bits():
    gen = generator(300, 20, QPABackend("statevector"), reps=1)  # 15 chunks, 4 qubits
    expected = torch.tensor([[1.0 - 2 * ((c >> q) & 1) for q in range(4)] for c in range(15)])
    assert torch.equal(gen.labels, expected)
    with torch.no_grad():
        first, second = gen(), gen()
    assert torch.equal(first, second)  # no random relabelling between calls


def test_rescaling_formula():
    gen = generator(64, 8, QPABackend("statevector"), reps=1, gamma=0.3, beta=0.5, alpha=0.2)
    p = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.2])
    x = (0.5 * torch.tanh(0.3 * 2 ** (3 - 1) * p)).clamp_min(1e-12) ** 0.2
    assert torch.allclose(gen.rescale(p), x - x.mean())


def test_gradients_reach_angles_and_mapping():
    gen = generator(200, 16, QPABackend("statevector"), reps=2)
    (gen() ** 2).sum().backward()
    assert gen.quantum.theta.grad is not None and gen.quantum.theta.grad.abs().sum() > 0
    for p in gen.mapping.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_unmeasured_states_keep_gradients_finite():
    gen = generator(512, 16, QPABackend("statevector", shots_factor=1, seed=0), reps=1)
    probs = gen.quantum()
    assert (probs == 0).any()  # c = 1 leaves states unmeasured
    (gen() ** 2).sum().backward()
    assert torch.isfinite(gen.quantum.theta.grad).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_weights=0, chunk_size=4), "number of weights"),
        (dict(n_weights=10, chunk_size=0), "chunk_size must be a positive integer"),
        (dict(n_weights=10, chunk_size=11), "chunk_size 11 is larger than the 10 weights"),
        (dict(n_weights=10, chunk_size=4, activation="swish"), "activation must be one of"),
        (dict(n_weights=10, chunk_size=4, hidden=(0,)), "hidden must be a list of positive integers"),
        (dict(n_weights=10, chunk_size=4, alpha=-1), "alpha must be a finite number > 0"),
        (dict(n_weights=10, chunk_size=4, beta=float("nan")), "beta must be a finite number > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        generator(backend=QPABackend("statevector"), **kwargs)


def test_any_backend_switches_by_spec():
    gen = generator(100, 10, QPABackend("aer_noisy:fake_brisbane", shots_factor=20, seed=1), reps=1)
    out = gen()
    assert out.shape == (100,) and math.isfinite(float(out.detach().sum()))
    assert np.isclose(float(gen.quantum().sum()), 1.0)
