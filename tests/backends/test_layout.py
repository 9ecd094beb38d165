"""The backends' ``layout`` option: the noise-aware default, the preset's own layout, explicit
physical qubits, what a run records of them, and the refusals."""

import json

import numpy as np
import pytest
from conftest import tiny_config

from qpa_qiskit.backends import QPABackend
from qpa_qiskit.backends.config import BackendConfig
from qpa_qiskit.circuits import ansatz
from qpa_qiskit.cli import main
from qpa_qiskit.errors import InputError, SpecError
from qpa_qiskit.run_folder import CONFIG, LAYOUT
from qpa_qiskit.train import Run

ANSATZ = ansatz(7, 8)


def worst_readout(backend: QPABackend) -> float:
    return max(row["readout_error"] for row in backend.placement(ANSATZ)["qubits"])


@pytest.mark.parametrize(
    "device, preset_worst, aware_at_most",
    [("brisbane", 0.1855, 0.016), ("torino", 0.1667, 0.054)],  # the figures
)
def test_noise_aware_layout_avoids_the_bad_qubits_the_preset_takes(device, preset_worst, aware_at_most):
    preset = QPABackend(f"aer_noisy:{device}", layout="preset")
    aware = QPABackend(f"aer_noisy:{device}")  # the default
    assert preset.placement(ANSATZ)["layout"] == list(range(7))
    assert worst_readout(preset) == pytest.approx(preset_worst, abs=5e-5)
    assert worst_readout(aware) <= aware_at_most
    assert aware.layout == "noise_aware" and aware.placement(ANSATZ)["layout"] != list(range(7))


def test_noise_aware_layout_brings_the_noisy_distribution_closer_to_the_ideal():
    values = np.random.default_rng(0).uniform(0, 2 * np.pi, (4, ANSATZ.num_parameters))
    ideal = QPABackend("statevector").probabilities(ANSATZ, values)

    def tvd(layout):
        noisy = QPABackend("aer_noisy:torino", layout=layout).probabilities(ANSATZ, values)
        return np.median(0.5 * np.abs(noisy - ideal).sum(axis=1))

    assert tvd("noise_aware") < 0.8 * tvd("preset")


def test_a_routed_circuit_is_moved_to_good_qubits_too():
    # a 5-ring does not embed in heavy-hex: Sabre routes it, then VF2PostLayout re-places it
    ring = ansatz(5, 1, entanglement="circular")
    backend = QPABackend("aer_noisy:fake_brisbane")
    assert backend.isa_circuit(ring).count_ops()["ecr"] > 5
    assert max(r["readout_error"] for r in backend.placement(ring)["qubits"]) < 0.02


def test_explicit_physical_qubits_are_used_as_given():
    qubits = [13, 12, 11, 10, 9, 8, 7]
    for layout in (qubits, ",".join(map(str, qubits)), tuple(qubits)):
        backend = QPABackend("aer_noisy:fake_brisbane", layout=layout)
        assert backend.placement(ANSATZ)["layout"] == qubits
    cfg = BackendConfig(backend="aer_noisy:fake_brisbane", layout=" 13, 12,11,10,9,8,7")
    assert cfg.layout == "13,12,11,10,9,8,7"


def test_the_ibm_family_places_the_circuit_the_same_way():
    ibm = QPABackend("ibm:fake_brisbane", shots=10)
    noisy = QPABackend("aer_noisy:fake_brisbane")
    assert ibm.placement(ANSATZ)["layout"] == noisy.placement(ANSATZ)["layout"]


@pytest.mark.parametrize(
    "layout, error, match",
    [
        ("noise-aware", SpecError, r"layout must be noise_aware, preset, or distinct physical qubits"),
        ("1,2,x", SpecError, r"layout must be .*got '1,2,x'"),
        ([1, -2], SpecError, r"layout must be .*got \[1, -2\]"),
        ([1, 1, 2], SpecError, r"places two circuit qubits on physical qubit\(s\) \[1\]"),
        (True, SpecError, r"layout must be"),
    ],
)
def test_bad_layouts_are_refused_naming_the_accepted_forms(layout, error, match):
    with pytest.raises(error, match=match):
        QPABackend("aer_noisy:fake_brisbane", layout=layout)
    with pytest.raises(InputError, match=match):
        BackendConfig(backend="aer_noisy:fake_brisbane", layout=layout)


def test_layouts_the_device_cannot_honour_are_refused():
    too_few = QPABackend("aer_noisy:fake_brisbane", layout=[0, 1, 2])
    with pytest.raises(InputError, match=r"names 3 physical qubit\(s\) \[0, 1, 2\] for a circuit of 7"):
        too_few.probabilities(ANSATZ, np.zeros(ANSATZ.num_parameters))
    outside = QPABackend("aer_noisy:fake_athens", layout=[0, 1, 5])
    with pytest.raises(InputError, match=r"qubit\(s\) \[5\], and aer_noisy:fake_athens has qubits 0-4"):
        outside.isa_circuit(ansatz(3, 1))
    with pytest.raises(SpecError, match=r"statevector has no device to place a circuit on"):
        QPABackend("statevector", layout=[0, 1])
    with pytest.raises(InputError, match=r"backend 'statevector' has none .* Drop --layout"):
        BackendConfig(backend="statevector", layout="0,1")
    assert QPABackend("statevector", layout="preset").probabilities(ansatz(2, 1), np.zeros(2)).shape == (1, 4)


def test_a_run_records_its_physical_qubits_and_an_old_run_keeps_the_preset_layout(corpus, tmp_path):
    cfg = tiny_config(corpus, steps=1, backend="aer_noisy:fake_brisbane", chunk_size=64, reps=1)
    with Run.create(tmp_path / "r", cfg) as run:
        circuit = run.model.generator.circuit
        expected = run.model.generator.quantum.backend.placement(circuit)
    record = json.loads((tmp_path / "r" / LAYOUT).read_text())
    assert record["setting"] == "noise_aware" and record["backend"] == "aer_noisy:fake_brisbane"
    assert record["layout"] == expected["layout"] and len(record["layout"]) == circuit.num_qubits
    assert {"readout_error", "sx_error", "t1_us", "t2_us"} <= set(record["qubits"][0])
    # a config.json written before the option: it resumes on the qubits it was placed on then
    stored = json.loads((tmp_path / "r" / CONFIG).read_text())
    del stored["backend"]["layout"]
    (tmp_path / "r" / CONFIG).write_text(json.dumps(stored))
    assert Run.stored_config(tmp_path / "r").backend.layout == "preset"
    with Run.create(tmp_path / "s", tiny_config(corpus, steps=1)):  # statevector: no device
        pass
    assert not (tmp_path / "s" / LAYOUT).exists()


def test_noise_show_prints_the_layout_it_used(capsys):
    assert main(["noise", "show", "brisbane", "--layout", "preset"]) == 0
    shown = capsys.readouterr().out
    assert "layout preset): circuit qubits -> physical qubits [0, 1, 2, 3, 4, 5, 6]" in shown
    assert main(["noise", "show", "brisbane", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout_setting"] == "noise_aware"
    assert max(q["readout_error"] for q in report["qubits"]) < 0.016
