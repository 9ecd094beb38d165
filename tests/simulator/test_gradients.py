"""Exact gradients by the adjoint method against the parameter-shift rule, memory budgets."""

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector

from qpa_qiskit import InputError, QPABackend, QuantumProbabilities, ansatz
from qpa_qiskit.errors import CapacityError, SpecError
from qpa_qiskit.qnn import shifted_parameter_sets
from qpa_qiskit.simulator import MIN_SLOTS, PTMProgram, StatevectorProgram
from qpa_qiskit.simulator.checkpoints import BufferPool, reverse_sweep

RNG = np.random.default_rng(21)


def adjoint_vjp(backend, circuit, theta, upstream):
    """(p, upstream · dp/dθ) through QPABackend.vjp and its pullback."""
    probs, pullback = backend.vjp(circuit, theta)
    return probs, pullback(upstream)


def shift_vjp(backend, circuit, theta, upstream):
    """The reference: today's parameter-shift path, 2P + 1 exact distributions."""
    probs = backend.probabilities(circuit, shifted_parameter_sets(theta))
    return probs[0], 0.5 * (probs[1::2] - probs[2::2]) @ upstream


def assert_adjoint_equals_shift(backend, circuit):
    """Probabilities to 1e-12 and the vector-Jacobian product to 1e-10, at random inputs."""
    theta, upstream = random_inputs(circuit)
    probs, grad = adjoint_vjp(backend, circuit, theta, upstream)
    ref_probs, ref_grad = shift_vjp(backend, circuit, theta, upstream)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-12, rtol=0)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-10, rtol=0)
    assert np.abs(ref_grad).max() > 1e-3  # not a vacuous comparison


def random_inputs(circuit):
    theta = RNG.uniform(0, 2 * np.pi, circuit.num_parameters)
    upstream = RNG.normal(size=2**circuit.num_qubits)
    return theta, upstream


def shape_id(shape):
    return f"{shape['rotation']}-{shape['entanglement']}-{shape['n_qubits']}"


SHAPES = [
    dict(n_qubits=4, reps=2, rotation="ry", entanglement="linear"),
    dict(n_qubits=4, reps=2, rotation="rx", entanglement="linear"),
    dict(n_qubits=5, reps=2, rotation="ry", entanglement="circular"),  # routed on heavy hex
    dict(n_qubits=5, reps=1, rotation="rx", entanglement="circular"),
]


@pytest.mark.parametrize("spec", ["aer_noisy:fake_brisbane", "aer_noisy:torino", "aer_noisy:fake_athens"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_noisy_adjoint_equals_parameter_shift(spec, shape):
    assert_adjoint_equals_shift(QPABackend(spec), ansatz(**shape))


def test_routing_really_happens_in_the_routed_cases():
    isa = QPABackend("aer_noisy:fake_brisbane").isa_circuit(ansatz(5, 2, entanglement="circular"))
    assert isa.count_ops().get("ecr", 0) > 2 * 5  # more two-qubit gates than the CNOTs


@pytest.mark.parametrize(
    "options",
    [
        dict(gate_error=False),
        dict(thermal_relaxation=False),
        dict(readout_error=False),
        dict(gate_error=False, readout_error=False),
        dict(noise_scale=0.0),
        dict(noise_scale=2.5),
    ],
    ids=repr,
)
def test_noisy_adjoint_for_every_switch_and_scale(options):
    backend = QPABackend("aer_noisy:fake_brisbane", **options)
    assert_adjoint_equals_shift(backend, ansatz(4, 2, rotation="rx", entanglement="circular"))


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_statevector_adjoint_equals_parameter_shift(shape):
    assert_adjoint_equals_shift(QPABackend("statevector"), ansatz(**shape))


def general_circuit():
    """Shared and scaled parameters, far-apart qubits, an unmeasured qubit, permuted clbits."""
    t = ParameterVector("t", 3)
    qc = QuantumCircuit(5, 4)
    qc.h(range(5))
    qc.ry(2 * t[0] + 0.3, 0)
    qc.rz(t[1], 4)
    qc.cx(0, 4)
    qc.rx(t[0] - t[2], 2)
    qc.rzz(t[1], 1, 3)
    qc.cx(3, 1)
    qc.ecr(2, 0)
    qc.ry(-t[2], 3)
    qc.measure([3, 0, 4, 1], [0, 1, 2, 3])  # qubit 2 is not measured
    return qc


def finite_difference(f, theta, h=1e-6):
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


@pytest.mark.parametrize("kind", ["ptm", "statevector"])
def test_programs_pull_back_through_affine_shared_angles(kind):
    """The chain rule over angles like 2t + 0.3 and t0 - t2 (no shift rule for the parameters)."""
    from qpa_qiskit.backends import fake_device
    from qpa_qiskit.noise import describe_noise

    qc = general_circuit()
    if kind == "ptm":
        from qiskit_aer.noise import NoiseModel

        program = PTMProgram(qc, describe_noise(NoiseModel.from_backend(fake_device("fake_brisbane"))))
    else:
        program = StatevectorProgram(qc)
    theta = RNG.uniform(0, 2 * np.pi, 3)
    upstream = RNG.normal(size=16)
    probs, pullback = program.vjp(theta)
    grad, _ = pullback(upstream)
    np.testing.assert_allclose(probs, program.probabilities(theta[None])[0], atol=1e-14)
    expected = finite_difference(lambda v: program.probabilities(v[None])[0] @ upstream, theta)
    np.testing.assert_allclose(grad, expected, atol=1e-7)
    assert np.abs(grad).max() > 1e-2


def test_statevector_program_equals_aer():
    qc = general_circuit()
    values = RNG.uniform(0, 2 * np.pi, (3, 3))
    np.testing.assert_allclose(
        StatevectorProgram(qc).probabilities(values),
        QPABackend("statevector").probabilities(qc, values),
        atol=1e-12,
    )


# ---------------------------------------------------------------- memory: checkpoints
@pytest.mark.parametrize("n_steps", [1, 2, 5, 17, 40])
@pytest.mark.parametrize("capacity", [3, 4, 6, 9, 50])
def test_reverse_sweep_visits_every_state_within_its_buffers(n_steps, capacity):
    pool = BufferPool(lambda: [None], capacity)
    initial = pool.take()
    initial[0] = 0
    seen = []

    def forward(j, x, out):
        assert out is not x
        out[0] = x[0] + 1

    def backward(j, x):
        assert x[0] == j  # the state before step j
        seen.append(j)

    steps = reverse_sweep(n_steps, initial, forward, backward, pool)
    assert seen == list(range(n_steps - 1, -1, -1))
    assert pool.peak <= capacity and pool.in_use == 0
    if capacity >= n_steps:
        assert steps == n_steps - 1  # everything stored: each step runs forward once
    else:
        assert steps > n_steps - 1


def test_budget_changes_memory_not_the_gradient():
    backend = QPABackend("aer_noisy:fake_brisbane")
    circuit = ansatz(5, 3, rotation="rx")
    theta, upstream = random_inputs(circuit)
    program = backend.program(circuit)
    free, stats = program.vjp(theta)[1](upstream)
    assert stats == {"slots": len(program.blocks) + 1, "forward_steps": len(program.blocks)}
    for slots in (MIN_SLOTS, 5, 8):
        grad, stats = program.vjp(theta, program.vjp_memory(slots))[1](upstream)
        assert stats["slots"] <= slots and stats["forward_steps"] > len(program.blocks)
        np.testing.assert_array_equal(grad, free)  # the same arithmetic, in another order of steps
    budgeted = QPABackend("aer_noisy:fake_brisbane", memory_budget=program.vjp_memory(MIN_SLOTS))
    np.testing.assert_array_equal(adjoint_vjp(budgeted, circuit, theta, upstream)[1], free)


def test_budget_that_holds_too_little_says_what_one_state_needs():
    circuit = ansatz(5, 1)
    backend = QPABackend("aer_noisy:fake_brisbane", memory_budget="50kB")  # a state: 8 KiB
    expected = r"budget of 48.8 KiB .* needs at least 56 KiB \(7 states of 8 KiB\)"
    with pytest.raises(CapacityError, match=expected):
        backend.vjp(circuit, np.zeros(5))


@pytest.mark.parametrize("value", [0, -5, "12 parsecs", "GiB", 1.5, True])
def test_bad_memory_budget(value):
    with pytest.raises(SpecError, match="memory_budget must be a positive number of bytes"):
        QPABackend("aer_noisy:fake_brisbane", memory_budget=value)


def test_memory_budget_only_where_something_is_simulated():
    assert QPABackend("statevector", memory_budget="1GiB").memory_budget == 2**30
    with pytest.raises(SpecError, match="unknown option"):
        QPABackend("ibm:fake_manila", shots=10, memory_budget="1GiB")


# ---------------------------------------------------------------- the torch layer
@pytest.mark.parametrize("spec", ["statevector", "aer_noisy:fake_brisbane"])
def test_layer_gradients_agree_between_methods(spec):
    circuit = ansatz(4, 2, rotation="rx", entanglement="circular")
    init = RNG.uniform(0, 2 * np.pi, circuit.num_parameters)
    weights = torch.from_numpy(RNG.normal(size=16))
    grads = {}
    for method in ("adjoint", "shift"):
        layer = QuantumProbabilities(QPABackend(spec), circuit, init=init, gradient=method)
        assert layer.gradient == method
        (layer() @ weights).pow(2).backward()
        grads[method] = layer.theta.grad.numpy()
    np.testing.assert_allclose(grads["adjoint"], grads["shift"], atol=1e-10, rtol=0)


def test_auto_picks_adjoint_where_exact_else_shift():
    circuit = ansatz(3, 1)
    assert QuantumProbabilities(QPABackend("statevector"), circuit).gradient == "adjoint"
    assert QuantumProbabilities(QPABackend("aer_noisy:fake_manila"), circuit).gradient == "adjoint"
    assert QuantumProbabilities(QPABackend("statevector", shots_factor=4), circuit).gradient == "shift"
    aer = QPABackend("aer_noisy:fake_manila", engine="aer")
    assert QuantumProbabilities(aer, circuit).gradient == "shift"


@pytest.mark.parametrize(
    "backend, message",
    [
        (lambda: QPABackend("statevector", shots=100), "samples 100 shots per parameter set"),
        (lambda: QPABackend("aer_noisy:fake_manila", engine="aer"), "engine='aer' was chosen"),
        (lambda: QPABackend("ibm:fake_manila", shots_factor=2), "samples 16 shots"),
    ],
)
def test_adjoint_through_a_backend_that_cannot_give_it(backend, message):
    circuit = ansatz(3, 1)
    with pytest.raises(InputError, match=f"gradient='adjoint' is not possible.*{message}"):
        QuantumProbabilities(backend(), circuit, gradient="adjoint")
    with pytest.raises(InputError, match=f"no exact gradients here: .*{message}"):
        backend().vjp(circuit, np.zeros(3))


def test_bad_gradient_inputs():
    circuit = ansatz(3, 1)
    with pytest.raises(InputError, match="gradient must be one of auto, adjoint, shift"):
        QuantumProbabilities(QPABackend("statevector"), circuit, gradient="backprop")
    backend = QPABackend("statevector")
    with pytest.raises(InputError, match=r"upstream must have shape \(8,\)"):
        backend.vjp(circuit, np.zeros(3))[1](np.zeros(4))
    with pytest.raises(InputError, match="vjp takes one parameter set"):
        backend.vjp(circuit, np.zeros((2, 3)))
    theta = Parameter("t")
    bare = QuantumCircuit(1)
    bare.ry(theta, 0)
    assert adjoint_vjp(backend, bare, [0.4], [1.0, -1.0])[1] == pytest.approx([-np.sin(0.4)])  # d cos(t)/dt


# ---------------------------------------------------------------- memory: shots walk chunks
@pytest.mark.parametrize("rows", [2, 3, 7])
def test_chunked_branch_walk_gives_the_same_probabilities(rows):
    backend = QPABackend("aer_noisy:fake_brisbane")
    circuit = ansatz(5, 2, rotation="rx", entanglement="circular")
    program = backend.program(circuit)
    theta = RNG.uniform(0, 2 * np.pi, circuit.num_parameters)
    sets = shifted_parameter_sets(theta)
    sets[5] = sets[0]  # a set equal to the first rides along with it
    free = program.probabilities(sets)
    assert program.last_walk == {"chunks": 1, "rows": len(sets) - 1, "sets": len(sets)}
    budget = program.memory_bytes(rows)
    chunked = program.probabilities(sets, memory_budget=budget)
    walk = program.last_walk
    assert walk["rows"] == rows and program.memory_bytes(walk["rows"]) <= budget
    assert walk["chunks"] == int(np.ceil((len(sets) - 2) / (rows - 1)))
    np.testing.assert_allclose(chunked, free, atol=1e-13, rtol=0)
    independent = RNG.uniform(0, 2 * np.pi, (6, circuit.num_parameters))  # all branch at once
    np.testing.assert_allclose(
        program.probabilities(independent, memory_budget=budget),
        program.probabilities(independent),
        atol=1e-13,
    )


def test_shot_step_within_a_budget_through_the_layer():
    circuit = ansatz(4, 2)
    init = RNG.uniform(0, 2 * np.pi, circuit.num_parameters)
    grads = []
    for options in ({}, {"memory_budget": 6 * 8 * 4**4}):  # two rows at a time
        backend = QPABackend("aer_noisy:fake_brisbane", shots_factor=20, seed=5, **options)
        layer = QuantumProbabilities(backend, circuit, init=init)
        layer().sum().backward()
        grads.append(layer.theta.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-12)


def test_budget_below_one_branch_says_what_one_needs():
    backend = QPABackend("aer_noisy:fake_brisbane", shots_factor=2, memory_budget="40kB")
    expected = r"needs at least 48 KiB \(8 KiB a state\); raise the backend option memory_budget"
    with pytest.raises(CapacityError, match=expected):
        backend.probabilities(ansatz(5, 1), RNG.uniform(0, 1, (3, 5)))


# ---------------------------------------------------------------- torch device
def test_engine_on_an_explicit_torch_device():
    circuit = ansatz(4, 2)
    theta, upstream = random_inputs(circuit)
    default = QPABackend("aer_noisy:fake_brisbane")
    on_cpu = QPABackend("aer_noisy:fake_brisbane", torch_device="cpu")
    np.testing.assert_array_equal(on_cpu.probabilities(circuit, theta), default.probabilities(circuit, theta))
    np.testing.assert_array_equal(
        adjoint_vjp(on_cpu, circuit, theta, upstream)[1], adjoint_vjp(default, circuit, theta, upstream)[1]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_engine_on_cuda_equals_cpu():  # pragma: no cover - runs where a GPU is
    circuit = ansatz(6, 3, entanglement="circular")
    theta, upstream = random_inputs(circuit)
    cpu = QPABackend("aer_noisy:fake_brisbane")
    gpu = QPABackend("aer_noisy:fake_brisbane", torch_device="cuda")
    np.testing.assert_allclose(
        gpu.probabilities(circuit, theta), cpu.probabilities(circuit, theta), atol=1e-12
    )
    np.testing.assert_allclose(
        adjoint_vjp(gpu, circuit, theta, upstream)[1],
        adjoint_vjp(cpu, circuit, theta, upstream)[1],
        atol=1e-10,
    )


@pytest.mark.parametrize(
    "value, message",
    [("tpu", "torch_device must be 'cpu', or 'cuda'"), (3, "torch_device must be"), ("mps", "must be")]
    + ([] if torch.cuda.is_available() else [("cuda", "sees no CUDA device here; use 'cpu'")]),
)
def test_bad_torch_device(value, message):
    with pytest.raises(SpecError, match=message):
        QPABackend("aer_noisy:fake_brisbane", torch_device=value)
    with pytest.raises(SpecError, match="unknown option"):
        QPABackend("statevector", torch_device="cpu")


@pytest.mark.parametrize("n_qubits", [1, 2])
def test_adjoint_on_circuits_of_one_or_two_blocks(n_qubits):
    """Fewer blocks than the sweep's minimum of buffers (this once refused a 2-qubit circuit)."""
    circuit = ansatz(n_qubits, 1)
    backend = QPABackend("aer_noisy:fake_brisbane")
    assert len(backend.program(circuit).blocks) <= 2
    assert_adjoint_equals_shift(backend, circuit)
