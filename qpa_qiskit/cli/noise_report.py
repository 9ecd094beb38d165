"""The noise a circuit meets on a device: ``qpa noise show``.

Why per circuit: a 127-qubit device's medians say little about the seven qubits a QPA ansatz
is laid out on. The report transpiles the circuit as the backend does, then reads, for the
physical qubits and couplers it uses, the calibration the noise model is built from (after
``noise_scale``): 1q and 2q gate errors, T1, T2 and readout errors, with their medians, and
the device-wide medians beside them. It reads the device's public ``Target`` only.

Why here, beside :mod:`qpa_qiskit.cli.noise`, which prints it: it reads an ``aer_noisy``
backend, so it sits above the backends, while :mod:`qpa_qiskit.noise` (noise as data) sits
below them.
"""

from __future__ import annotations

import statistics
from typing import Any

from qiskit import QuantumCircuit

from ..backends.aer_noisy import AerNoisyFamily
from ..errors import InputError

ONE_QUBIT_GATE = "sx"  # the calibrated 1q gate of IBM devices (rz is virtual, error 0)


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _qubit_row(target, q: int) -> dict[str, Any]:
    props = (target.qubit_properties or [None] * target.num_qubits)[q]
    measure = target["measure"].get((q,)) if "measure" in target.operation_names else None
    gate = target[ONE_QUBIT_GATE].get((q,)) if ONE_QUBIT_GATE in target.operation_names else None
    return {
        "qubit": q,
        "t1_us": None if props is None or props.t1 is None else props.t1 * 1e6,
        "t2_us": None if props is None or props.t2 is None else props.t2 * 1e6,
        "readout_error": None if measure is None else measure.error,
        "sx_error": None if gate is None else gate.error,
    }


def noise_report(backend: Any, circuit: QuantumCircuit) -> dict[str, Any]:
    """What the noise of an ``aer_noisy`` `backend` is on the qubits `circuit` uses.

    Returns ``{"device", "settings", "layout", "qubits": [...], "couplers": [...],
    "medians": {...}, "device_medians": {...}}``; times in microseconds.
    """
    if not isinstance(backend.family, AerNoisyFamily):
        raise InputError(f"qpa noise show needs an aer_noisy backend, not {backend.name!r}")
    backend.family.check_circuit_scale(circuit)  # the backend's own check: the same refusal
    isa = backend.isa_circuit(circuit)
    used = sorted(
        {isa.find_bit(q).index for inst in isa.data if inst.operation.name != "barrier" for q in inst.qubits}
    )
    layout = isa.layout.final_index_layout() if isa.layout is not None else used
    target = backend.family.noise_device().target  # scaled as simulated
    couplers: dict[tuple[str, tuple[int, ...]], float | None] = {}
    for inst in isa.data:
        if len(inst.qubits) == 2 and inst.operation.name != "barrier":
            qubits = tuple(isa.find_bit(q).index for q in inst.qubits)
            props = target[inst.operation.name].get(qubits)
            couplers[(inst.operation.name, qubits)] = None if props is None else props.error
    qubits = [_qubit_row(target, q) for q in used]
    everything = [_qubit_row(target, q) for q in range(target.num_qubits)]
    two_q = [
        props.error
        for name in target.operation_names
        if target.operation_from_name(name).num_qubits == 2 and name not in ("barrier",)
        for props in (target[name].values() if target[name] else [])
        if props is not None
    ]

    def medians(rows, pairs) -> dict[str, float | None]:
        out = {key: _median(r[key] for r in rows) for key in ("t1_us", "t2_us", "readout_error", "sx_error")}
        out["2q_error"] = _median(pairs)
        return out

    return {
        "device": backend.name,
        "settings": backend.family.settings.describe(),
        "layout": list(layout),
        "qubits": qubits,
        "couplers": [{"gate": g, "qubits": list(q), "error": e} for (g, q), e in couplers.items()],
        "medians": medians(qubits, list(couplers.values())),
        "device_medians": medians(everything, two_q),
    }


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = [
        f"{report['device']} ({report['settings']}): circuit qubits -> physical qubits {report['layout']}",
        "",
        "| physical qubit | T1 (us) | T2 (us) | readout error | sx error |",
        "|---|---|---|---|---|",
    ]
    for r in report["qubits"]:
        lines.append(f"| {r['qubit']} | {_cell(r['t1_us'], '.1f')} | {_cell(r['t2_us'], '.1f')} | "
                     f"{_cell(r['readout_error'], '.4f')} | {_cell(r['sx_error'], '.2e')} |")  # fmt: skip
    lines += ["", "| 2q gate | qubits | error |", "|---|---|---|"]
    for c in report["couplers"]:
        lines.append(f"| {c['gate']} | {c['qubits']} | {_cell(c['error'], '.2e')} |")
    lines += ["", "| median | T1 (us) | T2 (us) | readout error | sx error | 2q error |", "|" + "---|" * 6]
    for label, m in (("qubits used", report["medians"]), ("whole device", report["device_medians"])):
        lines.append(f"| {label} | {_cell(m['t1_us'], '.1f')} | {_cell(m['t2_us'], '.1f')} | "
                     f"{_cell(m['readout_error'], '.4f')} | {_cell(m['sx_error'], '.2e')} | "
                     f"{_cell(m['2q_error'], '.2e')} |")  # fmt: skip
    return "\n".join(lines)
