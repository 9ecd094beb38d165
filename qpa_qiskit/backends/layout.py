"""Where a circuit's qubits land on a device, and what those physical qubits are like.

Why a noise-aware layout by default: at ``optimization_level=1`` Qiskit's preset keeps the
trivial layout (circuit qubit i on physical qubit i) whenever it needs no swaps, and a QPA
ladder on qubits 0-6 of a heavy-hex device needs none. Those qubits are chosen by their
numbers, not their quality: Brisbane's qubit 5 reads out wrong 18.6% of the time, Torino's
qubit 0 16.7%. Qiskit's level-2 layout stage instead runs ``VF2Layout`` first, which looks
for an embedding that needs no swaps and scores each candidate by the target's error rates
(gate errors on the qubits and couplers used, and readout errors), keeping the least erring
one; only if none is found does it fall back to ``SabreLayout`` and routing, after which its
routing stage runs ``VF2PostLayout``, which moves the routed circuit to the least erring
qubits of the same shape. That is what a hardware user would run. ``"noise_aware"`` is the
level-1 preset with the level-2 layout and routing stages put in place of its own
(``StagedPassManager`` stages are replaceable; both are needed: level 1's routing stage runs
``VF2PostLayout`` only after its own trivial-layout check, so with level 2's layout stage
alone a routed circuit would keep Sabre's qubits whatever their errors). The physical qubits
change; the gate optimisation stays that of level 1. At levels 2 and 3 the preset's own
stages already do this. ``VF2Layout`` runs with a fixed call limit and no random shuffling
(``seed=-1`` in the preset), so the choice is deterministic.

Measured on the 7-qubit, L = 8 RY ansatz at 8 random angle sets, exact noisy distributions
(PTM engine): the median TVD from the ideal distribution falls from 0.318 (``"preset"``, qubits
0-6) to 0.187 on the Brisbane snapshot and from 0.224 to 0.142 on Torino's.

``"preset"`` keeps the optimization level's own stage (the behaviour before the option), and a
sequence of physical qubits is Qiskit's ``initial_layout``.
"""

from __future__ import annotations

from typing import Any

from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager

from ..errors import InputError

#: the preset level whose layout stage scores layouts by the target's error rates
SCORED_LEVEL = 2
ONE_QUBIT_GATE = "sx"  # the calibrated 1q gate of IBM devices (rz is virtual, error 0)


def pass_manager(
    device: Any, optimization_level: int, seed_transpiler: int, layout: str | tuple[int, ...]
) -> Any:
    """Qiskit's preset pass manager for `device` at `optimization_level`, with the layout
    stage `layout` asks for (module docstring); `layout` is checked by
    :func:`qpa_qiskit.validate.layout`."""
    if not isinstance(layout, str):
        return generate_preset_pass_manager(
            optimization_level=optimization_level,
            backend=device,
            seed_transpiler=seed_transpiler,
            initial_layout=list(layout),
        )
    pm = generate_preset_pass_manager(
        optimization_level=optimization_level, backend=device, seed_transpiler=seed_transpiler
    )
    if layout == "noise_aware" and optimization_level < SCORED_LEVEL:
        scored = generate_preset_pass_manager(
            optimization_level=SCORED_LEVEL, backend=device, seed_transpiler=seed_transpiler
        )
        pm.layout, pm.routing = scored.layout, scored.routing
    return pm


def check_physical(layout: tuple[int, ...], circuit: QuantumCircuit, device: Any, name: str) -> None:
    """InputError unless the physical qubits `layout` fit `circuit` and exist on `device`."""
    if len(layout) != circuit.num_qubits:
        raise InputError(
            f"layout names {len(layout)} physical qubit(s) {list(layout)} for a circuit of "
            f"{circuit.num_qubits} qubits; give one physical qubit per circuit qubit"
        )
    size = getattr(device, "num_qubits", None)
    outside = [q for q in layout if size is not None and q >= size]
    if outside:
        raise InputError(
            f"layout places circuit qubits on physical qubit(s) {outside}, and {name} has qubits "
            f"0-{size - 1}; give qubits of the device"
        )


def qubit_row(target: Any, q: int) -> dict[str, Any]:
    """Physical qubit `q` of `target`: T1, T2 (microseconds), readout and sx errors."""
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


def placement(isa: QuantumCircuit, target: Any) -> dict[str, Any]:
    """Where an ISA circuit runs on `target` and how good those places are.

    ``{"layout": physical qubit of each circuit qubit, "qubits": one :func:`qubit_row` per
    physical qubit an instruction touches, "couplers": [{"gate", "qubits", "error"}] for each
    two-qubit gate used}``, the errors as the target states them."""
    used = sorted(
        {isa.find_bit(q).index for inst in isa.data if inst.operation.name != "barrier" for q in inst.qubits}
    )
    layout = isa.layout.final_index_layout() if isa.layout is not None else used
    couplers: dict[tuple[str, tuple[int, ...]], float | None] = {}
    for inst in isa.data:
        if len(inst.qubits) == 2 and inst.operation.name != "barrier":
            qubits = tuple(isa.find_bit(q).index for q in inst.qubits)
            props = target[inst.operation.name].get(qubits)
            couplers[(inst.operation.name, qubits)] = None if props is None else props.error
    return {
        "layout": list(layout),
        "qubits": [qubit_row(target, q) for q in used],
        "couplers": [{"gate": g, "qubits": list(q), "error": e} for (g, q), e in couplers.items()],
    }
