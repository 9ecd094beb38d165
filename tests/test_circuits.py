import pytest

from qpa_qiskit import InputError, ansatz


@pytest.mark.parametrize("n, reps", [(1, 1), (3, 2), (7, 8)])
def test_linear_ry_structure(n, reps):
    qc = ansatz(n, reps)
    ops = qc.count_ops()
    assert qc.num_qubits == n and qc.num_clbits == n
    assert qc.num_parameters == n * reps
    assert ops["ry"] == n * reps
    assert ops.get("cx", 0) == (n - 1) * reps
    assert ops["measure"] == n


def test_rx_circular():
    qc = ansatz(4, 3, rotation="rx", entanglement="circular")
    ops = qc.count_ops()
    assert ops["rx"] == 12 and "ry" not in ops
    assert ops["cx"] == 4 * 3
    closing = [i for i in qc.data if i.operation.name == "cx"][3]
    assert [qc.find_bit(q).index for q in closing.qubits] == [3, 0]


def test_parameters_are_layer_major():
    qc = ansatz(3, 2)
    rotations = [i for i in qc.data if i.operation.name == "ry"]
    for k, inst in enumerate(rotations):
        assert inst.operation.params[0] == qc.parameters[k]
        assert qc.find_bit(inst.qubits[0]).index == k % 3


def test_starts_in_zero_and_measures_each_qubit_into_its_bit():
    qc = ansatz(3, 1)
    measures = [i for i in qc.data if i.operation.name == "measure"]
    assert [(qc.find_bit(m.qubits[0]).index, qc.find_bit(m.clbits[0]).index) for m in measures] == [
        (0, 0),
        (1, 1),
        (2, 2),
    ]
    assert not any(i.operation.name in ("reset", "initialize", "h") for i in qc.data)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_qubits=0, reps=1), "n_qubits"),
        (dict(n_qubits=2, reps=-1), "reps"),
        (dict(n_qubits=2.5, reps=1), "n_qubits"),
        (dict(n_qubits=2, reps=1, rotation="rz"), "rotation must be one of ry, rx; got 'rz'"),
        (dict(n_qubits=2, reps=1, entanglement="full"), "one of linear, circular; got 'full'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        ansatz(**kwargs)
