"""What a shot costs on an IBM Quantum device, in QPU seconds: the one cost model of qpa-qiskit.

Why it exists: on IBM Quantum every shot is paid for (the Open Plan's 10 QPU minutes per 28
days, or by the second), and a QPA training step is many shots. The projection is IBM's own
baseline formula for the usage of a job (the "Workload usage" guide, :data:`USAGE_GUIDE`)::

    QPU seconds of a job = overhead per job + executions x (rep_delay + init + circuit duration)

* ``executions``: parameter sets x shots per set;
* ``rep_delay``: the Sampler option ``execution.rep_delay`` if set, else the device's
  ``default_rep_delay`` (its configuration: 250 us on the fake Torino and Brisbane);
* ``init``: the qubit reset before each shot (``execution.init_qubits``, on by default), the
  device target's ``reset`` duration;
* ``circuit duration``: the ISA circuit's longest path through the target's gate and
  measurement durations (``QuantumCircuit.estimate_duration``, as the guide's example does);
* the overhead per job: the guide's "approximately 2s per sub-job" (:data:`JOB_OVERHEAD_SECONDS`),
  counted once per job (a job the service splits into more sub-jobs costs more).

Everything is read from the device object itself, fake (``ibm:fake_<device>``) or real. A
device that lacks a figure gets a documented assumption (:data:`ASSUMED_REP_DELAY`,
:data:`ASSUMED_CIRCUIT_SECONDS`), and :attr:`ShotTiming.assumed` says which, so the caller
prints it. Error suppression and mitigation options that add instructions or circuits
(twirling, dynamical decoupling) are not modelled. The model has not been checked against the
usage of a live job from this project (its machines have no network and no account).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit

from ..circuits import measured_qubits
from .layout import pass_manager
from .mitigation import calibration_circuit

#: IBM's "Workload usage" guide: the usage formula, the ~2 s overhead per sub-job, the default
#: rep_delay of 250 us and the typical circuit length of 50-100 us used below
USAGE_GUIDE = "https://quantum.cloud.ibm.com/docs/guides/estimate-job-run-time"
#: IBM's plans overview: the Open Plan's "up to 10 minutes quantum time per 28-day rolling window"
PLANS_GUIDE = "https://quantum.cloud.ibm.com/docs/guides/plans-overview"
#: IBM's execution modes guide: "Session execution mode is not supported in the Open Plan"
MODES_GUIDE = "https://quantum.cloud.ibm.com/docs/guides/execution-modes"

JOB_OVERHEAD_SECONDS = 2.0  # per job (USAGE_GUIDE: "approximately 2s per sub-job")
ASSUMED_REP_DELAY = 250e-6  # USAGE_GUIDE: "250 microseconds on most IBM Quantum backends"
ASSUMED_CIRCUIT_SECONDS = 100e-6  # USAGE_GUIDE: a typical circuit is "between 50-100 microseconds"
OPEN_PLAN_SECONDS = 600.0  # PLANS_GUIDE: 10 QPU minutes per 28-day rolling window


@dataclass(frozen=True)
class ShotTiming:
    """The QPU seconds of one shot of one circuit on one device, and what was assumed."""

    rep_delay: float
    init: float
    circuit: float
    assumed: tuple[str, ...] = ()

    @property
    def per_shot(self) -> float:
        return self.rep_delay + self.init + self.circuit

    def seconds(self, executions: int, jobs: int) -> float:
        """QPU seconds of `jobs` jobs of `executions` executions in all (the model above)."""
        return executions * self.per_shot + jobs * JOB_OVERHEAD_SECONDS

    def describe(self) -> str:
        """One line: the terms of a shot, in microseconds."""
        return (
            f"rep_delay {self.rep_delay * 1e6:.1f} us + init {self.init * 1e6:.1f} us + circuit "
            f"{self.circuit * 1e6:.1f} us = {self.per_shot * 1e6:.1f} us per shot"
        )


def _execution_options(runtime_options: dict[str, Any] | None) -> dict[str, Any]:
    execution = (runtime_options or {}).get("execution")
    return execution if isinstance(execution, dict) else {}


def _positive(value: Any) -> float | None:
    """A finite positive (or zero) duration in seconds, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def rep_delay(device: Any, runtime_options: dict[str, Any] | None = None) -> tuple[float, str | None]:
    """(seconds, what was assumed or None): the Sampler's ``execution.rep_delay``, else the
    device's ``default_rep_delay`` (attribute or configuration), else :data:`ASSUMED_REP_DELAY`."""
    given = _positive(_execution_options(runtime_options).get("rep_delay"))
    if given is not None:
        return given, None
    value = _positive(getattr(device, "default_rep_delay", None))
    if value is None:
        configuration = getattr(device, "configuration", None)
        try:
            config = configuration() if callable(configuration) else None
        except Exception:  # a device whose configuration cannot be read: assumed below
            config = None
        value = _positive(getattr(config, "default_rep_delay", None))
    if value is None:
        name = getattr(device, "name", "the device")
        return ASSUMED_REP_DELAY, (
            f"{name} states no default_rep_delay: assumed {ASSUMED_REP_DELAY * 1e6:.0f} us ({USAGE_GUIDE})"
        )
    return value, None


def _duration(target: Any, name: str, qubits: tuple[int, ...]) -> float | None:
    try:
        props = target[name][qubits]
    except (KeyError, TypeError):
        return None
    return None if props is None else _positive(props.duration)


def shot_timing(
    device: Any, isa: QuantumCircuit, runtime_options: dict[str, Any] | None = None
) -> ShotTiming:
    """The :class:`ShotTiming` of the ISA circuit `isa` on `device` (its target's durations),
    with the run's runtime Sampler options (``execution.rep_delay``, ``execution.init_qubits``)."""
    delay, delay_assumed = rep_delay(device, runtime_options)
    assumed = [delay_assumed] if delay_assumed else []
    target = getattr(device, "target", None)
    name = getattr(device, "name", "the device")
    try:
        circuit = _positive(isa.estimate_duration(target, unit="s")) if target is not None else None
    except Exception:  # QiskitError: an instruction without a duration in the target
        circuit = None
    if circuit is None:
        circuit = ASSUMED_CIRCUIT_SECONDS
        assumed.append(
            f"{name}'s target gives no duration for every instruction of the circuit: assumed "
            f"{ASSUMED_CIRCUIT_SECONDS * 1e6:.0f} us per shot ({USAGE_GUIDE})"
        )
    init = 0.0
    if _execution_options(runtime_options).get("init_qubits", True):
        resets = (
            [_duration(target, "reset", (q,)) for q in measured_qubits(isa)] if target is not None else []
        )
        known = [r for r in resets if r is not None]
        init = max(known) if known and len(known) == len(resets) else 0.0
        if not known or len(known) < len(resets):
            assumed.append(
                f"{name}'s target gives no reset duration for the circuit's qubits: init taken as 0"
            )
    return ShotTiming(delay, init, circuit, tuple(assumed))


def calibration_isa(device: Any, isa: QuantumCircuit) -> QuantumCircuit:
    """The readout calibration circuit (``mitigation="m3"``) as it runs: on the physical qubits
    that `isa` measures, transpiled for `device` as the backend transpiles it."""
    qubits = tuple(measured_qubits(isa))
    return pass_manager(device, 1, 0, qubits).run(calibration_circuit(len(qubits)))


def open_plan_share(seconds: float) -> float:
    """`seconds` as a share of the Open Plan's 10 QPU minutes (1.0: all of them)."""
    return seconds / OPEN_PLAN_SECONDS
