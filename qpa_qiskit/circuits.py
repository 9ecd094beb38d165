"""The parameterised circuit whose measurement probabilities become adapter weights, and what
every backend reads of a circuit before it runs it.

:func:`ansatz` builds the QPA circuit. The helpers below are the circuit facts the backends
(:mod:`qpa_qiskit.backends`) and the primitives share, none of them tied to a device or an
engine: which qubit each classical bit measures (:func:`measured_qubits`), subcircuits
inlined (:func:`flatten`), whether the state stays pure (:func:`non_unitary`), a circuit made
to measure (:func:`with_measurements`), whether it is native to a target (:func:`is_isa`),
Pauli labels read (:func:`pauli_terms`) and a hash of what it does (:func:`fingerprint`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Measure, ParameterVector

from . import validate
from .choices import ENTANGLEMENTS, ROTATIONS
from .errors import InputError


def ansatz(
    n_qubits: int,
    reps: int,
    rotation: str = "ry",
    entanglement: str = "linear",
) -> QuantumCircuit:
    """QPA ansatz: `reps` layers of one trainable rotation per qubit and a CNOT ladder.

    The state starts in |0...0> with no data encoding; the circuit ends with a measurement
    of every qubit, qubit i into classical bit i. Parameters form one ParameterVector
    ``θ`` of length n_qubits * reps, layer-major: θ[r * n_qubits + q] rotates qubit q in
    layer r. ``rotation`` is "ry" or "rx" (QPA studies compare RY+CNOT with RX+CNOT under
    noise); ``entanglement`` is "linear" (CNOT q -> q+1) or "circular" (the ladder closed
    by CNOT n-1 -> 0, for n > 2).
    """
    n_qubits = validate.positive_int(n_qubits, "n_qubits")
    reps = validate.positive_int(reps, "reps")
    validate.one_of(rotation, "rotation", ROTATIONS)
    validate.one_of(entanglement, "entanglement", ENTANGLEMENTS)
    theta = ParameterVector("θ", n_qubits * reps)
    qc = QuantumCircuit(n_qubits, n_qubits, name=f"qpa_{rotation}_{entanglement}_{n_qubits}x{reps}")
    for r in range(reps):
        for q in range(n_qubits):
            getattr(qc, rotation)(theta[r * n_qubits + q], q)
        for q in range(n_qubits - 1):
            qc.cx(q, q + 1)
        if entanglement == "circular" and n_qubits > 2:
            qc.cx(n_qubits - 1, 0)
    qc.barrier()
    qc.measure(range(n_qubits), range(n_qubits))
    return qc


def measured_qubits(circuit: QuantumCircuit) -> list[int]:
    """Qubit measured into each classical bit; all measurements must be final."""
    qubit_of: dict[int, int] = {}
    done: set[int] = set()
    for inst in circuit.data:
        qs = [circuit.find_bit(q).index for q in inst.qubits]
        if isinstance(inst.operation, Measure):
            c = circuit.find_bit(inst.clbits[0]).index
            if c in qubit_of:
                raise InputError(f"classical bit {c} is measured twice; measure each bit once")
            qubit_of[c] = qs[0]
            done.add(qs[0])
        elif inst.operation.name != "barrier" and done.intersection(qs):
            raise InputError(
                f"{inst.operation.name!r} acts on a qubit after its measurement; "
                "only final measurements are supported"
            )
    missing = [c for c in range(circuit.num_clbits) if c not in qubit_of]
    if missing:
        raise InputError(f"classical bits {missing} are never measured; measure every bit once")
    return [qubit_of[c] for c in range(circuit.num_clbits)]


#: instructions kept as they are by :func:`flatten` (the engines and Aer know them)
_NOT_COMPOSITE = frozenset({"measure", "reset", "barrier", "delay"})


def _composite(inst: Any) -> bool:
    """An instruction that is only a name for its definition: a subcircuit added with
    ``append`` (``QuantumCircuit.to_instruction``), not a gate, measurement or reset."""
    op = inst.operation
    return (
        not isinstance(op, Gate)
        and op.name not in _NOT_COMPOSITE
        and not inst.is_control_flow()
        and getattr(op, "definition", None) is not None
    )


def flatten(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit with every composite instruction (a subcircuit added with ``append``:
    ``qc.append(real_amplitudes(n), qubits)``, a QNN's feature map) replaced by its
    definition, recursively: the same gates, measurements and resets as the ``compose``d
    circuit, so they are classified (unitary or not, measured where) and simulated as those.
    Gates (``to_gate``) stay: they are unitary, and the transpiler unrolls them. The circuit
    itself when it has no composite instruction."""
    if not any(_composite(inst) for inst in circuit.data):
        return circuit
    out = circuit.copy_empty_like()
    _inline(out, circuit, list(circuit.qubits), list(circuit.clbits))
    return out


def _inline(out: QuantumCircuit, circuit: QuantumCircuit, qubits: list, clbits: list) -> None:
    """Append `circuit`'s instructions to `out` on `qubits`/`clbits`, composites expanded."""
    qmap = dict(zip(circuit.qubits, qubits, strict=True))
    cmap = dict(zip(circuit.clbits, clbits, strict=True))
    for inst in circuit.data:
        inner_q = [qmap[q] for q in inst.qubits]
        inner_c = [cmap[c] for c in inst.clbits]
        if _composite(inst):
            definition = inst.operation.definition
            out.global_phase += definition.global_phase
            _inline(out, definition, inner_q, inner_c)
        else:
            out.append(inst.operation, inner_q, inner_c, copy=False)


def non_unitary(circuit: QuantumCircuit) -> str | None:
    """The name of the first instruction that makes the state mixed (a reset, a channel, control
    flow), None if the circuit is gates, barriers, delays and measurements only."""
    for inst in flatten(circuit).data:
        op = inst.operation
        if inst.is_control_flow() or not (isinstance(op, Gate) or op.name in ("measure", "barrier", "delay")):
            return op.name
    return None


NO_MEASUREMENTS = (
    "the circuit has classical bits but no measurements: measure into them (every bit once), "
    "or build it without classical bits to measure every qubit"
)


def with_measurements(circuit: QuantumCircuit, *, estimation: bool = False) -> QuantumCircuit:
    """The circuit itself if it measures; otherwise a copy measuring every qubit.

    A circuit with classical bits but no measurements has no outcome to give probabilities
    of (InputError); for expectation values (``estimation``) its bits do not matter, as for
    Qiskit's and Aer's estimators, and every qubit is measured into new bits instead."""
    if any(isinstance(i.operation, Measure) for i in circuit.data):
        return circuit
    if circuit.num_clbits:
        if not estimation or any(inst.clbits for inst in circuit.data):
            raise InputError(NO_MEASUREMENTS)
        bare = QuantumCircuit(circuit.qubits, *circuit.qregs, global_phase=circuit.global_phase)
        for inst in circuit.data:
            bare.append(inst.operation, inst.qubits, copy=False)
        return bare.measure_all(inplace=False)
    return circuit.measure_all(inplace=False)


def is_isa(circuit: QuantumCircuit, target: Any) -> bool:
    """True when every instruction of the circuit is native to `target` on its qubits (barriers
    aside) and the circuit fits the target: such a circuit runs as given, not transpiled."""
    if target.num_qubits is not None and circuit.num_qubits > target.num_qubits:
        return False
    for inst in circuit.data:
        name = inst.operation.name
        if name == "barrier":
            continue
        if inst.is_control_flow():
            return False
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not target.instruction_supported(name, qargs):
            return False
    return True


def pauli_terms(labels: list[str], n_qubits: int) -> list[dict[int, int]]:
    """Pauli labels (Qiskit order: the last character is qubit 0) -> {qubit: 1 X, 2 Y, 3 Z}
    for the qubits that carry a non-identity Pauli; InputError for a malformed label."""
    terms = []
    for label in labels:
        if not isinstance(label, str) or len(label) != n_qubits or set(label) - set("IXYZ"):
            raise InputError(
                f"a Pauli observable is a string of {n_qubits} characters from I, X, Y, Z "
                f"(one per qubit of the circuit, qubit 0 last), got {label!r}"
            )
        terms.append({q: "IXYZ".index(c) for q, c in enumerate(reversed(label)) if c != "I"})
    return terms


def _param_key(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:  # a matrix (a unitary gate) or another unhashable parameter
        return value.tobytes() if isinstance(value, np.ndarray) else repr(value)


def fingerprint(circuit: QuantumCircuit) -> int:
    """A hash of what a circuit does: every instruction's name, parameters, qubits and bits.

    Cheap next to a simulation (microseconds per instruction); it changes when the circuit
    is edited in place, which an ``id()`` does not.
    """
    return hash(
        (
            circuit.num_qubits,
            circuit.num_clbits,
            tuple(
                (
                    inst.operation.name,
                    tuple(_param_key(p) for p in inst.operation.params),
                    inst.qubits,
                    inst.clbits,
                )
                for inst in circuit.data
            ),
        )
    )
