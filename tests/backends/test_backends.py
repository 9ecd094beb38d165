"""Spec parsing, shots, shapes and every bad input of QPABackend."""

import subprocess
import sys

import numpy as np
import pytest
from qiskit import QuantumCircuit

from qpa_qiskit import (
    AccountError,
    CapacityError,
    InputError,
    QPABackend,
    SpecError,
    ansatz,
    list_backends,
)
from qpa_qiskit.cli import main


@pytest.mark.parametrize(
    "spec, kind, device",
    [
        ("statevector", "statevector", None),
        ("ideal", "statevector", None),
        ("aer_noisy:fake_brisbane", "aer_noisy", "fake_brisbane"),
        ("aer_noisy:FAKE_Brisbane", "aer_noisy", "fake_brisbane"),
        ("aer_noisy:brisbane", "aer_noisy", "brisbane"),  # the shipped snapshot (qpa_qiskit/noise/models/)
        ("aer_noisy:Torino", "aer_noisy", "torino"),
        ("aer_noisy:fake_torino", "aer_noisy", "fake_torino"),
        ("aer_noisy:athens", "aer_noisy", "fake_athens"),
        ("ibm:fake_brisbane", "ibm", "fake_brisbane"),
    ],
)
def test_spec_parsing(spec, kind, device):
    backend = QPABackend(spec, shots=10)
    assert backend.kind == kind
    assert backend.device_name == device


@pytest.mark.parametrize(
    "spec, match",
    [
        ("statevectr", "Did you mean 'statevector'"),
        ("density", "Accepted:"),
        ("aer_noisy:", "Accepted:"),
        ("aer_noisy:fake_brisbain", "Did you mean fake_brisbane"),
        ("aer_noisy:nowhere", "Known devices:"),
        ("ibm:fake_nowhere", "Known devices:"),
        (42, "string"),
    ],
)
def test_unknown_spec_or_device(spec, match):
    with pytest.raises(SpecError, match=match):
        QPABackend(spec)


def test_unknown_option_lists_accepted():
    with pytest.raises(
        SpecError,
        match=r"accepted: \['engine', 'gate_error', 'layout', 'memory_budget', 'mitigation', 'noise_scale', "
        r"'optimization_level', 'readout_error', 'seed_transpiler', 'thermal_relaxation', 'torch_device'\]",
    ):
        QPABackend("aer_noisy:fake_brisbane", method="mps")
    with pytest.raises(SpecError, match="engine must be one of"):
        QPABackend("aer_noisy:fake_brisbane", engine="fast")


@pytest.mark.parametrize("factor", [0, -1.5, float("nan"), float("inf"), "20", True])
def test_bad_shots_factor(factor):
    with pytest.raises(InputError, match="shots_factor must be a finite number > 0"):
        QPABackend("statevector", shots_factor=factor)


def test_bad_shots():
    with pytest.raises(InputError, match="shots must be a positive integer"):
        QPABackend("statevector", shots=0)
    with pytest.raises(InputError, match="not both"):
        QPABackend("statevector", shots=10, shots_factor=2)


def test_num_shots():
    assert QPABackend("statevector").num_shots(7) is None
    assert QPABackend("statevector", shots_factor=20).num_shots(7) == 20 * 128
    assert QPABackend("statevector", shots_factor=0.3).num_shots(3) == 3  # ceil(2.4)
    assert QPABackend("statevector", shots=100).num_shots(10) == 100


def test_ibm_cannot_be_exact():
    with pytest.raises(InputError, match="exact probabilities are not possible"):
        QPABackend("ibm:fake_brisbane")


def test_ibm_without_account(no_ibm_account):
    with pytest.raises(AccountError, match="No account is saved and QISKIT_IBM_TOKEN is not set") as info:
        QPABackend("ibm:ibm_brisbane", shots=100)
    assert "save_account(" in str(info.value)


def test_ibm_account_error_reports_the_cause_and_never_the_token(no_ibm_account, monkeypatch):
    import qiskit_ibm_runtime

    token = "tok-1234567890abcdef"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)

    class Service:  # the service refuses the token and echoes it, as a malformed-CRN error may
        def __init__(self, *args, **kwargs):
            raise ValueError(f"instance 'crn:v1:bad' is not valid for token {token}")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", Service)
    with pytest.raises(AccountError, match=r"ValueError: instance 'crn:v1:bad' is not valid") as info:
        QPABackend("ibm:ibm_torino", shots=100)
    message = str(info.value)
    assert token not in message and "for token ***" in message
    assert "save_account(" not in message  # a token is set: saving an account is not the fix
    # the user typed the token where the device name goes: refused before the service is asked
    with pytest.raises(SpecError, match=r"'ibm:\*\*\*' names a credential") as info:
        QPABackend(f"ibm:{token}", shots=100)
    assert token not in str(info.value)


def test_circuit_wider_than_device():
    backend = QPABackend("aer_noisy:fake_athens")  # 5 qubits
    with pytest.raises(InputError, match="6 qubits but fake_athens has 5"):
        backend.probabilities(ansatz(6, 1), np.zeros(6))


@pytest.mark.parametrize("shape", [(7,), (2, 5), (1, 2, 6), (0, 5)])
def test_wrong_parameter_shape(shape):
    backend = QPABackend("statevector")
    with pytest.raises(InputError, match=r"shape \(6,\) or \(B, 6\)"):
        backend.probabilities(ansatz(3, 2), np.zeros(shape))


def test_non_finite_parameters():
    with pytest.raises(InputError, match="finite"):
        QPABackend("statevector").probabilities(ansatz(2, 1), [0.1, np.nan])


def test_statevector_too_large_says_how_much_memory():
    qc = QuantumCircuit(40)
    qc.h(0)
    with pytest.raises(CapacityError, match=r"40 qubits needs 1.64e\+04 GiB"):
        QPABackend("statevector").probabilities(qc)


def test_noisy_too_large_says_how_much_memory():
    qc = QuantumCircuit(16)
    for q in range(15):
        qc.cx(q, q + 1)
    with pytest.raises(
        CapacityError, match=r"16 qubits: it needs at least 128 GiB \(32 GiB a state\).* available"
    ):
        QPABackend("aer_noisy:fake_brisbane").probabilities(qc)


def test_mid_circuit_measurement_rejected():
    qc = QuantumCircuit(2, 2)
    qc.measure(0, 0)
    qc.x(0)
    qc.measure(1, 1)
    with pytest.raises(InputError, match="only final measurements"):
        QPABackend("statevector").probabilities(qc)


def test_unmeasured_classical_bit_rejected():
    qc = QuantumCircuit(2, 2)
    qc.measure(0, 0)
    with pytest.raises(InputError, match="never measured"):
        QPABackend("statevector").probabilities(qc)


def test_isa_circuit_is_deterministic_and_native():
    qc = ansatz(4, 2)
    a = QPABackend("aer_noisy:fake_brisbane").isa_circuit(qc)
    b = QPABackend("aer_noisy:fake_brisbane").isa_circuit(qc)
    assert a == b
    basis = set(QPABackend("aer_noisy:fake_brisbane").device.operation_names)
    assert set(a.count_ops()) <= basis | {"barrier"}


def test_list_backends_and_cli(capsys):
    rows = dict(list_backends())
    assert "statevector" in rows
    assert rows["aer_noisy:fake_brisbane"] == 127
    assert rows["ibm:fake_torino"] == 133
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "aer_noisy:fake_brisbane" in out and "127" in out


def test_cli_reports_errors_cleanly(capsys):
    assert main(["demo", "--qubits", "0"]) == 2
    assert "n_qubits must be a positive integer" in capsys.readouterr().err


def test_importing_the_facade_module_alone_knows_every_family():
    """The package loads its families lazily; a caller that imports ``backends.core`` directly
    (not the package's names) must still find every family by its spec."""
    code = (
        "from qpa_qiskit.backends.core import QPABackend, parse_spec\n"
        "print(parse_spec('ideal'), parse_spec('aer_noisy:fake_manila'), parse_spec('ibm:fake_manila'))\n"
        "print(QPABackend('statevector').kind)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [
        "('statevector', None) ('aer_noisy', 'fake_manila') ('ibm', 'fake_manila')",
        "statevector",
    ]
