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
    qc = ansatz(2, 1)
    upstream = torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64)
    layer = QuantumProbabilities(QPABackend("ibm:fake_brisbane", shots=4000, seed=1), qc, init=[0.3, 1.2])
    (layer() @ upstream).backward()
    exact = QuantumProbabilities(QPABackend("aer_noisy:fake_brisbane"), qc, init=[0.3, 1.2])
    (exact() @ upstream).backward()
    # the shot-based parameter-shift estimate of the same noisy gradient: each component is
    # half a difference of two frequencies of 4000 shots, standard deviation below 0.012
    assert layer.theta.grad.shape == (2,)
    np.testing.assert_allclose(layer.theta.grad.numpy(), exact.theta.grad.numpy(), atol=0.06)
    assert np.abs(exact.theta.grad.numpy()).max() > 0.2  # a gradient that is not zero
