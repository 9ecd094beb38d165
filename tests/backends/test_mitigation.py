"""mitigation="m3": readout mitigation with mthree, its calibration, projection and gradients."""

import sys

import numpy as np
import pytest
from qiskit.circuit.library import real_amplitudes

from qpa_qiskit import InputError, QPABackend
from qpa_qiskit.backends.config import BackendConfig
from qpa_qiskit.backends.mitigation import (
    ReadoutMitigation,
    calibration_strings,
    confusion_from_calibration,
    nearest_probability,
)
from qpa_qiskit.errors import SpecError
from qpa_qiskit.jobs.loop import HardwareLoop
from qpa_qiskit.simulator import apply_readout

DEVICE = "aer_noisy:fake_manila"


def tvd(a, b):
    return 0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum(-1)


@pytest.fixture(scope="module")
def circuit():
    qc = real_amplitudes(4, reps=2)
    qc.measure_all()
    return qc


@pytest.fixture(scope="module")
def values(circuit):
    return np.random.default_rng(3).uniform(0, 2 * np.pi, (4, circuit.num_parameters))


def simplex_projection(v):
    """The Euclidean projection onto the probability simplex by sorting (Held et al. 1974)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


def test_m3_brings_exact_and_sampled_probabilities_closer_to_the_readout_free_ones(circuit, values):
    raw = QPABackend(DEVICE).probabilities(circuit, values)
    free = QPABackend(DEVICE, readout_error=False).probabilities(circuit, values)
    mitigated = QPABackend(DEVICE, mitigation="m3").probabilities(circuit, values)
    # exact: the mitigation undoes the readout confusion it models (to mthree's single precision)
    assert np.all(tvd(raw, free) > 0.01)
    assert np.all(tvd(mitigated, free) < 1e-6)
    assert np.allclose(mitigated.sum(1), 1) and mitigated.min() >= 0
    # shots: closer on average over draws
    draws = {m: QPABackend(DEVICE, shots_factor=50, seed=1, mitigation=m) for m in ("none", "m3")}
    distance = {
        m: np.mean([tvd(b.probabilities(circuit, values), free) for _ in range(5)]) for m, b in draws.items()
    }
    assert distance["m3"] < distance["none"]


def test_exact_mitigation_without_gate_noise_recovers_the_ideal_distribution(circuit, values):
    ideal = QPABackend("statevector").probabilities(circuit, values)
    quiet = dict(gate_error=False, thermal_relaxation=False)
    raw = QPABackend(DEVICE, **quiet).probabilities(circuit, values)
    mitigated = QPABackend(DEVICE, mitigation="m3", **quiet).probabilities(circuit, values)
    assert np.all(tvd(raw, ideal) > 0.01) and np.abs(mitigated - ideal).max() < 1e-6


def test_m3_is_the_linear_inverse_then_the_nearest_probability_distribution():
    rng = np.random.default_rng(0)
    confusion = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.97, 0.03], [0.06, 0.94]])]
    mitigation = ReadoutMitigation(confusion)
    true = np.array([[0.7, 0.0, 0.3, 0.0], *rng.dirichlet(np.ones(4), 3)])
    read = apply_readout(true, confusion)
    assert np.abs(mitigation.quasi_probabilities(read) - mitigation.linear_inverse(read)).max() < 1e-6
    assert np.abs(mitigation.linear_inverse(read) - true).max() < 1e-12
    for quasi in (rng.normal(0.25, 0.3, 4), np.array([0.7, -0.05, 0.4, -0.05]), rng.normal(0, 1, 16)):
        quasi = quasi / quasi.sum()  # M3's quasi-probabilities sum to 1
        assert np.abs(nearest_probability(quasi) - simplex_projection(quasi)).max() < 1e-12


def test_gradients_flow_through_the_linear_map_and_the_projection(circuit):
    backend = QPABackend(DEVICE, mitigation="m3")
    rng = np.random.default_rng(5)
    theta = rng.uniform(0, 2 * np.pi, circuit.num_parameters)
    probs, pullback = backend.vjp(circuit, theta)
    assert np.abs(probs - backend.probabilities(circuit, theta)[0]).max() < 1e-12
    upstream = rng.normal(size=probs.shape)
    grad = pullback(upstream)
    # the same function in double precision, differentiated by central differences
    mitigation, raw = backend.mitigator(circuit), QPABackend(DEVICE)

    def f(t):
        return upstream @ nearest_probability(mitigation.linear_inverse(raw.probabilities(circuit, t))[0])

    eps = 1e-5
    fd = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    assert np.abs(grad - fd).max() < 1e-6 * max(1, np.abs(fd).max())


def test_the_pullback_where_the_projection_drops_outcomes():
    confusion = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.85, 0.15], [0.1, 0.9]])]
    mitigation = ReadoutMitigation(confusion)
    raw = np.array([0.02, 0.5, 0.03, 0.45])  # a sampled distribution below what the readout allows
    assert (mitigation.linear_inverse(raw[None])[0] < 0).sum() == 2  # the projection drops two outcomes
    upstream = np.array([1.0, -2.0, 0.5, 3.0])
    grad = mitigation.pullback(raw, upstream)

    def f(p):
        return upstream @ nearest_probability(mitigation.linear_inverse(p[None])[0])

    for direction in (np.array([1.0, -1, 0, 0]), np.array([0, 1.0, 0, -1]), np.array([0.5, 0.5, -1, 0])):
        fd = (f(raw + 1e-6 * direction) - f(raw - 1e-6 * direction)) / 2e-6  # along the simplex
        assert grad @ direction == pytest.approx(fd, abs=1e-8)


def test_calibration_circuits_estimate_the_confusion_and_run_as_recorded_jobs(circuit, values, tmp_path):
    confusion = [np.array([[0.95, 0.05], [0.1, 0.9]]), np.array([[0.99, 0.01], [0.03, 0.97]]),
                 np.array([[0.9, 0.1], [0.15, 0.85]])]  # fmt: skip
    strings = calibration_strings(3)
    assert np.all(strings.mean(0) == 0.5)  # balanced: each bit prepared 0 and 1 equally often
    prepared = np.eye(8)[[sum(int(b) << i for i, b in enumerate(s)) for s in strings]]
    estimated = confusion_from_calibration(strings, apply_readout(prepared, confusion))
    assert all(np.allclose(e, c) for e, c in zip(estimated, confusion, strict=True))
    # on IBM Quantum (local testing), through the hardware loop: a job store of their own
    loop = HardwareLoop(tmp_path / "jobs", log=lambda m: None, poll=0.01)
    loop.label = "step-0"
    backend = QPABackend("ibm:fake_manila", shots_factor=100, seed=0, mitigation="m3", hardware_loop=loop)
    probs = backend.probabilities(circuit, values)
    assert np.allclose(probs.sum(1), 1) and probs.min() >= 0
    ledger = tmp_path / "jobs-m3-calibration" / "ledger.jsonl"
    recorded = ledger.read_text()
    assert "qpa-step:m3-calibration" in recorded
    # the estimate is near the fake device's own readout errors (what local testing simulates)
    measured = backend.mitigator(circuit).confusion
    simulated = QPABackend(DEVICE, mitigation="m3").mitigator(circuit).confusion
    assert max(np.abs(m - s).max() for m, s in zip(measured, simulated, strict=True)) < 0.03
    # a resumed run reads the calibration it paid for back: nothing new is submitted
    again = HardwareLoop(tmp_path / "jobs", log=lambda m: None, poll=0.01)
    again.label = "step-0"
    resumed = QPABackend("ibm:fake_manila", shots_factor=100, seed=0, mitigation="m3", hardware_loop=again)
    assert np.array_equal(resumed.probabilities(circuit, values), probs)
    assert ledger.read_text() == recorded


def test_bad_mitigation_input(monkeypatch):
    with pytest.raises(SpecError, match="reads out exactly"):
        QPABackend("statevector", mitigation="m3")
    with pytest.raises(SpecError, match="mitigation must be one of"):
        QPABackend(DEVICE, mitigation="zne")
    with pytest.raises(SpecError, match="simulates none"):
        QPABackend(DEVICE, mitigation="m3", readout_error=False)
    with pytest.raises(SpecError, match="simulates none"):
        QPABackend(DEVICE, mitigation="m3", noise_scale=0)
    with pytest.raises(InputError, match="ideal simulator reads out exactly"):
        BackendConfig(backend="statevector", mitigation="m3")
    with pytest.raises(InputError, match="simulates none"):
        BackendConfig(backend=DEVICE, mitigation="m3", readout_error=False)
    with pytest.raises(InputError, match="mitigation must be one of"):
        BackendConfig(backend=DEVICE, mitigation="M3 please")
    with pytest.raises(InputError, match="2x2 stochastic"):
        ReadoutMitigation([np.array([[0.9, 0.2], [0.1, 0.8]])])
    with pytest.raises(InputError, match="carries no information"):
        ReadoutMitigation([np.array([[0.4, 0.6], [0.6, 0.4]])])
    monkeypatch.setitem(sys.modules, "mthree", None)  # mthree not installed
    with pytest.raises(InputError, match=r'pip install "qpa-qiskit\[mitigation\]"'):
        ReadoutMitigation([np.eye(2)])
