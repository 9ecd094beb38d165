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

from ..backends.layout import qubit_row
from ..errors import InputError


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def noise_report(backend: Any, circuit: QuantumCircuit) -> dict[str, Any]:
    """What the noise of an ``aer_noisy`` `backend` is on the qubits `circuit` uses.

    Returns ``{"device", "settings", "layout_setting", "layout", "qubits": [...], "couplers": [...],
    "medians": {...}, "device_medians": {...}}``; times in microseconds.
    """
    if not backend.family.has_noise_model:
        raise InputError(f"qpa noise show needs an aer_noisy backend, not {backend.name!r}")
    backend.family.check_circuit_scale(circuit)  # the backend's own check: the same refusal
    target = backend.family.noise_device().target  # scaled as simulated
    placed = backend.placement(circuit, target)
    qubits, couplers = placed["qubits"], placed["couplers"]
    everything = [qubit_row(target, q) for q in range(target.num_qubits)]
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
        "settings": backend.noise_settings.describe(),
        "layout_setting": _setting(backend.layout),
        "layout": placed["layout"],
        "qubits": qubits,
        "couplers": couplers,
        "medians": medians(qubits, [c["error"] for c in couplers]),
        "device_medians": medians(everything, two_q),
    }


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _setting(layout: str | tuple[int, ...]) -> str:
    return layout if isinstance(layout, str) else ",".join(map(str, layout))


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = [
        f"{report['device']} ({report['settings']}, layout {report['layout_setting']}): circuit qubits -> "
        f"physical qubits {report['layout']}",
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
