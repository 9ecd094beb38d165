"""Noise-model snapshots, noise scale and components, and ``qpa noise``."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit_aer import AerSimulator

from qpa_qiskit import QPABackend, ansatz
from qpa_qiskit.backends import fake_device, measured_qubits
from qpa_qiskit.cli import main
from qpa_qiskit.errors import InputError, SpecError
from qpa_qiskit.noise import NoiseSettings, Snapshot, packaged_dir
from qpa_qiskit.simulator import PTMProgram

REPO = Path(__file__).resolve().parents[2]
VALUES = np.random.default_rng(11).uniform(0, 2 * np.pi, (3, 8))


def aer_exact(isa, noise_model, values):
    """Aer's density-matrix method on the ISA circuit with `noise_model`."""
    sim = AerSimulator(method="density_matrix", noise_model=noise_model)
    circ = isa.remove_final_measurements(inplace=False)
    circ.save_probabilities(measured_qubits(isa))
    binds = [{p: values[:, i] for i, p in enumerate(isa.parameters)}]
    result = sim.run([circ], parameter_binds=binds).result()
    return np.array([result.results[b].data.probabilities for b in range(len(values))])


# ---------------------------------------------------------------- snapshots
@pytest.mark.slow
@pytest.mark.parametrize("device", ["fake_brisbane", "fake_torino"])
def test_snapshot_reproduces_the_live_device_in_a_fresh_process(tmp_path, device):
    path = Snapshot.from_fake_device(device).save(tmp_path / f"{device}.json")
    circuit = ansatz(4, 2)
    live = QPABackend(f"aer_noisy:{device}")
    expected = live.probabilities(circuit, VALUES)
    script = (
        "import json, sys, numpy as np\n"
        "from qpa_qiskit import QPABackend, ansatz\n"
        f"b = QPABackend('aer_noisy:{path}')\n"
        "c = ansatz(4, 2)\n"
        f"p = b.probabilities(c, np.array({VALUES.tolist()}))\n"
        "print(json.dumps({'p': p.tolist(), 'isa': str(b.isa_circuit(c).layout.final_index_layout())}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["isa"] == str(live.isa_circuit(circuit).layout.final_index_layout())
    np.testing.assert_allclose(np.array(got["p"]), expected, atol=1e-12, rtol=0)


def test_snapshot_keeps_the_runtime_files_and_provenance(tmp_path):
    device = fake_device("fake_manila")
    snap = Snapshot.load(Snapshot.from_fake_device("manila").save(tmp_path / "m.json"))
    raw = json.loads((Path(type(device).dirname) / type(device).props_filename).read_text())
    assert snap.properties == raw
    assert snap.configuration["n_qubits"] == 5 and snap.name == "fake_manila"
    assert snap.provenance["calibration_date"] == raw["last_update_date"]
    assert set(snap.provenance["libraries"]) >= {"qiskit", "qiskit-aer", "qiskit-ibm-runtime"}
    assert snap.device().target.num_qubits == 5


def test_committed_snapshots_cover_both_families_and_are_documented():
    folder = packaged_dir()
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 4
    readme = (folder / "README.md").read_text()
    families = {"ecr": 0, "cz": 0}
    for path in files:
        snap = Snapshot.load(path)
        basis = snap.configuration["basis_gates"]
        for gate in families:
            families[gate] += gate in basis
        assert f"`{path.name}`" in readme and snap.calibration_date[:10] in readme
        # the named lookup finds it, from any folder
        assert QPABackend(f"aer_noisy:{path.stem}").connect().num_qubits == snap.num_qubits
    assert families["ecr"] >= 2 and families["cz"] >= 2


def test_snapshot_of_an_ibm_device_through_a_service(tmp_path):
    """The ibm: path, against a stand-in service whose backend is a fake device."""

    class Service:
        def backend(self, name):
            assert name == "ibm_manila"
            return fake_device("fake_manila")

    snap = Snapshot.from_ibm("ibm_manila", service=Service())
    path = snap.save(tmp_path / "ibm_manila.json")
    loaded = Snapshot.load(path)
    assert loaded.name == "ibm_manila" and "IBM Quantum" in loaded.provenance["source"]
    circuit = ansatz(3, 2)
    values = VALUES[:, :6]
    np.testing.assert_allclose(
        QPABackend(f"aer_noisy:{path}").probabilities(circuit, values),
        QPABackend("aer_noisy:fake_manila").probabilities(circuit, values),
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "cannot read"),
        ("{}", "not a qpa-qiskit noise snapshot"),
        ('{"format": "qpa-noise-snapshot", "version": 9}', "version 9"),
        ('{"format": "qpa-noise-snapshot", "version": 1, "name": "x"}', "lacks configuration, properties"),
    ],
)
def test_malformed_snapshot_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=message) as info:
        QPABackend(f"aer_noisy:{path}")
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["properties"].pop("gates"), "properties lacks gates"),
        (lambda d: d["configuration"].update(n_qubits=7), "does not match"),
        (lambda d: d["properties"]["qubits"][2].pop(0), "qubit 2 lacks T1"),
        (lambda d: d["properties"]["gates"][0].update(parameters=5), "malformed"),
    ],
)
def test_snapshot_with_missing_or_broken_data(tmp_path, edit, message):
    data = Snapshot.from_fake_device("manila").to_dict()
    edit(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=message):
        QPABackend(f"aer_noisy:{path}")


def _set(section: str, field: str, value, *, gate: str | None = None, qubit: int = 0):
    """An edit of a snapshot's data: one qubit property, one gate parameter or one config field."""

    def edit(d):
        if section == "configuration":
            d["configuration"][field] = value
        elif section == "qubits":
            next(i for i in d["properties"]["qubits"][qubit] if i["name"] == field)["value"] = value
        else:
            item = next(g for g in d["properties"]["gates"] if g["gate"] == gate)
            next(i for i in item["parameters"] if i["name"] == field)["value"] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("gates", "gate_error", 1.7, gate="cx"),
         r"gates\[\d+\] gate_error of 'cx' on qubits \[\d, \d\] is 1.7; accepted: a number in \[0, 1\]"),
        (_set("gates", "gate_error", float("nan"), gate="sx"), r"gate_error of 'sx' on qubits \[\d\] is nan"),
        (_set("gates", "gate_error", -0.1, gate="x"), r"gate_error of 'x' .* is -0.1; accepted"),
        (_set("gates", "gate_length", -5.0, gate="x"), r"gate_length .* accepted: a finite number >= 0"),
        (_set("qubits", "readout_error", float("nan"), qubit=3),
         r"properties.qubits\[3\] readout_error of qubit 3 is nan; accepted: a number in \[0, 1\]"),
        (_set("qubits", "prob_meas1_prep0", 1.5, qubit=1), r"prob_meas1_prep0 of qubit 1 is 1.5"),
        (_set("qubits", "T1", -5.0, qubit=2), r"T1 of qubit 2 is -5.0; accepted: a finite number > 0"),
        (_set("qubits", "T2", 0.0), r"T2 of qubit 0 is 0.0; accepted: a finite number > 0"),
        (_set("qubits", "T1", "long"), r"T1 of qubit 0 is 'long'"),
        (_set("configuration", "basis_gates", ["cx", "id", "rz", "sx", "x", "foo"]),
         r"configuration.basis_gates holds 'foo', not a qiskit standard gate; accepted: .*ecr.*"),
        (_set("configuration", "basis_gates", []), r"configuration.basis_gates is \[\]"),
    ],
)  # fmt: skip
def test_impossible_snapshot_values_are_refused_when_read(tmp_path, edit, message):
    """Before: a gate error above 1 ran as near-uniform noise, a NaN readout error gave NaN
    probabilities, a negative T1 was a raw Aer error, an unknown basis gate was accepted."""
    data = Snapshot.from_fake_device("manila").to_dict()
    edit(data)
    path = tmp_path / "impossible.json"
    path.write_text(json.dumps(data))
    for read in (lambda: QPABackend(f"aer_noisy:{path}"), lambda: Snapshot.load(path)):
        with pytest.raises(SpecError, match=message) as info:
            read()
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    in_memory = Snapshot(data["name"], data["configuration"], data["properties"])
    with pytest.raises(SpecError, match=r"snapshot of fake_manila: .*" + message):
        in_memory.device()


def test_the_calibrated_values_of_every_fake_device_are_accepted():
    from qpa_qiskit.backends.devices import fake_device_names
    from qpa_qiskit.noise import check_values

    for name in fake_device_names():
        snapshot = Snapshot.from_fake_device(name)  # checks them too
        check_values(snapshot.configuration, snapshot.properties, name)


def test_missing_snapshot_and_narrow_device(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        QPABackend(f"aer_noisy:{tmp_path / 'none.json'}")
    with pytest.raises(SpecError, match=r"Snapshots found by name: .*brisbane"):
        QPABackend("aer_noisy:no_such_device")
    path = Snapshot.from_fake_device("manila").save(tmp_path / "m.json")
    with pytest.raises(InputError, match=r"6 qubits but .*m\.json has 5"):
        QPABackend(f"aer_noisy:{path}").probabilities(ansatz(6, 1), np.zeros(6))


# ---------------------------------------------------------------- scale and switches
def test_scale_zero_is_exactly_noiseless():
    circuit = ansatz(4, 2, rotation="rx")
    ideal = QPABackend("statevector").probabilities(circuit, VALUES)
    for device in ("fake_brisbane", "torino"):
        noisy = QPABackend(f"aer_noisy:{device}", noise_scale=0).probabilities(circuit, VALUES)
        np.testing.assert_allclose(noisy, ideal, atol=1e-10, rtol=0)


def test_scale_multiplies_the_calibration():
    snap = Snapshot.from_fake_device("brisbane")
    base, half = snap.device().target, snap.device(0.5).target
    for q in (0, 5):
        assert half.qubit_properties[q].t1 == pytest.approx(2 * base.qubit_properties[q].t1)
        assert half.qubit_properties[q].t2 == pytest.approx(2 * base.qubit_properties[q].t2)
        assert half["measure"][(q,)].error == pytest.approx(0.5 * base["measure"][(q,)].error)
        assert half["sx"][(q,)].error == pytest.approx(0.5 * base["sx"][(q,)].error)
    pair = next(iter(base["ecr"]))
    assert half["ecr"][pair].error == pytest.approx(0.5 * base["ecr"][pair].error)
    # the readout channel the simulation applies is scaled too
    backend = QPABackend("aer_noisy:fake_brisbane", noise_scale=0.5)
    device = QPABackend("aer_noisy:fake_brisbane")
    q = measured_qubits(backend.isa_circuit(ansatz(2, 1)))[0]
    flip = backend.family.noise_description().readout_error(q)[0, 1]
    assert flip == pytest.approx(0.5 * device.family.noise_description().readout_error(q)[0, 1])


def test_noise_grows_with_scale():
    circuit = ansatz(3, 2)
    ideal = QPABackend("statevector").probabilities(circuit, VALUES[:, :6])
    tvd = []
    for s in (0.0, 0.5, 1.0, 2.0):
        noisy = QPABackend("aer_noisy:fake_brisbane", noise_scale=s).probabilities(circuit, VALUES[:, :6])
        tvd.append(0.5 * np.abs(noisy - ideal).sum(axis=1).mean())
    assert tvd[0] < 1e-10 and tvd[0] < tvd[1] < tvd[2] < tvd[3]


SETTINGS = [
    dict(noise_scale=0.5),
    dict(noise_scale=2.0),
    dict(gate_error=False),
    dict(thermal_relaxation=False),
    dict(readout_error=False),
    dict(noise_scale=1.5, thermal_relaxation=False, readout_error=False),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_ptm_engine_stays_exact_for_every_scale_and_switch(settings):
    backend = QPABackend("aer_noisy:fake_torino", layout="preset", **settings)  # qubits 0-3
    circuit = ansatz(4, 2)
    isa = backend.isa_circuit(circuit)
    values = VALUES[:2]
    ptm = backend.probabilities(circuit, values)
    # the gates and relaxation: Aer's own density matrix (readout is not in its snapshot)
    program = PTMProgram(isa, backend.family.noise_description())
    reference = aer_exact(isa, backend.noise_model, values)
    np.testing.assert_allclose(program.probabilities(values, readout=False), reference, atol=1e-10)
    aer = QPABackend("aer_noisy:fake_torino", engine="aer", layout="preset", **settings).probabilities(
        circuit, values
    )
    np.testing.assert_allclose(ptm, aer, atol=1e-10)


def test_switches_change_only_their_component():
    circuit = ansatz(3, 2)
    values = VALUES[:1, :6]
    full = QPABackend("aer_noisy:fake_brisbane").probabilities(circuit, values)
    no_readout = QPABackend("aer_noisy:fake_brisbane", readout_error=False).probabilities(circuit, values)
    only_readout = QPABackend(
        "aer_noisy:fake_brisbane", gate_error=False, thermal_relaxation=False
    ).probabilities(circuit, values)
    ideal = QPABackend("statevector").probabilities(circuit, values)
    assert not np.allclose(full, no_readout) and not np.allclose(only_readout, ideal)
    # readout acts last and alone: the gate-only distribution through the readout matrices is full
    backend = QPABackend("aer_noisy:fake_brisbane")
    from qpa_qiskit.simulator import apply_readout, readout_matrices

    isa = backend.isa_circuit(circuit)
    matrices = readout_matrices(backend.family.noise_description(), measured_qubits(isa))
    np.testing.assert_allclose(apply_readout(no_readout, matrices), full, atol=1e-12)


def test_scale_that_breaks_a_probability_is_refused_with_the_limit():
    backend = QPABackend("aer_noisy:fake_brisbane", noise_scale=50, layout="preset")  # qubits 0-2
    with pytest.raises(
        InputError, match=r"noise_scale=50 makes a probability invalid .* allow noise_scale <="
    ):
        backend.probabilities(ansatz(3, 1), np.zeros(3))


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(noise_scale=-1), InputError, "noise_scale must be a finite number >= 0"),
        (dict(noise_scale=float("nan")), InputError, "finite"),
        (dict(noise_scale=float("inf")), InputError, "finite"),
        (dict(noise_scale="2"), InputError, "finite number"),
        (dict(gate_error="no"), InputError, "gate_error must be True or False"),
        (dict(gate_error=False, thermal_relaxation=False, readout_error=False, noise_scale=2), InputError,
         "scales nothing"),
    ],
)  # fmt: skip
def test_bad_noise_settings(options, error, message):
    with pytest.raises(error, match=message):
        QPABackend("aer_noisy:fake_manila", **options)


@pytest.mark.parametrize("spec", ["statevector", "ibm:fake_manila"])
def test_noise_settings_on_a_backend_without_a_noise_model(spec):
    with pytest.raises(SpecError, match="only aer_noisy:<device> backends have"):
        QPABackend(spec, shots_factor=1, noise_scale=0.5)


def test_run_configuration_refuses_noise_settings_without_a_noise_model():
    from qpa_qiskit.config import RunConfig

    with pytest.raises(InputError, match="applies to aer_noisy"):
        RunConfig.from_dict({"backend": "statevector", "readout_error": False})
    cfg = RunConfig.from_dict({"backend": "aer_noisy:brisbane", "noise_scale": 0.5, "readout_error": False})
    assert cfg.backend.noise_scale == 0.5
    assert NoiseSettings(0.5, readout_error=False).describe() == "noise x0.5, without readout_error"


# ---------------------------------------------------------------- qpa noise
def test_cli_snapshot_then_the_printed_spec_works(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["noise", "snapshot", "fake_manila", "-o", "noise_models/manila_copy.json"]) == 0
    out = capsys.readouterr().out
    specs = out.split("--backend ")[1].split(" or ")
    assert [s.strip() for s in specs] == ["aer_noisy:noise_models/manila_copy.json", "aer_noisy:manila_copy"]
    for spec in specs:
        assert QPABackend(spec.strip()).probabilities(ansatz(2, 1), np.zeros(2)).shape == (1, 4)
    assert main(["noise", "snapshot", "fake_manila", "-o", "noise_models/manila_copy.json"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["noise", "snapshot", "fake_manila", "-o", "x.txt"]) == 2
    assert "ends in .json" in capsys.readouterr().err
    assert not Path("x.txt").exists()


def test_cli_show_reports_the_qubits_the_circuit_uses(capsys):
    assert main(["noise", "show", "torino", "--qubits", "3", "--reps", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    backend = QPABackend("aer_noisy:torino")
    used = sorted(set(measured_qubits(backend.isa_circuit(ansatz(3, 2)))))
    assert [r["qubit"] for r in report["qubits"]] == used
    target = backend.connect().target
    for row in report["qubits"]:
        assert row["t1_us"] == pytest.approx(target.qubit_properties[row["qubit"]].t1 * 1e6)
        assert row["readout_error"] == pytest.approx(target["measure"][(row["qubit"],)].error)
    assert len(report["couplers"]) == 2 and all(c["gate"] == "cz" for c in report["couplers"])
    errors = [c["error"] for c in report["couplers"]]
    assert report["medians"]["2q_error"] == pytest.approx(float(np.median(errors)))
    assert main(["noise", "show", "fake_brisbane", "--qubits", "2", "--reps", "1", "--noise-scale", "2"]) == 0
    text = capsys.readouterr().out
    assert "noise x2" in text and "| whole device |" in text and "ecr" in text


def test_cli_show_bad_input_is_one_line(capsys):
    assert main(["noise", "show", "statevector"]) == 2
    assert main(["noise", "show", "fake_manila", "--noise-scale", "-2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("qpa: error:") == 2


@pytest.mark.parametrize("spec", ["statevector", "ideal", "ibm:fake_manila", "ibm:ibm_torino"])
def test_cli_show_of_a_backend_without_a_noise_model_names_what_it_accepts(capsys, spec):
    """Before: 'statevector' was read as a fake device and answered with close fake names."""
    assert main(["noise", "show", spec]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" not in err and err.count("\n") == 1
    assert f"{spec!r} simulates none" in err and "a snapshot name (" in err and "brisbane" in err
    assert "a snapshot file" in err and "fake_<device>" in err and "aer_noisy:<any of these>" in err
    assert ("qpa noise snapshot ibm:<device>" in err) == spec.startswith("ibm:")


def test_cli_show_refuses_a_scale_the_backend_refuses(capsys):
    """Before: --noise-scale 1000 printed a readout error of 1.0 and a 2q error of 7.43."""
    words = ["noise", "show", "brisbane", "--qubits", "2", "--reps", "1", "--noise-scale"]
    assert main([*words, "1000"]) == 2
    err = capsys.readouterr().err
    backend = QPABackend("aer_noisy:brisbane", noise_scale=1000)
    with pytest.raises(InputError) as info:
        backend.probabilities(ansatz(2, 1), np.zeros(2))
    assert err.strip() == f"qpa: error: {info.value}"
    limit = float(str(info.value).rsplit("<= ", 1)[1])
    assert main([*words, f"{limit * 0.99:.6g}"]) == 0  # the largest scale allowed is shown
    assert main([*words, f"{limit * 1.01:.6g}"]) == 2


def test_cli_snapshot_output_paths(tmp_path, capsys, monkeypatch):
    """-o a directory, a path under a file, an unwritable folder, an existing file: one line
    each, naming the problem and the fix, and nothing written."""
    folder = tmp_path / "folder.json"
    folder.mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["-o", str(tmp_path)], "is a directory; a snapshot is written to a file: give its name"),
        (["-o", str(folder), "--force"], "is a directory"),
        (["-o", str(tmp_path / "afile" / "x.json")], "is a file, not a folder"),
    ]
    for args, message in cases:
        assert main(["noise", "snapshot", "fake_manila", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder.json"]
    assert list(folder.iterdir()) == []

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("qpa_qiskit.noise.snapshot.atomic_write", refuse)
    assert main(["noise", "snapshot", "fake_manila", "-o", str(tmp_path / "ro.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the snapshot" in err and "Permission denied" in err and "folder you can write" in err
    monkeypatch.undo()
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert main(["noise", "snapshot", "fake_manila", "-o", str(existing)]) == 2
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert existing.read_text() == "{}"
    assert main(["noise", "snapshot", "fake_manila", "-o", str(existing), "--force"]) == 0
    assert Snapshot.load(existing).name == "fake_manila"


def test_cli_snapshot_of_ibm_device_without_an_account(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["noise", "snapshot", "ibm:ibm_torino", "-o", "t.json"]) == 2
    err = capsys.readouterr().err
    assert "save_account" in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()


def test_readme_noise_commands_run_as_written(tmp_path, capsys, monkeypatch):
    """The `qpa noise` block of the Noise section (docs/backends.md), line by line, then its
    printed hint."""
    from pages import code_blocks, page
    from pages import section as page_section

    section = page_section(page("docs/backends.md"), "## Noise:")
    block = code_blocks(section, "bash")[0].code
    lines = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert len(lines) >= 3 and all(words[0] == "qpa" for words in lines)
    monkeypatch.chdir(tmp_path)
    for words in lines:
        assert main(words[1:]) == 0, words
    out = capsys.readouterr().out
    hint = out.split("--backend ", 1)[1].split()[0]
    assert hint == "aer_noisy:my_models/kyiv.json" and f"--backend {hint}" in section
    probabilities = QPABackend(hint).probabilities(ansatz(2, 1), np.zeros(2))
    assert probabilities.shape == (1, 4) and "noise x2" in out


def test_the_noise_models_folder_documents_itself_and_its_command_works(tmp_path, monkeypatch):
    """noise_models/ of the checkout: the documented place for a user's snapshots. Its README's
    offline command, run as written from the folder's parent, makes a snapshot that a backend
    then finds by name."""
    readme = Path(__file__).resolve().parents[2] / "noise_models" / "README.md"
    text = readme.read_text()
    lines = [line for line in text.splitlines() if line.startswith("qpa noise snapshot")]
    commands = [line.split("#")[0].strip() for line in lines]
    offline = [c for c in commands if "fake_" in c]
    assert offline == ["qpa noise snapshot fake_kyiv -o noise_models/kyiv.json"]
    assert "aer_noisy:kyiv" in text and "$QPA_NOISE_MODELS" in text
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QPA_NOISE_MODELS", raising=False)
    assert main(shlex.split(offline[0])[1:]) == 0
    assert QPABackend("aer_noisy:kyiv").connect().num_qubits == 127
    assert Snapshot.load(tmp_path / "noise_models" / "kyiv.json").name == "fake_kyiv"
