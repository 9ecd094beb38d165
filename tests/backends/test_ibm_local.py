"""The ibm: code path (qiskit-ibm-runtime's client-side Sampler) in the runtime's local testing mode."""

import numpy as np
import torch
from conftest import assert_sampled_from

from qpa_qiskit import QPABackend, QuantumProbabilities, ansatz


def test_local_testing_end_to_end():
    qc = ansatz(3, 2)
    values = np.random.default_rng(12).uniform(0, 2 * np.pi, (3, qc.num_parameters))
    backend = QPABackend("ibm:fake_brisbane", shots_factor=2500, seed=3)
    assert backend.is_local_testing
    freqs = backend.probabilities(qc, values)
    assert freqs.shape == (3, 8)
    np.testing.assert_allclose(freqs.sum(axis=1), 1.0)
    assert backend.last_job_id
    exact = QPABackend("aer_noisy:fake_brisbane").probabilities(qc, values)
    assert_sampled_from(freqs, exact, backend.num_shots(3))


def test_local_testing_trains():
    """The parameter-shift gradient through the runtime's local mode is the noisy device's
    exact gradient, up to shot noise (4000 shots: a standard deviation of 0.012 at most)."""
    qc = ansatz(2, 1)
    weights = torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64)
    grads = []
    for backend in (
        QPABackend("ibm:fake_brisbane", shots=4000, seed=1),
        QPABackend("aer_noisy:fake_brisbane"),
    ):
        layer = QuantumProbabilities(backend, qc, init=[0.3, 1.2])
        (layer() @ weights).backward()
        grads.append(layer.theta.grad.numpy())
    sampled, exact = grads
    assert np.abs(exact).max() > 0.3  # a gradient worth checking
    np.testing.assert_allclose(sampled, exact, atol=0.06)
