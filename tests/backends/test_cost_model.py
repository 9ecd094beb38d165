"""The device cost model (qpa_qiskit.backends.cost): a shot's QPU seconds read from the device
itself (rep delay, reset, the ISA circuit's durations), the runtime options that change them,
and what is assumed, and said, where a device lacks a figure."""

from types import SimpleNamespace

import pytest
from qiskit import QuantumCircuit

from qpa_qiskit import QPABackend, ansatz
from qpa_qiskit.backends.core import measured_qubits
from qpa_qiskit.backends.cost import (
    ASSUMED_CIRCUIT_SECONDS,
    ASSUMED_REP_DELAY,
    JOB_OVERHEAD_SECONDS,
    OPEN_PLAN_SECONDS,
    ShotTiming,
    calibration_isa,
    open_plan_share,
    shot_timing,
)
from qpa_qiskit.backends.devices import fake_device


@pytest.fixture(scope="module")
def torino():
    backend = QPABackend("ibm:fake_torino", shots_factor=20)
    return backend, backend.connect(), backend.isa_circuit(ansatz(4, 2))


def test_a_shot_is_rep_delay_plus_reset_plus_the_isa_circuits_longest_path(torino):
    _, device, isa = torino
    timing = shot_timing(device, isa)
    assert timing.rep_delay == device.configuration().default_rep_delay == 250e-6
    resets = [device.target["reset"][(q,)].duration for q in measured_qubits(isa)]
    assert timing.init == max(resets) > 0
    assert timing.circuit == isa.estimate_duration(device.target) > device.target["measure"][(0,)].duration
    assert timing.assumed == ()
    assert timing.per_shot == timing.rep_delay + timing.init + timing.circuit
    assert timing.seconds(1000, 3) == pytest.approx(1000 * timing.per_shot + 3 * JOB_OVERHEAD_SECONDS)
    assert "us per shot" in timing.describe()


def test_the_sampler_options_rep_delay_and_init_qubits_change_a_shot(torino):
    _, device, isa = torino
    timing = shot_timing(device, isa, {"execution": {"rep_delay": 100e-6, "init_qubits": False}})
    assert timing.rep_delay == 100e-6 and timing.init == 0 and timing.assumed == ()


def test_a_device_without_rep_delay_or_durations_gets_stated_assumptions():
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.measure([0, 1], [0, 1])
    bare = SimpleNamespace(name="bare_device", configuration=lambda: SimpleNamespace())
    timing = shot_timing(bare, circuit)
    assert (timing.rep_delay, timing.circuit, timing.init) == (ASSUMED_REP_DELAY, ASSUMED_CIRCUIT_SECONDS, 0)
    said = " | ".join(timing.assumed)
    assert "bare_device states no default_rep_delay: assumed 250 us" in said
    assert "gives no duration for every instruction of the circuit: assumed 100 us" in said
    assert "no reset duration" in said and "estimate-job-run-time" in said


def test_the_calibration_circuit_runs_on_the_qubits_the_circuit_measures(torino):
    _, device, isa = torino
    calibration = calibration_isa(device, isa)
    assert measured_qubits(calibration) == measured_qubits(isa)
    assert shot_timing(device, calibration).circuit < shot_timing(device, isa).circuit


def test_the_open_plan_is_ten_minutes():
    assert OPEN_PLAN_SECONDS == 600 and open_plan_share(300) == 0.5
    assert ShotTiming(1e-3, 0, 0).seconds(600_000, 0) == pytest.approx(OPEN_PLAN_SECONDS)
    assert fake_device("fake_brisbane").configuration().default_rep_delay == 250e-6
