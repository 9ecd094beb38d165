"""Exact batched noisy simulation in the Pauli-transfer-matrix (PTM) picture.

Why this exists: a QNN step needs the 2^N probabilities of the same circuit for the forward
parameter set and all 2P parameter-shifted sets, under a device noise model. Aer's
density-matrix method simulates each of those 2P+1 circuits from scratch, one noisy gate at a
time, and that is where the time of a noisy training step goes. This module computes exactly
the same channel (the same gates, the same `QuantumError` after each gate, the same readout
errors, in the same order) but

* works on real Pauli coefficients (a density matrix on n qubits is 4^n real numbers),
* fuses every run of gates that acts on at most two qubits into one 16x16 matrix, so a whole
  circuit is a few dozen dense matrix products instead of hundreds of noisy gate updates,
* evaluates all parameter sets as a *tree*: a parameter set that equals the first one up to
  some gate shares its prefix; it is branched off where it first differs. For parameter
  shift this halves the work, and every fused block is applied to all live branches in one
  matrix product, on a view of one tensor in a fixed layout (no transposes),
* keeps, after the last gate on a qubit, only the Pauli coefficients the measurement reads.

The result agrees with Aer's density-matrix simulation of the same ISA circuit to rounding
(the test-suite checks 1e-10). Circuits or noise models it cannot represent exactly raise
`UnsupportedCircuit` when compiled, so the caller can fall back to Aer.

The noise comes as a :class:`~qpa_qiskit.noise.NoiseDescription`, never as an Aer
``NoiseModel``: :mod:`qpa_qiskit.noise` is the one module that reads Aer's internals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Delay, Measure, ParameterExpression
from qiskit.quantum_info import DensityMatrix, Operator, SuperOp

from ..noise import NoiseDescription
from .checkpoints import MIN_SLOTS, BufferPool, reverse_sweep

_PAULIS = np.array(
    [
        [[1, 0], [0, 1]],
        [[0, 1], [1, 0]],
        [[0, -1j], [1j, 0]],
        [[1, 0], [0, -1]],
    ],
    dtype=complex,
)
# Gates whose unitary is cos(a/2) I - i sin(a/2) G for a fixed Hermitian involution G
# (up to a global phase, which a channel does not see).
_ROTATION_GATES = {"rx", "ry", "rz", "p", "rxx", "ryy", "rzz", "rzx", "u1"}
IGNORED_INSTRUCTIONS = {"barrier"}
# Fused blocks act on at most two qubits: `embed` lifts one- and two-qubit PTMs only.
_MAX_BLOCK_QUBITS = 2


class UnsupportedCircuit(ValueError):
    """The circuit or noise model has a feature the PTM engine does not represent exactly."""


def size_text(n: float) -> str:
    """Bytes for people: '512 MiB', '1.5 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


class MemoryBudgetError(ValueError):
    """A memory budget too small for even the least a computation needs (the message says how much)."""

    def __init__(self, message: str, need: int) -> None:
        super().__init__(message)
        self.need = need  # bytes: the least the computation can run in


def pauli_basis(k: int) -> np.ndarray:
    """Pauli matrices on k qubits, index sum_i p_i 4^(k-1-i) for the i-th qarg.

    The first qarg is the least significant qubit of the matrix (Qiskit's convention), so
    the basis element for (p_0, p_1) is kron(P[p_1], P[p_0]).
    """
    if k == 1:
        return _PAULIS.copy()
    basis = np.einsum("iab,jcd->ijcadb", _PAULIS, _PAULIS).reshape(16, 4, 4)
    return basis


def channel_ptm(evolve, k: int) -> np.ndarray:
    """PTM R_ij = Tr(P_i E(P_j)) / 2^k of the linear map `evolve` on k qubits."""
    basis = pauli_basis(k)
    images = np.stack([evolve(b) for b in basis])
    return np.real(np.einsum("iab,jba->ij", basis, images)) / 2**k


def unitary_ptm(u: np.ndarray) -> np.ndarray:
    k = int(np.log2(u.shape[0]))
    basis = pauli_basis(k)
    return np.real(np.einsum("iab,bc,jce,ae->ij", basis, u, basis, u.conj())) / 2**k


def superop_ptm(channel: SuperOp) -> np.ndarray:
    k = len(channel.input_dims())
    return channel_ptm(lambda m: DensityMatrix(m).evolve(channel).data, k)


def embed(matrix: np.ndarray, positions: tuple[int, ...], width: int) -> np.ndarray:
    """Lift a PTM acting on block positions `positions` to a block of `width` qubits."""
    k = len(positions)
    if k == width:
        if positions == tuple(range(width)):
            return matrix
        # width 2, positions (1, 0): swap the two Pauli indices on both sides
        t = matrix.reshape(4, 4, 4, 4).transpose(1, 0, 3, 2)
        return t.reshape(16, 16)
    # one qubit inside a two-qubit block
    eye = np.eye(4)
    if positions == (0,):
        return np.kron(matrix, eye)
    return np.kron(eye, matrix)


@dataclass
class _Rotation:
    """A parameterised Pauli rotation: R(a) = a0 + cos(a) a1 + sin(a) a2 in block space."""

    angle: int  # row of the program's angle table
    a0: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    noise: np.ndarray | None  # fixed channel applied after the gate, already embedded

    def embedded(self, positions: tuple[int, ...], width: int) -> _Rotation:
        return _Rotation(
            self.angle,
            embed(self.a0, positions, width),
            embed(self.a1, positions, width),
            embed(self.a2, positions, width),
            None if self.noise is None else embed(self.noise, positions, width),
        )

    def matrices(self, angles: np.ndarray) -> np.ndarray:
        c = np.cos(angles)[:, None, None]
        s = np.sin(angles)[:, None, None]
        m = self.a0 + c * self.a1 + s * self.a2
        if self.noise is not None:
            m = self.noise @ m
        return m

    def derivative(self, angle: float) -> np.ndarray:
        """dR/da = -sin(a) a1 + cos(a) a2 = (R(a + pi/2) - R(a - pi/2)) / 2: the shift rule, exactly."""
        m = -np.sin(angle) * self.a1 + np.cos(angle) * self.a2
        return m if self.noise is None else self.noise @ m


@dataclass
class _Block:
    qubits: tuple[int, ...]
    factors: list = field(default_factory=list)  # np.ndarray (fixed) or _Rotation

    def add(self, positions: tuple[int, ...], factor) -> None:
        if isinstance(factor, _Rotation):
            factor = factor.embedded(positions, len(self.qubits))
        elif isinstance(factor, np.ndarray):
            factor = embed(factor, positions, len(self.qubits))
            if self.factors and isinstance(self.factors[-1], np.ndarray):
                self.factors[-1] = factor @ self.factors[-1]
                return
        self.factors.append(factor)

    def widen(self, qubits: tuple[int, ...]) -> None:
        """Re-express the block on `qubits` (a superset of its own)."""
        positions = tuple(qubits.index(q) for q in self.qubits)
        widened = []
        for f in self.factors:
            if isinstance(f, np.ndarray):
                widened.append(embed(f, positions, len(qubits)))
            else:
                widened.append(f.embedded(positions, len(qubits)))
        self.qubits = qubits
        self.factors = widened

    @property
    def angle_rows(self) -> list[int]:
        return [f.angle for f in self.factors if isinstance(f, _Rotation)]

    def matrices(self, angle_values: np.ndarray) -> np.ndarray:
        """Block PTMs for G sets of angles, shape (G, D, D); angle_values is (G, n_rot)."""
        g = angle_values.shape[0]
        dim = 4 ** len(self.qubits)
        out = np.broadcast_to(np.eye(dim), (g, dim, dim))
        col = 0
        for f in self.factors:
            if isinstance(f, np.ndarray):
                out = f @ out
            else:
                out = f.matrices(angle_values[:, col]) @ out
                col += 1
        return out

    def derivatives(self, angles: np.ndarray) -> list[np.ndarray]:
        """d(block PTM)/d(angle) for each rotation of the block, at one set of its angles."""
        rotations = [i for i, f in enumerate(self.factors) if isinstance(f, _Rotation)]
        fixed = [
            f if isinstance(f, np.ndarray) else f.matrices(np.array([angles[rotations.index(i)]]))[0]
            for i, f in enumerate(self.factors)
        ]
        out = []
        for k, i in enumerate(rotations):
            d = np.eye(fixed[0].shape[1])
            for m, factor in enumerate(fixed):
                d = (self.factors[i].derivative(angles[k]) if m == i else factor) @ d
            out.append(d)
        return out


def _rotation_terms(gate_name: str, gate_cls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a0, a1, a2) with PTM(gate(a)) = a0 + cos(a) a1 + sin(a) a2.

    Exact for gates exp(-i a G / 2) with G a Pauli string: the PTM entries are then
    trigonometric polynomials of degree one in a.
    """
    if gate_name in ("p", "u1"):
        # lazy: a qiskit submodule (import time), only on this path
        from qiskit.circuit.library import RZGate

        gate_cls = RZGate  # equal up to a global phase

    def ptm(a: float) -> np.ndarray:
        return unitary_ptm(Operator(gate_cls(a)).data)

    r0, r_half, r_pi = ptm(0.0), ptm(np.pi / 2), ptm(np.pi)
    a0, a1 = (r0 + r_pi) / 2, (r0 - r_pi) / 2
    a2 = r_half - a0
    for a in (0.7, -2.3):
        if not np.allclose(a0 + np.cos(a) * a1 + np.sin(a) * a2, ptm(a), atol=1e-12):
            raise UnsupportedCircuit(f"gate {gate_name!r} is not a Pauli rotation")
    return a0, a1, a2


class Angles:
    """Angles of all parameterised gates as functions of the parameter values.

    Affine angles (all the transpiler makes of plain parameters: θ, θ + π, -θ/2) are a
    constant and coefficients, evaluated for every parameter set at once. Any other expression
    (a feature map's 2(π - x0)(π - x1)) is evaluated set by set, and its derivatives likewise:
    the engines stay exact for it, only a little slower per set.
    """

    def __init__(self, parameters: list) -> None:
        self.parameters = list(parameters)
        self.index = {p: i for i, p in enumerate(self.parameters)}
        self.constants: list[float] = []
        self.coefficients: list[dict[int, float]] = []
        #: row -> (expression, its parameters, their derivative expressions) of non-affine rows
        self.general: dict[int, tuple[ParameterExpression, list, list]] = {}

    def add(self, expr: ParameterExpression) -> int:
        row = len(self.constants)
        params = sorted(expr.parameters, key=self.index.__getitem__)
        grads = [expr.gradient(p) for p in params]
        self.constants.append(0.0)
        self.coefficients.append({})
        if any(isinstance(g, ParameterExpression) and g.parameters for g in grads):
            self.general[row] = (expr, params, grads)
            return row
        self.coefficients[row] = {self.index[p]: _real(g) for p, g in zip(params, grads, strict=True)}
        self.constants[row] = _real(expr.bind({p: 0.0 for p in params}))
        return row

    def pullback(self, grad_angles: np.ndarray, values: np.ndarray) -> np.ndarray:
        """dL/d(parameters) (P,) from dL/d(angles) (n_angles,) at one parameter set (P,):
        the transpose of the angles' Jacobian there."""
        grad = np.zeros(len(self.parameters))
        for row, coeffs in enumerate(self.coefficients):
            for col, c in coeffs.items():
                grad[col] += c * grad_angles[row]
        for row, (_, params, grads) in self.general.items():
            binding = self._binding(params, values)
            for p, g in zip(params, grads, strict=True):
                slope = _real(g.bind(binding)) if isinstance(g, ParameterExpression) else _real(g)
                grad[self.index[p]] += slope * grad_angles[row]
        return grad

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        """values (B, P) -> angles (n_angles, B)."""
        out = np.empty((len(self.constants), values.shape[0]))
        for row, (const, coeffs) in enumerate(zip(self.constants, self.coefficients, strict=False)):
            acc = np.full(values.shape[0], const)
            for col, c in coeffs.items():
                acc = acc + c * values[:, col]
            out[row] = acc
        for row, (expr, params, _) in self.general.items():
            out[row] = [_real(expr.bind(self._binding(params, v))) for v in values]
        return out

    def _binding(self, params: list, values: np.ndarray) -> dict:
        return {p: float(values[self.index[p]]) for p in params}


def _real(value) -> float:
    """A bound angle or slope as a float; UnsupportedCircuit if it is not real."""
    number = complex(value)
    if abs(number.imag) > 1e-12:
        raise UnsupportedCircuit(f"an angle or its derivative is complex ({number})")
    return number.real


class PTMProgram:
    """One ISA circuit compiled against one noise description, ready to run many times.

    Args:
        circuit: an ISA circuit (physical qubits) with final measurements.
        noise: what the noise model applies (:func:`qpa_qiskit.noise.describe_noise`);
            None for an ideal circuit.
        device: the torch device the states live on ("cpu", "cuda", "cuda:1"); results come
            back as numpy arrays either way.
    """

    def __init__(
        self, circuit: QuantumCircuit, noise: NoiseDescription | None = None, device: str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        if noise is not None and not isinstance(noise, NoiseDescription):
            raise TypeError(
                f"noise must be a NoiseDescription (qpa_qiskit.noise.describe_noise(noise_model)) "
                f"or None, got {type(noise).__name__}"
            )
        self.circuit = circuit
        self.noise = noise or NoiseDescription()
        if self.noise.has_noise_passes and any(isinstance(i.operation, Delay) for i in circuit.data):
            # Aer runs the noise model's custom passes (relaxation during delays) on circuits
            # that contain delays; those add Kraus channels this engine leaves to Aer.
            raise UnsupportedCircuit("delays under a noise model with noise passes")
        self.parameters = list(circuit.parameters)
        self._angles = Angles(self.parameters)
        self._spare_states: list[torch.Tensor] = []  # buffers of the last gradient, for the next
        #: bytes the state operations have read and written so far (each operand once): what
        #: a memory-bound lower bound on the time divides by the bandwidth
        self.bytes_moved = 0
        self._compile(circuit)

    # ----------------------------------------------------------------- compilation
    def _error(self, name: str, qubits: tuple[int, ...]):
        """The QuantumError Aer applies after `name` on physical `qubits`, or None."""
        error = self.noise.gate_error(name, qubits)
        if error is not None and error.num_qubits != len(qubits):
            raise UnsupportedCircuit(f"{error.num_qubits}-qubit error on a {len(qubits)}-qubit {name}")
        return error

    def _compile(self, circuit: QuantumCircuit) -> None:
        qindex = {q: i for i, q in enumerate(circuit.qubits)}
        cindex = {c: i for i, c in enumerate(circuit.clbits)}
        active: list[int] = []
        for inst in circuit.data:
            if inst.operation.name in IGNORED_INSTRUCTIONS:
                continue
            for q in inst.qubits:
                if qindex[q] not in active:
                    active.append(qindex[q])
        active.sort()
        if not active:
            raise UnsupportedCircuit("the circuit acts on no qubit")
        local = {q: i for i, q in enumerate(active)}
        self.n_qubits = len(active)
        self.physical_qubits = active
        self.measured: dict[int, int] = {}  # clbit -> local qubit
        ptm_cache: dict = {}
        open_blocks: list[_Block] = []
        self.blocks: list[_Block] = []

        def close(block: _Block) -> None:
            open_blocks.remove(block)
            self.blocks.append(block)

        def place(qs: tuple[int, ...], factor) -> None:
            touching = [b for b in open_blocks if set(b.qubits) & set(qs)]
            union = set(qs).union(*[b.qubits for b in touching])
            if len(union) > _MAX_BLOCK_QUBITS:
                # blocks reaching outside qs end here; those inside qs are absorbed
                for b in [b for b in touching if not set(b.qubits) <= set(qs)]:
                    close(b)
                touching = [b for b in touching if set(b.qubits) <= set(qs)]
                union = set(qs)
            block = _Block(tuple(sorted(union)))
            for b in touching:
                # open blocks are on disjoint qubits and commute: concatenate them
                b.widen(block.qubits)
                block.factors.extend(b.factors)
                open_blocks.remove(b)
            open_blocks.append(block)
            block.add(tuple(block.qubits.index(q) for q in qs), factor)

        for inst in circuit.data:
            op = inst.operation
            name = op.name
            if name in IGNORED_INSTRUCTIONS:
                continue
            qs_phys = tuple(qindex[q] for q in inst.qubits)
            qs = tuple(local[q] for q in qs_phys)
            if any(q in self.measured.values() for q in qs):
                raise UnsupportedCircuit("operations after a measurement")
            if isinstance(op, Measure):
                if self._error("measure", qs_phys) is not None:
                    raise UnsupportedCircuit("quantum errors on measurements")
                clbit = cindex[inst.clbits[0]]
                if clbit in self.measured:
                    raise UnsupportedCircuit("a classical bit measured twice")
                self.measured[clbit] = qs[0]
                continue
            if len(qs) > 2:
                raise UnsupportedCircuit(f"{len(qs)}-qubit instruction {name!r}")
            if getattr(op, "condition", None) is not None or op.name in (
                "if_else",
                "for_loop",
                "while_loop",
                "switch_case",
            ):
                raise UnsupportedCircuit(f"control flow ({name})")
            error = self._error(name, qs_phys)
            noise = None
            if error is not None:
                key = ("err", name, qs_phys)
                if key not in ptm_cache:
                    ptm_cache[key] = superop_ptm(error.to_quantumchannel())
                noise = ptm_cache[key]
            params = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
            if params:
                if name not in _ROTATION_GATES or len(op.params) != 1:
                    raise UnsupportedCircuit(f"parameterised gate {name!r}")
                key = ("rot", name)
                if key not in ptm_cache:
                    ptm_cache[key] = _rotation_terms(name, type(op))
                a0, a1, a2 = ptm_cache[key]
                row = self._angles.add(op.params[0])
                place(qs, _Rotation(row, a0, a1, a2, noise))
                continue
            key = ("gate", name, tuple(float(p) for p in op.params), qs_phys)
            if key not in ptm_cache:
                try:
                    ideal = unitary_ptm(Operator(op).data)
                except Exception as exc:
                    raise UnsupportedCircuit(f"non-unitary instruction {name!r}") from exc
                ptm_cache[key] = ideal if noise is None else noise @ ideal
            place(qs, ptm_cache[key])
        for b in list(open_blocks):
            close(b)
        if sorted(self.measured) != list(range(len(circuit.clbits))):
            raise UnsupportedCircuit("some classical bits are never measured")
        self.n_clbits = len(circuit.clbits)
        self.readout = readout_matrices(self.noise, [active[self.measured[c]] for c in range(self.n_clbits)])
        self._block_rows = [b.angle_rows for b in self.blocks]
        # Light cone of the measurement: after the last block on a qubit only the Pauli
        # coefficients the measurement reads are kept (I and Z if measured, else I).
        self._select, self._sizes = self._light_cone({q: (0, 3) for q in self.measured.values()})
        self._cones: dict[tuple, tuple[list, list]] = {}

    def _light_cone(self, reads: dict[int, tuple[int, ...]]) -> tuple[list, list]:
        """(select, sizes): the rows of each block's PTM to compute, and the state's axis sizes
        before each block and after the last, when the end of the circuit reads the Pauli
        components `reads[q]` (sorted, 0 = I first) of local qubit q and only I of the others."""
        last = {q: j for j, b in enumerate(self.blocks) for q in b.qubits}
        keeps = [
            {q: list(reads.get(q, (0,))) for q in b.qubits if last[q] == j} for j, b in enumerate(self.blocks)
        ]
        select = []
        for b, keep in zip(self.blocks, keeps, strict=True):
            per_qubit = [keep.get(q, [0, 1, 2, 3]) for q in b.qubits]
            if len(per_qubit) == 1:
                select.append(per_qubit[0])
            else:
                select.append([4 * i + k for i in per_qubit[0] for k in per_qubit[1]])
        sizes = [4] * self.n_qubits
        all_sizes = [tuple(sizes)]
        for keep in keeps:
            for q, components in keep.items():
                sizes[q] = len(components)
            all_sizes.append(tuple(sizes))
        return select, all_sizes

    # ----------------------------------------------------------------- execution
    def memory_bytes(self, n_sets: int) -> int:
        """Peak state memory of :meth:`probabilities` walking `n_sets` rows of the branch tree
        at once: two ping-pong buffers of n_sets states, and the two states a chunk starts
        from and hands on."""
        return (2 * n_sets + 2) * self.state_bytes()

    def rows_within(self, memory_budget: int) -> int:
        """How many rows of the branch tree fit in `memory_budget` bytes (see :meth:`memory_bytes`)."""
        return max(0, (memory_budget // self.state_bytes() - 2) // 2)

    def _buffers(self, size: int) -> list[torch.Tensor]:
        # Kept between calls: fresh multi-GB allocations cost more in page faults than the
        # arithmetic of a small circuit.
        cached = getattr(self, "_buffer_pair", None)
        if cached is None or cached[0].numel() < size:
            self._buffer_pair = None
            cached = [torch.empty(size, dtype=torch.float64, device=self.device) for _ in range(2)]
            self._buffer_pair = cached
        return cached

    def probabilities(
        self, values: np.ndarray, readout: bool = True, memory_budget: int | None = None
    ) -> np.ndarray:
        """Exact noisy probabilities (B, 2^n_clbits) for parameter values (B, P).

        ``readout=False`` leaves out the readout errors: the distribution of the state
        right before measurement, as Aer's ``save_probabilities`` reports it.

        The B sets form a tree: each branches off the first where its angles first differ.
        Within ``memory_budget`` bytes (default: no limit) the branches are walked in chunks
        of as many rows as fit, in order of their branch points; each chunk starts from the
        first set's state saved where the chunk's first branch begins, so the first set is
        recomputed only from there, and memory stays within the budget for any B.
        """
        if not self.measured:
            raise UnsupportedCircuit("the circuit measures nothing")
        return self._walk(
            values,
            memory_budget,
            (self._select, self._sizes),
            2**self.n_clbits,
            lambda state, sizes: self._measure(state, sizes, readout),
        )

    def expectation_values(
        self, values: np.ndarray, terms: list[dict[int, int]], memory_budget: int | None = None
    ) -> np.ndarray:
        """Exact expectation values (B, K) of K Pauli strings on the state the circuit prepares.

        Each term maps a physical qubit of the circuit to its Pauli (1 = X, 2 = Y, 3 = Z;
        qubits not named carry I). In the Pauli picture a state's coefficient of a Pauli
        string IS its expectation value, so the end of the circuit reads them directly; the
        light cone keeps just the components the terms name. Gate errors and relaxation
        apply; readout errors do not (they act on measurements, and there are none).
        """
        local = {p: i for i, p in enumerate(self.physical_qubits)}
        reads: dict[int, set[int]] = {}
        vanish = np.zeros(len(terms), dtype=bool)  # X or Y on a qubit no gate touches: |0> gives 0
        for k, term in enumerate(terms):
            for q, pauli in term.items():
                if q in local:
                    reads.setdefault(local[q], {0}).add(pauli)
                elif pauli in (1, 2):
                    vanish[k] = True
        key = tuple(sorted((q, tuple(sorted(c))) for q, c in reads.items()))
        if key not in self._cones:
            self._cones[key] = self._light_cone(dict(key))
        select, sizes = self._cones[key]
        final = [sorted(reads.get(q, (0,))) for q in range(self.n_qubits)]  # the last axis sizes

        def read(state: torch.Tensor, _sizes: list[int]) -> np.ndarray:
            out = np.zeros((state.shape[0], len(terms)))
            for k, term in enumerate(terms):
                if vanish[k]:
                    continue
                index = [slice(None)]
                for q in range(self.n_qubits):
                    pauli = term.get(self.physical_qubits[q], 0)
                    index.append(final[q].index(pauli))
                out[:, k] = state[tuple(index)].cpu().numpy()
            return out

        return self._walk(values, memory_budget, (select, sizes), len(terms), read)

    def _walk(self, values, memory_budget, cone, width, read) -> np.ndarray:
        """Walk the branch tree of the parameter sets (B, P) within the memory budget and
        `read` (B, width) from each final state; `cone` is a light cone (select, sizes)."""
        values = np.atleast_2d(np.asarray(values, dtype=float))
        n_sets = values.shape[0]
        angles = self._angles.evaluate(values)  # (A, B)
        birth, order = self._plan(angles)
        per_chunk = len(order)
        if memory_budget is not None:
            per_chunk = min(per_chunk, self.rows_within(memory_budget))
            least = min(2, len(order))  # the first set, and one branch beside it if there are any
            if per_chunk < least:
                need = self.memory_bytes(least)
                raise MemoryBudgetError(
                    f"a memory budget of {size_text(memory_budget)} cannot hold the noisy simulation of "
                    f"{self.n_qubits} qubits: it needs at least {size_text(need)} "
                    f"({size_text(self.state_bytes())} a state)",
                    need,
                )
        branches = order[1:]
        step = max(1, per_chunk - 1)
        groups = [branches[i : i + step] for i in range(0, len(branches), step)] or [[]]
        out = np.empty((n_sets, width))
        start, initial = 0, self._initial_state()
        for c, group in enumerate(groups):
            save_at = int(birth[groups[c + 1][0]]) if c + 1 < len(groups) else None
            state, sizes, saved = self._run(angles, [0, *group], birth, start, initial, save_at, cone)
            probs = read(state, sizes)
            if c == 0:
                out[:] = probs[0]  # sets equal to the first follow it
            out[group] = probs[1:]
            start, initial = save_at, saved
        #: how the last call walked the tree, so its memory can be checked
        self.last_walk = {"chunks": len(groups), "rows": min(per_chunk, len(order)), "sets": n_sets}
        return out

    def _plan(self, angles: np.ndarray):
        """Birth block of each parameter set: the first block where its angles differ."""
        n_sets = angles.shape[1]
        birth = np.full(n_sets, -1)
        for j, rows in enumerate(self._block_rows):
            if not rows:
                continue
            differs = np.any(angles[rows] != angles[rows][:, :1], axis=0)
            new = differs & (birth < 0)
            new[0] = False
            birth[new] = j
        order = [0, *sorted(np.nonzero(birth >= 0)[0].tolist(), key=lambda b: (birth[b], b))]
        return birth, order

    def _run(
        self,
        angles: np.ndarray,
        rows: list[int],
        birth: np.ndarray,
        start: int,
        initial: torch.Tensor,
        save_at: int | None = None,
        cone: tuple[list, list] | None = None,
    ) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        """Walk the blocks from `start` for the sets `rows` (the first set, then branches in
        order of birth); returns (state, axis sizes, first set's state before `save_at`).

        `initial` is the first set's state before block `start`. The state is one tensor
        (rows, q_0, ..., q_{n-1}) in a fixed layout: live sets are the leading rows, so a set
        branching off is appended in place, and a block on neighbouring qubits is a
        (batched) matrix product on a view, with no transposes. A qubit's axis shrinks to
        the coefficients the measurement reads (I and Z, or I alone) after the last block
        that touches it.
        """
        n = self.n_qubits
        select_rows, cone_sizes = cone or (self._select, self._sizes)
        sizes = list(cone_sizes[start])
        buffers = self._buffers(len(rows) * 4**n)
        buffers[0][: math.prod(sizes)].copy_(initial.reshape(-1))
        current = 0
        n_rows = 1
        births = np.bincount([int(birth[r]) for r in rows[1:]], minlength=len(self.blocks))
        saved = None
        for j in range(start, len(self.blocks)):
            block = self.blocks[j]
            if j == save_at:
                saved = buffers[current][: math.prod(sizes)].clone()
            n_new = n_rows + int(births[j])
            size = math.prod(sizes)
            x = buffers[current][: n_new * size].view(n_new, *sizes)
            if n_new > n_rows:  # new branches start from the forward set's state
                x[n_rows:].copy_(x[:1].expand(n_new - n_rows, *sizes))
                self.bytes_moved += 2 * (n_new - n_rows) * size * 8
            new_sizes = list(cone_sizes[j + 1])
            out = buffers[1 - current][: n_new * math.prod(new_sizes)].view(n_new, *new_sizes)
            block_rows = self._block_rows[j]
            if block_rows:
                key = angles[block_rows][:, rows[:n_new]].T  # (n_new, rotations in the block)
                uniq, inverse = np.unique(key, axis=0, return_inverse=True)
                inverse = inverse.reshape(-1)
                mats = block.matrices(uniq)
            else:
                mats = block.matrices(np.empty((1, 0)))
                inverse = np.zeros(n_new, dtype=int)
            select = select_rows[j]
            base = inverse[0]
            self._apply(mats[base][select], x, out, block.qubits, sizes)
            for slot in np.nonzero(inverse != base)[0].tolist():
                self._apply(
                    mats[inverse[slot]][select], x[slot : slot + 1], out[slot : slot + 1], block.qubits, sizes
                )
            current = 1 - current
            sizes = new_sizes
            n_rows = n_new
        state = buffers[current][: n_rows * math.prod(sizes)].view(n_rows, *sizes)
        return state, sizes, saved

    # ----------------------------------------------------------------- gradients
    def state_bytes(self) -> int:
        """Bytes of one state (the largest, before the light cone shrinks it)."""
        return 8 * 4**self.n_qubits

    def vjp_memory(self, slots: int) -> int:
        """Bytes :meth:`vjp` holds with `slots` state buffers: the buffers, the backward
        observable (two), and the temporaries of one non-neighbouring block (two)."""
        return (slots + 4) * self.state_bytes()

    def vjp(self, values: np.ndarray, memory_budget: int | None = None) -> tuple[np.ndarray, Callable]:
        """Exact probabilities p(θ), and the function that maps dL/dp to dL/dθ.

        The adjoint method: the state goes forward once; the upstream gradient goes backward
        once as an observable (through the readout confusion, then the transpose of each
        block's PTM); at each block the derivative of its PTM (the shift rule, exactly) is
        contracted between the state before the block and the observable after it. When
        every state fits in ``memory_budget`` bytes (default: no limit) the forward pass keeps
        them for the backward one; otherwise the backward pass recomputes them from
        checkpoints within the budget (:mod:`.checkpoints`).

        Args:
            values: one parameter set (P,), in ``self.parameters`` order.
            memory_budget: bytes; at least ``vjp_memory(MIN_SLOTS)``.

        Returns:
            (p (2^n_clbits,), pullback), ``pullback(upstream)`` -> (gradient (P,), stats: the
            state buffers held and the forward steps run). ``upstream`` is dL/dp for the
            probabilities with readout errors; the pullback may be called once.
        """
        values = np.asarray(values, dtype=float).reshape(-1)
        angles = self._angles.evaluate(values[None, :])[:, 0]
        mats, derivs = [], []
        for j, block in enumerate(self.blocks):
            a = angles[self._block_rows[j]]
            select = self._select[j]
            mats.append(self._tensor(block.matrices(a[None, :])[0][select]))
            derivs.append([self._tensor(d[select]) for d in block.derivatives(a)])
        n_steps = len(self.blocks)
        slots = n_steps + 1  # every state before a block, and the final one
        if memory_budget is not None:
            fits = memory_budget // self.state_bytes() - 4
            if fits < min(MIN_SLOTS, slots):
                need = self.vjp_memory(min(MIN_SLOTS, slots))
                raise MemoryBudgetError(
                    f"a memory budget of {size_text(memory_budget)} cannot hold the adjoint sweep of "
                    f"{self.n_qubits} qubits: it needs at least {size_text(need)} "
                    f"({need // self.state_bytes()} states of {size_text(self.state_bytes())})",
                    need,
                )
            slots = min(slots, fits)
        keep_all = slots == n_steps + 1
        size = 4**self.n_qubits
        spare = self._spare_states
        del spare[max(slots, MIN_SLOTS) :]  # never more than this budget holds

        def make() -> torch.Tensor:
            # states of an earlier step are reused: fresh gigabytes cost page faults each step
            return spare.pop() if spare else torch.empty(size, dtype=torch.float64, device=self.device)

        pool = BufferPool(make, max(slots, MIN_SLOTS))

        def view(buffer: torch.Tensor, j: int) -> torch.Tensor:
            shape = self._sizes[j]
            return buffer[: math.prod(shape)].view(1, *shape)

        def forward(j: int, x: torch.Tensor, out: torch.Tensor) -> None:
            self._apply(mats[j], view(x, j), view(out, j + 1), self.blocks[j].qubits, self._sizes[j])

        # the forward pass, for p; it keeps every state if they all fit
        initial = pool.take()
        view(initial, 0).copy_(self._initial_state().view(1, *self._sizes[0]))
        states = [initial]  # with keep_all: the state before every block
        scratch = [] if keep_all else [pool.take(), pool.take()]
        x = initial
        for j in range(n_steps):
            out = pool.take() if keep_all else scratch[j % 2]
            forward(j, x, out)
            if keep_all:
                states.append(out)
            x = out
        probs = self._measure(view(x, n_steps), list(self._sizes[n_steps]), True)[0]
        for b in [states.pop()] if keep_all else scratch:  # the final state is not needed again
            pool.give(b)

        def pullback(upstream: np.ndarray) -> tuple[np.ndarray, dict]:
            upstream = np.asarray(upstream, dtype=float).reshape(-1)
            if upstream.shape != (2**self.n_clbits,):
                raise ValueError(f"upstream must have shape ({2**self.n_clbits},), got {upstream.shape}")
            observable = [torch.empty(size, dtype=torch.float64, device=self.device) for _ in range(2)]
            self._observable(upstream, view(observable[0], n_steps))
            grad_angles = np.zeros(len(angles))
            current = 0

            def backward(j: int, x: torch.Tensor) -> None:
                nonlocal current
                block = self.blocks[j]
                lam = view(observable[current], j + 1)
                rows = self._block_rows[j]
                if rows:
                    outer = self._outer(lam, view(x, j), block.qubits, self._sizes[j + 1])
                    for row, d in zip(rows, derivs[j], strict=True):
                        grad_angles[row] += float(torch.sum(outer * d))
                if j > 0:  # the observable before block j: the transposed block applied to it
                    nxt = view(observable[1 - current], j)
                    self._apply(mats[j].T, lam, nxt, block.qubits, self._sizes[j + 1])
                    current = 1 - current

            if keep_all:
                for j in range(n_steps - 1, -1, -1):
                    backward(j, states[j])
                    pool.give(states.pop())
                again = 0
            else:
                again = reverse_sweep(n_steps, states.pop(), forward, backward, pool)
            stats = {"slots": pool.peak, "forward_steps": n_steps + again}
            spare.extend(pool.buffers)
            return self._angles.pullback(grad_angles, values), stats

        return probs, pullback

    def _tensor(self, matrix: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(matrix)).to(self.device)

    def _initial_state(self) -> torch.Tensor:
        zero = torch.tensor(
            [1.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=self.device
        )  # |0><0|: I, X, Y, Z
        init = zero
        for _ in range(self.n_qubits - 1):
            init = torch.outer(init, zero).reshape(-1)
        return init

    def _observable(self, upstream: np.ndarray, out: torch.Tensor) -> None:
        """Write into `out` (the final state's layout) the covector L = out · state, for
        L = upstream · p: the transpose of what :meth:`_measure` does to the final state."""
        g = apply_readout(upstream[None, :], self.readout, transpose=False)  # through C^T
        h = np.array([[0.5, 0.5], [0.5, -0.5]])
        g = apply_readout(g, [h] * self.n_clbits, transpose=False)  # through (I, Z) -> outcomes
        index, order = self._readout_view(out.shape[1:])
        g = self._tensor(g.reshape([1] + [2] * self.n_clbits)).permute(np.argsort(order).tolist())
        out.zero_()
        out[index] = g

    def _outer(self, lam: torch.Tensor, x: torch.Tensor, qubits, sizes) -> torch.Tensor:
        """G[o, i] = sum over the other axes of lam[o, ...] x[i, ...], on the block's axes."""
        self.bytes_moved += (lam.numel() + x.numel()) * 8
        first, last = qubits[0], qubits[-1]
        d_out = math.prod(lam.shape[1 + q] for q in qubits)
        d_in = math.prod(x.shape[1 + q] for q in qubits)
        if last - first == len(qubits) - 1:
            lead = math.prod(sizes[:first])
            tail = math.prod(sizes[last + 1 :])
            if tail == 1:
                return lam.reshape(lead, d_out).T @ x.reshape(lead, d_in)
            lam3, x3 = lam.reshape(lead, d_out, tail), x.reshape(lead, d_in, tail)
            if tail < 16:  # short rows: einsum's own plan is fastest (measured at 10 qubits)
                return torch.einsum("lot,lit->oi", lam3, x3)
            return torch.bmm(lam3, x3.transpose(1, 2)).sum(0)
        axes = [1 + q for q in qubits]
        others = [a for a in range(1, x.dim()) if a not in axes]
        lam_m = lam.permute([0, *axes, *others]).reshape(d_out, -1)
        x_m = x.permute([0, *axes, *others]).reshape(d_in, -1)
        return lam_m @ x_m.T

    def _apply(self, matrix, x: torch.Tensor, out: torch.Tensor, qubits, sizes) -> None:
        """out = matrix (numpy or torch) acting on the axes of `qubits` of x (rows, q_0, ..., q_{n-1})."""
        self.bytes_moved += (x.numel() + out.numel()) * 8
        m = matrix if isinstance(matrix, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(matrix))
        m = m.to(x.device).contiguous()
        d_out, d_in = m.shape
        rows = x.shape[0]
        first, last = qubits[0], qubits[-1]
        if last - first == len(qubits) - 1:  # neighbouring axes: a matrix product on a view
            lead = rows * math.prod(sizes[:first])
            tail = math.prod(sizes[last + 1 :])
            if tail == 1:
                torch.mm(x.view(lead, d_in), m.T, out=out.view(lead, d_out))
            elif tail >= 8:
                torch.matmul(m, x.view(lead, d_in, tail), out=out.view(lead, d_out, tail))
            else:  # a short tail: one product with the matrix widened by the tail
                wide = torch.kron(m, torch.eye(tail, dtype=m.dtype, device=m.device))
                torch.mm(x.view(lead, d_in * tail), wide.T, out=out.view(lead, d_out * tail))
            return
        # qubits apart: bring them forward, multiply, put them back
        axes = [1 + q for q in qubits]
        others = [a for a in range(1, x.dim()) if a not in axes]
        moved = x.permute([0, *axes, *others]).contiguous()
        result = torch.matmul(m, moved.view(rows, d_in, -1))
        shape = [rows] + [out.shape[a] for a in axes] + [out.shape[a] for a in others]
        inverse = np.argsort([0, *axes, *others]).tolist()
        out.copy_(result.view(shape).permute(inverse))

    def _readout_view(self, sizes) -> tuple[tuple, list[int]]:
        """(index, order): ``state[index].permute(order)`` is (rows, clbit n-1, ..., clbit 0)
        over the (I, Z) coefficients, so a row-major flatten is little-endian in clbits.

        Only the I and Z coefficients of measured qubits, and the I coefficient of the
        others, enter the outcome distribution: the index takes them as strided views.
        """
        measured_q = {q: c for c, q in self.measured.items()}
        index: list = [slice(None)]
        for q in range(self.n_qubits):
            if q in measured_q:
                index.append(slice(0, 4, 3) if sizes[q] == 4 else slice(None))
            else:
                index.append(0)
        kept = sorted(measured_q)  # the measured qubits' axes remain, in ascending order
        order = [0] + [1 + kept.index(self.measured[c]) for c in reversed(range(self.n_clbits))]
        return tuple(index), order

    def _measure(self, state: torch.Tensor, sizes: list[int], readout: bool) -> np.ndarray:
        """Outcome probabilities (rows, 2^n_clbits) of the final states (rows, q_0, ...)."""
        index, order = self._readout_view(sizes)
        sub = state[index].permute(order).contiguous().cpu().numpy()
        # Pauli coefficients (r_I, r_Z) of each measured qubit -> outcome probabilities
        h = np.array([[0.5, 0.5], [0.5, -0.5]])
        probs = apply_readout(sub.reshape(sub.shape[0], -1), [h] * self.n_clbits, transpose=False)
        if readout:
            probs = apply_readout(probs, self.readout)
        return probs


def readout_matrices(noise: NoiseDescription | None, qubits: list[int]) -> list[np.ndarray]:
    """Readout confusion P(read j | true i) of each measured physical qubit, in clbit order."""
    out = []
    for qubit in qubits:
        matrix = None if noise is None else noise.readout_error(qubit)
        if matrix is None:
            out.append(np.eye(2))
        elif matrix.shape != (2, 2):
            raise UnsupportedCircuit("correlated readout errors")
        else:
            out.append(matrix)
    return out


def apply_readout(probs: np.ndarray, matrices: list[np.ndarray], transpose: bool = True) -> np.ndarray:
    """Apply one 2x2 map per classical bit to little-endian distributions (B, 2^n).

    With ``transpose`` (readout confusion rows P(j|i)), p_read = C^T p_true on each bit.
    """
    n = len(matrices)
    t = probs.reshape([probs.shape[0]] + [2] * n)
    for c, m in enumerate(matrices):
        axis = n - c  # clbit c is axis n - c of (batch, clbit n-1, ..., clbit 0)
        m = m.T if transpose else m
        t = np.moveaxis(np.tensordot(m, t, axes=([1], [axis])), 0, axis)
    return t.reshape(probs.shape[0], -1)
