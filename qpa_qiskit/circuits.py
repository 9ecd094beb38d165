"""The parameterised circuit whose measurement probabilities become adapter weights."""

from __future__ import annotations

from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

from . import validate
from .choices import ENTANGLEMENTS, ROTATIONS


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
