"""Ideal circuits on the statevector, with exact adjoint gradients.

Why: training on the ``statevector`` backend needs the vector-Jacobian product of the outcome
probabilities, and the parameter-shift rule gets it from 2P+1 simulations. The adjoint
method gets it from about three passes over the circuit: the state forward, then the state
and the upstream gradient (as a diagonal observable) backwards together, undoing each gate
with its inverse (a unitary needs no stored states), and, at each rotation, the shift rule
applied locally: dL/da = 2 Re <lambda| dU/da |psi>.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Measure, ParameterExpression
from qiskit.quantum_info import Operator

from .ptm.compile import IGNORED_INSTRUCTIONS, Angles, UnsupportedCircuit

# exp(-i a G / 2) with G a Pauli string (p and u1 are rz up to a global phase)
_ROTATIONS = {"rx", "ry", "rz", "p", "u1", "rxx", "ryy", "rzz", "rzx"}


def _generator(name: str, gate_cls) -> np.ndarray:
    """G with gate(a) = cos(a/2) I - i sin(a/2) G, checked at two angles."""
    if name in ("p", "u1"):
        # lazy: a qiskit submodule (import time), only on this path
        from qiskit.circuit.library import RZGate

        gate_cls = RZGate
    g = 1j * Operator(gate_cls(np.pi)).data
    eye = np.eye(len(g))
    for a in (0.7, -2.3):
        expected = np.cos(a / 2) * eye - 1j * np.sin(a / 2) * g
        if not np.allclose(expected, Operator(gate_cls(a)).data, atol=1e-12):
            raise UnsupportedCircuit(f"gate {name!r} is not a Pauli rotation")
    return g


def _layout(axes: tuple[int, ...], matrix: np.ndarray, n: int) -> tuple[tuple[int, ...] | None, np.ndarray]:
    """How to apply `matrix` to a little-endian state of n qubits as one product.

    Neighbouring qubits (1 or 2) become the middle axis of a (left, 2^k, right) view, with
    the matrix reordered to that axis's bit order; others return None (general path).
    """
    if len(axes) == 1:
        q = axes[0]
        return (2 ** (n - 1 - q), 2, 2**q), matrix
    lo, hi = sorted(axes)
    if len(axes) == 2 and hi - lo == 1:
        if axes == (hi, lo):  # the first qarg is the high bit of the view: swap the bits
            perm = [0, 2, 1, 3]
            matrix = matrix[np.ix_(perm, perm)]
        return (2 ** (n - 1 - hi), 4, 2**lo), matrix
    return None, matrix


def _apply(matrix: np.ndarray, psi: np.ndarray, axes: tuple[int, ...], shape, n: int) -> np.ndarray:
    """`matrix` on the qubits `axes` of the flat little-endian state psi."""
    if shape is not None:
        return np.matmul(matrix, psi.reshape(shape)).reshape(-1)
    k = len(axes)
    tensor = matrix.reshape([2] * (2 * k))  # (out q_{k-1}, ..., out q_0, in q_{k-1}, ..., in q_0)
    targets = [n - 1 - a for a in reversed(axes)]  # the axes of psi viewed as (q_{n-1}, ..., q_0)
    out = np.tensordot(tensor, psi.reshape([2] * n), axes=(list(range(k, 2 * k)), targets))
    return np.moveaxis(out, list(range(k)), targets).reshape(-1)


class StatevectorProgram:
    """One ideal ISA circuit compiled for the statevector: probabilities and their vjp."""

    def __init__(self, circuit: QuantumCircuit) -> None:
        qindex = {q: i for i, q in enumerate(circuit.qubits)}
        cindex = {c: i for i, c in enumerate(circuit.clbits)}
        gates = [inst for inst in circuit.data if inst.operation.name not in IGNORED_INSTRUCTIONS]
        active = sorted({qindex[q] for inst in gates for q in inst.qubits})
        local = {q: i for i, q in enumerate(active)}
        n = self.n_qubits = len(active)
        self.parameters = list(circuit.parameters)
        self._angles = Angles(self.parameters)
        self.bytes_moved = 0  # state bytes read and written so far, each operand once
        self.measured: dict[int, int] = {}
        # (qubits, view shape or None, matrix or generator G in the view's bit order, angle row)
        self._ops: list[tuple[tuple[int, ...], tuple[int, ...] | None, np.ndarray, int | None]] = []
        cache: dict = {}
        for inst in circuit.data:
            op = inst.operation
            if op.name in IGNORED_INSTRUCTIONS:
                continue
            axes = tuple(local[qindex[q]] for q in inst.qubits)
            if any(a in self.measured.values() for a in axes):
                raise UnsupportedCircuit("operations after a measurement")
            if isinstance(op, Measure):
                self.measured[cindex[inst.clbits[0]]] = axes[0]
                continue
            if getattr(op, "condition", None) is not None or op.name in (
                "if_else",
                "for_loop",
                "while_loop",
                "switch_case",
                "reset",
            ):
                raise UnsupportedCircuit(f"non-unitary or control-flow instruction {op.name!r}")
            params = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
            if params:
                if op.name not in _ROTATIONS or len(op.params) != 1:
                    raise UnsupportedCircuit(f"parameterised gate {op.name!r}")
                key = ("rot", op.name)
                if key not in cache:
                    cache[key] = _generator(op.name, type(op))
                shape, g = _layout(axes, cache[key], n)
                self._ops.append((axes, shape, g, self._angles.add(op.params[0])))
                continue
            key = (op.name, tuple(float(p) for p in op.params))
            if key not in cache:
                try:
                    cache[key] = Operator(op).data
                except Exception as exc:
                    raise UnsupportedCircuit(f"non-unitary instruction {op.name!r}") from exc
            shape, m = _layout(axes, cache[key], n)
            self._ops.append((axes, shape, m, None))
        if not self.measured or sorted(self.measured) != list(range(len(circuit.clbits))):
            raise UnsupportedCircuit("every classical bit must be measured once")
        self.n_clbits = len(circuit.clbits)
        # psi viewed as (q_{n-1}, ..., q_0): trace out the unmeasured qubits, then order the
        # measured ones as (clbit n-1, ..., clbit 0), so a flat index is little-endian in clbits
        measured_q = set(self.measured.values())
        self._traced = tuple(n - 1 - q for q in range(n) if q not in measured_q)
        kept = [q for q in reversed(range(n)) if q in measured_q]  # remaining axes, high qubit first
        self._order = [kept.index(self.measured[c]) for c in reversed(range(self.n_clbits))]
        self._observable_shape = [2 if q in measured_q else 1 for q in reversed(range(n))]

    def _matrices(self, angles: np.ndarray) -> list[np.ndarray]:
        out = []
        for _axes, _shape, m, row in self._ops:
            if row is None:
                out.append(m)
            else:
                a = angles[row]
                out.append(np.cos(a / 2) * np.eye(len(m)) - 1j * np.sin(a / 2) * m)
        return out

    def _run(self, angles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        psi = np.zeros(2**self.n_qubits, dtype=complex)
        psi[0] = 1.0
        mats = self._matrices(angles)
        for (axes, shape, _, _), u in zip(self._ops, mats, strict=True):
            psi = _apply(u, psi, axes, shape, self.n_qubits)
        self.bytes_moved += len(self._ops) * 2 * psi.nbytes
        return psi, mats

    def _probabilities(self, psi: np.ndarray) -> np.ndarray:
        p = (psi.real**2 + psi.imag**2).reshape([2] * self.n_qubits)
        if self._traced:
            p = p.sum(axis=self._traced)
        return np.transpose(p, self._order).reshape(-1)

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Exact outcome probabilities (B, 2^n_clbits) for parameter values (B, P)."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        angles = self._angles.evaluate(values)
        return np.stack([self._probabilities(self._run(angles[:, b])[0]) for b in range(values.shape[0])])

    def vjp(self, values: np.ndarray) -> tuple[np.ndarray, Callable]:
        """Exact p(θ) (2^n_clbits,) and ``pullback(upstream) -> (upstream · dp/dθ (P,), stats)``,
        by the adjoint method; the pullback starts from the final state and undoes the gates."""
        values = np.asarray(values, dtype=float).reshape(-1)
        n = self.n_qubits
        angles = self._angles.evaluate(values[None, :])[:, 0]
        final, mats = self._run(angles)
        probs = self._probabilities(final)

        def pullback(upstream: np.ndarray) -> tuple[np.ndarray, dict]:
            upstream = np.asarray(upstream, dtype=float).reshape(-1)
            if upstream.shape != (2**self.n_clbits,):
                raise ValueError(f"upstream must have shape ({2**self.n_clbits},), got {upstream.shape}")
            # L = sum_x upstream[outcome(x)] |psi_x|^2: a diagonal observable O on the full state
            diagonal = np.transpose(upstream.reshape([2] * self.n_clbits), np.argsort(self._order))
            psi = final
            lam = (diagonal.reshape(self._observable_shape) * psi.reshape([2] * n)).reshape(-1)  # O psi
            grad_angles = np.zeros(len(angles))
            for (axes, shape, m, row), u in zip(reversed(self._ops), reversed(mats), strict=True):
                inverse = u.conj().T
                psi = _apply(inverse, psi, axes, shape, n)  # the state before this gate
                if row is not None:
                    # dU/da = -sin(a/2)/2 I - i cos(a/2)/2 G
                    a = angles[row]
                    g_psi = _apply(m, psi, axes, shape, n)
                    d_psi = -0.5 * np.sin(a / 2) * psi - 0.5j * np.cos(a / 2) * g_psi
                    grad_angles[row] += 2.0 * np.real(np.vdot(lam, d_psi))
                    self.bytes_moved += 7 * psi.nbytes  # G psi, d psi, the product with lam
                lam = _apply(inverse, lam, axes, shape, n)
                self.bytes_moved += 4 * psi.nbytes
            return self._angles.pullback(grad_angles, values), {"passes": 3}

        return probs, pullback
