"""QPABackend's inputs: every bad one a clear error, the odd-but-valid ones right answers;
the facade's public accessors (parse_spec, rng_state, hardware_loop) and its circuit cache."""

import warnings

import numpy as np
import pytest
import torch
from conftest import assert_sampled_from
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Statevector

from qpa_qiskit import InputError, QPABackend, SpecError, ansatz
from qpa_qiskit.backends import SlowEngineWarning, parse_spec


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    return qc


def ideal(circuit: QuantumCircuit, values=()) -> np.ndarray:
    bare = circuit.remove_final_measurements(inplace=False)
    return Statevector(bare.assign_parameters(values) if len(values) else bare).probabilities()


class NoProbabilities:
    pass


BAD_INPUTS = [
    ("seed as a string", lambda: QPABackend("statevector", seed="1"), InputError, "seed must be an integer"),
    ("seed as a float", lambda: QPABackend("statevector", seed=1.5), InputError, "seed must be an integer"),
    ("negative seed", lambda: QPABackend("statevector", seed=-3), InputError, "seed must be an integer >= 0"),
    (
        "shots_factor too large for the multinomial",
        lambda: QPABackend("statevector", shots_factor=1e300).probabilities(ansatz(3, 1), np.zeros(3)),
        InputError,
        r"shots_factor=1e\+300 asks for 8e\+300 shots .* at most",
    ),
    (
        "shots_factor whose ceil(c * 2^N) overflows a float",
        lambda: QPABackend("statevector", shots_factor=1e300).num_shots(1100),
        InputError,
        "asks for inf shots",
    ),
    (
        "shots beyond int64",
        lambda: QPABackend("statevector", shots=2**70),
        InputError,
        "shots must be at most",
    ),
    ("shots as a float", lambda: QPABackend("statevector", shots=10.0), InputError, "positive integer"),
    (
        "aer_noisy with an empty device",
        lambda: QPABackend("aer_noisy:"),
        SpecError,
        r"names no device: write \"aer_noisy:<device>\", e.g. aer_noisy:.*aer_noisy:fake_brisbane",
    ),
    ("aer_noisy with no colon", lambda: QPABackend("aer_noisy"), SpecError, "Accepted: .*aer_noisy:<fake"),
    ("ibm with no device", lambda: QPABackend("ibm:", shots=10), SpecError, r"ibm:fake_<device>.*ibm:fake_"),
    ("statevector with a device", lambda: QPABackend("statevector:x"), SpecError, "takes no device"),
    ("optimization level 5", lambda: QPABackend("statevector", optimization_level=5), SpecError, "<= 3"),
    (
        "seed_transpiler a string",
        lambda: QPABackend("statevector", seed_transpiler="0"),
        SpecError,
        "integer",
    ),
    (
        "unknown engine",
        lambda: QPABackend("aer_noisy:fake_athens", engine="fast"),
        SpecError,
        "auto, ptm, aer",
    ),
    (
        "hardware_loop without probabilities",
        lambda: QPABackend("ibm:fake_athens", shots=10, hardware_loop=NoProbabilities()),
        InputError,
        r"probabilities\(backend, circuit, values, shots\)",
    ),
    (
        "runner is gone",
        lambda: QPABackend("ibm:fake_athens", shots=10, runner=object()),
        SpecError,
        "unknown",
    ),
    (
        "values of text",
        lambda: QPABackend("statevector").probabilities(ansatz(2, 1), ["a", "b"]),
        InputError,
        r"shape \(2,\) or \(B, 2\)",
    ),
    (
        "values for a circuit without parameters",
        lambda: QPABackend("statevector").probabilities(bell(), np.zeros((2, 1))),
        InputError,
        r"shape \(0,\) or \(B, 0\)",
    ),
    (
        "rng_state of another kind",
        lambda: setattr(QPABackend("statevector"), "rng_state", {"state": 1}),
        InputError,
        "rng_state must be a state read from QPABackend.rng_state",
    ),
    ("service of a simulator", lambda: QPABackend("statevector").service, InputError, "only ibm: backends"),
    ("spec of the wrong type", lambda: parse_spec(["statevector"]), SpecError, "a backend spec is a string"),
]


@pytest.mark.parametrize("description, call, error, fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_clear_error(description, call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("ideal", ("statevector", None)),
        (" Statevector ", ("statevector", None)),
        ("aer_noisy:Brisbane", ("aer_noisy", "brisbane")),  # the shipped snapshot (qpa_qiskit/noise/models/)
        ("aer_noisy:Fake_Brisbane", ("aer_noisy", "fake_brisbane")),
        ("ibm:ibm_torino", ("ibm", "ibm_torino")),
        ("IBM:FakeManila", ("ibm", "fake_manila")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_numpy_numbers_are_numbers():
    qc = ansatz(2, 1)
    backend = QPABackend("statevector", shots=np.int64(100), seed=np.int64(4))
    assert backend.shots == 100 and type(backend.shots) is int
    assert backend.probabilities(qc, np.zeros(2)).sum() == pytest.approx(1.0)
    assert QPABackend("statevector", shots_factor=np.float64(2.5)).num_shots(2) == 10
    a = QPABackend("statevector", shots=50, seed=np.int32(7)).probabilities(qc, [0.3, 0.4])
    b = QPABackend("statevector", shots=50, seed=7).probabilities(qc, [0.3, 0.4])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("values, rows", [((), 1), ([], 1), (np.empty((3, 0)), 3)])
def test_circuit_without_parameters(values, rows):
    qc = bell()
    exact = QPABackend("statevector").probabilities(qc, values)
    np.testing.assert_allclose(exact, np.tile(ideal(qc), (rows, 1)), atol=1e-12)
    noisy = QPABackend("aer_noisy:fake_athens").probabilities(qc, values)
    aer = QPABackend("aer_noisy:fake_athens", engine="aer").probabilities(qc, values)
    assert noisy.shape == (rows, 4)
    np.testing.assert_allclose(noisy, aer, atol=1e-10)


def test_circuit_without_parameters_samples_each_row_independently():
    qc = bell()
    for spec in ("statevector", "ibm:fake_athens"):
        freqs = QPABackend(spec, shots=4000, seed=1).probabilities(qc, np.empty((3, 0)))
        exact = QPABackend("statevector" if spec == "statevector" else "aer_noisy:fake_athens").probabilities(
            qc
        )
        assert_sampled_from(freqs, np.tile(exact, (3, 1)), 4000)
        assert not np.array_equal(freqs[0], freqs[1])  # three draws, not one repeated


def test_torch_values_that_require_grad():
    qc = ansatz(2, 2)
    values = torch.tensor([0.1, 0.7, -0.4, 1.2], dtype=torch.float64, requires_grad=True)
    probs = QPABackend("statevector").probabilities(qc, values * 2)
    np.testing.assert_allclose(probs[0], ideal(qc, (values * 2).detach().numpy()), atol=1e-12)


@pytest.mark.parametrize("spec", ["statevector", "aer_noisy:fake_athens"])
def test_a_circuit_edited_in_place_is_evaluated_again(spec):
    from qiskit.circuit.library import RXGate

    def reference(circuit):  # a fresh backend: nothing cached
        fresh = QPABackend(spec, **({} if spec == "statevector" else {"engine": "aer"}))
        return fresh.probabilities(circuit.copy(), [0.8])

    theta = Parameter("t")
    qc = QuantumCircuit(1)
    qc.ry(theta, 0)
    backend = QPABackend(spec)
    first = backend.probabilities(qc, [0.8])
    np.testing.assert_allclose(first, reference(qc), atol=1e-10)
    qc.rx(np.pi, 0)  # appended after the first call
    np.testing.assert_allclose(backend.probabilities(qc, [0.8]), reference(qc), atol=1e-10)
    assert np.abs(backend.probabilities(qc, [0.8]) - first).max() > 0.5
    qc.data[1] = qc.data[1].replace(operation=RXGate(np.pi / 2))  # an instruction replaced
    np.testing.assert_allclose(backend.probabilities(qc, [0.8]), reference(qc), atol=1e-10)
    if spec == "statevector":
        np.testing.assert_allclose(backend.probabilities(qc, [0.8])[0], ideal(qc, [0.8]), atol=1e-12)


def test_an_unchanged_circuit_is_prepared_once(monkeypatch):
    qc = ansatz(3, 1)
    backend = QPABackend("statevector")
    backend.probabilities(qc, np.zeros(3))
    calls = []
    original = backend.family.transpile_target
    monkeypatch.setattr(backend.family, "transpile_target", lambda: calls.append(1) or original())
    backend.probabilities(qc, np.ones(3))
    assert calls == []


def test_auto_engine_warns_once_per_circuit_with_the_reason():
    theta = Parameter("t")
    qc = QuantumCircuit(2, 2)
    qc.ry(theta, 0)
    qc.delay(320, 0, unit="dt")  # relaxation in delays comes from a noise pass: the PTM engine cannot take it
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    backend = QPABackend("aer_noisy:fake_athens")
    with pytest.warns(SlowEngineWarning, match=r"delays under a noise model.*30-170x slower"):
        backend.probabilities(qc, [0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.probabilities(qc, [0.5])
        QPABackend("aer_noisy:fake_athens", engine="aer").probabilities(qc, [0.5])


def test_rng_state_resumes_sampling_exactly():
    qc = ansatz(3, 1)
    backend = QPABackend("statevector", shots=100, seed=3)
    backend.probabilities(qc, np.zeros(3))
    saved = backend.rng_state
    first = backend.probabilities(qc, np.ones(3))
    other = QPABackend("statevector", shots=100, seed=99)
    other.rng_state = saved
    np.testing.assert_array_equal(other.probabilities(qc, np.ones(3)), first)


def test_hardware_loop_receives_every_evaluation():
    calls = []

    class Loop:
        def probabilities(self, backend, circuit, values, shots):
            calls.append((backend, circuit, values.copy(), shots))
            return np.full((len(values), 2**circuit.num_clbits), 0.25)

    qc = ansatz(2, 1)
    backend = QPABackend("ibm:fake_athens", shots=64, hardware_loop=Loop())
    assert not hasattr(backend, "runner")
    out = backend.probabilities(qc, [[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_array_equal(out, np.full((2, 4), 0.25))
    [(got_backend, got_circuit, got_values, got_shots)] = calls
    assert got_backend is backend and got_circuit is qc and got_shots == 64
    np.testing.assert_array_equal(got_values, [[0.1, 0.2], [0.3, 0.4]])
    assert backend.last_job_id is None  # nothing went to the Sampler


def test_service_of_local_testing_is_none_and_of_hardware_is_the_given_one():
    assert QPABackend("ibm:fake_athens", shots=10).service is None

    class Service:
        def backend(self, name):
            return QPABackend("ibm:fake_athens", shots=1).device

    service = Service()
    backend = QPABackend("ibm:ibm_somewhere", shots=10, service=service, connect=False)
    assert backend.device is None and backend.service is service
    assert backend.connect().num_qubits == 5
