"""A circuit and its noise compiled to fused Pauli-transfer-matrix blocks: what the PTM
engine's forward walk (:mod:`.program`) and its adjoint (:mod:`.adjoint`) both read.

Why its own module: compiling happens once per circuit and decides everything the runs
share (the blocks, the angle table, the measured qubits, the light cone of the
measurement); the result is one value, :class:`Compiled`, so running it never needs the
circuit again. Circuits or noise models this cannot represent exactly raise
:class:`UnsupportedCircuit`, so the caller can fall back to Aer.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Delay, Measure, ParameterExpression
from qiskit.quantum_info import DensityMatrix, Operator, SuperOp
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from ...noise import NoiseDescription

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
class Rotation:
    """A parameterised Pauli rotation: R(a) = a0 + cos(a) a1 + sin(a) a2 in block space."""

    angle: int  # row of the program's angle table
    a0: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    noise: np.ndarray | None  # fixed channel applied after the gate, already embedded

    def embedded(self, positions: tuple[int, ...], width: int) -> Rotation:
        return Rotation(
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
class Block:
    qubits: tuple[int, ...]
    factors: list = field(default_factory=list)  # np.ndarray (fixed) or Rotation

    def add(self, positions: tuple[int, ...], factor) -> None:
        if isinstance(factor, Rotation):
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
        return [f.angle for f in self.factors if isinstance(f, Rotation)]

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
        rotations = [i for i, f in enumerate(self.factors) if isinstance(f, Rotation)]
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


#: A light cone of the measurement: (select, sizes), the rows of each block's PTM to compute,
#: and the state's axis sizes before each block and after the last.
Cone = tuple[list, list]


@dataclass(frozen=True)
class Compiled:
    """One ISA circuit under one noise description as fused blocks, ready to run many times.

    Qubits are local: the circuit's active qubits in the order of the state's axes
    (:func:`axis_order`; ``physical_qubits[q]`` is local qubit q's physical index).
    """

    n_qubits: int
    physical_qubits: list[int]
    measured: dict[int, int]  # clbit -> local qubit
    n_clbits: int
    blocks: list[Block]
    block_rows: list[list[int]]  # the angle-table rows of each block's rotations
    angles: Angles
    readout: list[np.ndarray]  # readout confusion of each clbit
    cone: Cone  # the light cone of the measurement (I and Z of measured qubits, else I)

    def state_bytes(self) -> int:
        """Bytes of one state (the largest, before the light cone shrinks it)."""
        return 8 * 4**self.n_qubits

    def light_cone(self, reads: dict[int, tuple[int, ...]]) -> Cone:
        """The light cone when the end of the circuit reads the Pauli components `reads[q]`
        (sorted, 0 = I first) of local qubit q and only I of the others."""
        return light_cone(self.blocks, self.n_qubits, reads)


def light_cone(blocks: list[Block], n_qubits: int, reads: dict[int, tuple[int, ...]]) -> Cone:
    """(select, sizes) of `blocks` on `n_qubits` when the end reads `reads` (see :class:`Compiled`):
    after the last block on a qubit only the coefficients read are kept."""
    last = {q: j for j, b in enumerate(blocks) for q in b.qubits}
    keeps = [{q: list(reads.get(q, (0,))) for q in b.qubits if last[q] == j} for j, b in enumerate(blocks)]
    select = []
    for b, keep in zip(blocks, keeps, strict=True):
        per_qubit = [keep.get(q, [0, 1, 2, 3]) for q in b.qubits]
        if len(per_qubit) == 1:
            select.append(per_qubit[0])
        else:
            select.append([4 * i + k for i in per_qubit[0] for k in per_qubit[1]])
    sizes = [4] * n_qubits
    all_sizes = [tuple(sizes)]
    for keep in keeps:
        for q, components in keep.items():
            sizes[q] = len(components)
        all_sizes.append(tuple(sizes))
    return select, all_sizes


def fold_single_qubit_tails(blocks: list[Block]) -> list[Block]:
    """`blocks` with each one-qubit block folded into the latest block before it on its qubit,
    where that block is wider. Nothing between them acts on the qubit, so the one-qubit block
    commutes with what lies between: folded, it costs no pass over the state of its own, and the
    qubit's light cone closes with the wider block instead of at the end of the circuit (single
    gates after a qubit's last two-qubit gate, as a transpiler leaves them where a device's
    gate directions differ, kept four Pauli components of the qubit alive to the end)."""
    out: list[Block] = []
    latest: dict[int, Block] = {}
    for block in blocks:
        target = latest.get(block.qubits[0]) if len(block.qubits) == 1 else None
        if target is not None and len(target.qubits) > 1:
            block.widen(target.qubits)
            target.factors.extend(block.factors)
            continue
        out.append(block)
        for q in block.qubits:
            latest[q] = block
    return out


def qubits_finish_early(blocks: list[Block], *, last_first: bool = False) -> list[Block]:
    """`blocks` in another order the circuit allows (each block still after every earlier block
    it shares a qubit with): of the blocks ready, the one on the lowest axes first (`last_first`:
    the highest, for a ladder that runs down the axes), so those axes run through all their
    layers while the others wait, and the light cone closes qubit by qubit. A transpiler emits a
    ladder circuit layer by layer or in that wave depending on the qubits it chose; layer by
    layer every qubit stays alive to the last layer."""
    sign = -1 if last_first else 1
    after: list[list[int]] = [[] for _ in blocks]
    waiting = [0] * len(blocks)
    latest: dict[int, int] = {}
    for j, block in enumerate(blocks):
        for i in {latest[q] for q in block.qubits if q in latest}:
            after[i].append(j)
            waiting[j] += 1
        for q in block.qubits:
            latest[q] = j
    ready = [(tuple(sign * q for q in blocks[j].qubits), j) for j in range(len(blocks)) if waiting[j] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(blocks[i])
        for j in after[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (tuple(sign * q for q in blocks[j].qubits), j))
    return order


def walk_size(blocks: list[Block], n_qubits: int, reads: dict[int, tuple[int, ...]]) -> int:
    """The state entries a walk of `blocks` reads: the sum of the state's size before each block
    under the light cone (what the engine's time and memory grow with)."""
    _, sizes = light_cone(blocks, n_qubits, reads)
    return sum(math.prod(s) for s in sizes[:-1])


def axis_order(qubits: list[int], pairs: dict[tuple[int, int], None]) -> list[int]:
    """The order of the state's axes: the physical `qubits` ascending, unless another order puts
    more of the two-qubit gates' `pairs` on neighbouring axes. A block on neighbouring axes is a
    matrix product on a view of the state; one on axes apart first copies the state into a
    permuted layout. A layout chosen by the device's errors ([104, 105, 106, 111, 112, 122, ...])
    interleaves a linear circuit's chain in ascending order; reverse Cuthill-McKee (scipy) on the
    gates' graph lays a chain, or the lattice a router leaves, along the axes again, oriented so
    that the first two-qubit gate (the first of `pairs`, in the circuit's order) is on the low
    axes: the walk then closes the light cone from the low axes up (:func:`qubits_finish_early`),
    where the state's blocks are matrix products with long rows."""
    index = {q: i for i, q in enumerate(qubits)}
    edges = [(index[a], index[b]) for a, b in pairs]
    if not edges:
        return qubits
    rows, cols = zip(*edges, strict=True)
    graph = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(qubits), len(qubits)))
    order = [qubits[i] for i in reverse_cuthill_mckee(graph, symmetric_mode=False)]
    if order.index(next(iter(pairs))[0]) > (len(order) - 1) / 2:
        order.reverse()

    def apart(axes: list[int]) -> int:
        position = {q: i for i, q in enumerate(axes)}
        return sum(abs(position[a] - position[b]) > 1 for a, b in pairs)

    return order if apart(order) < apart(qubits) else qubits


def compile_circuit(circuit: QuantumCircuit, noise: NoiseDescription) -> Compiled:
    """`circuit` under `noise` as fused blocks; UnsupportedCircuit where that is not exact."""
    if noise.has_noise_passes and any(isinstance(i.operation, Delay) for i in circuit.data):
        # Aer runs the noise model's custom passes (relaxation during delays) on circuits
        # that contain delays; those add Kraus channels this engine leaves to Aer.
        raise UnsupportedCircuit("delays under a noise model with noise passes")
    return _Compiler(circuit, noise).run()


class _Compiler:
    """The state of one compilation: blocks still open to more gates, and those closed."""

    def __init__(self, circuit: QuantumCircuit, noise: NoiseDescription) -> None:
        self.circuit = circuit
        self.noise = noise
        self.angles = Angles(list(circuit.parameters))
        self.qindex = {q: i for i, q in enumerate(circuit.qubits)}
        self.cindex = {c: i for i, c in enumerate(circuit.clbits)}
        active: list[int] = []
        pairs: dict[tuple[int, int], None] = {}  # in the circuit's order
        for inst in circuit.data:
            if inst.operation.name in IGNORED_INSTRUCTIONS:
                continue
            for q in inst.qubits:
                if self.qindex[q] not in active:
                    active.append(self.qindex[q])
            if len(inst.qubits) == 2:
                a, b = sorted(self.qindex[q] for q in inst.qubits)
                pairs[(a, b)] = None
        if not active:
            raise UnsupportedCircuit("the circuit acts on no qubit")
        self.active = axis_order(sorted(active), pairs)
        self.local = {q: i for i, q in enumerate(self.active)}
        self.measured: dict[int, int] = {}  # clbit -> local qubit
        self.ptm_cache: dict = {}
        self.open_blocks: list[Block] = []
        self.blocks: list[Block] = []

    def run(self) -> Compiled:
        for inst in self.circuit.data:
            if inst.operation.name not in IGNORED_INSTRUCTIONS:
                self._instruction(inst)
        for b in list(self.open_blocks):
            self._close(b)
        self.blocks = fold_single_qubit_tails(self.blocks)
        n_clbits = len(self.circuit.clbits)
        if sorted(self.measured) != list(range(n_clbits)):
            raise UnsupportedCircuit("some classical bits are never measured")
        n_qubits = len(self.active)
        reads = {q: (0, 3) for q in self.measured.values()}
        orders = (
            self.blocks,
            qubits_finish_early(self.blocks),
            qubits_finish_early(self.blocks, last_first=True),
        )
        self.blocks = min(orders, key=lambda blocks: walk_size(blocks, n_qubits, reads))
        return Compiled(
            n_qubits=n_qubits,
            physical_qubits=self.active,
            measured=self.measured,
            n_clbits=n_clbits,
            blocks=self.blocks,
            block_rows=[b.angle_rows for b in self.blocks],
            angles=self.angles,
            readout=readout_matrices(self.noise, [self.active[self.measured[c]] for c in range(n_clbits)]),
            # Light cone of the measurement: after the last block on a qubit only the Pauli
            # coefficients the measurement reads are kept (I and Z if measured, else I).
            cone=light_cone(self.blocks, n_qubits, reads),
        )

    def _error(self, name: str, qubits: tuple[int, ...]):
        """The QuantumError Aer applies after `name` on physical `qubits`, or None."""
        error = self.noise.gate_error(name, qubits)
        if error is not None and error.num_qubits != len(qubits):
            raise UnsupportedCircuit(f"{error.num_qubits}-qubit error on a {len(qubits)}-qubit {name}")
        return error

    def _instruction(self, inst) -> None:
        op = inst.operation
        name = op.name
        qs_phys = tuple(self.qindex[q] for q in inst.qubits)
        qs = tuple(self.local[q] for q in qs_phys)
        if any(q in self.measured.values() for q in qs):
            raise UnsupportedCircuit("operations after a measurement")
        if isinstance(op, Measure):
            if self._error("measure", qs_phys) is not None:
                raise UnsupportedCircuit("quantum errors on measurements")
            clbit = self.cindex[inst.clbits[0]]
            if clbit in self.measured:
                raise UnsupportedCircuit("a classical bit measured twice")
            self.measured[clbit] = qs[0]
            return
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
            if key not in self.ptm_cache:
                self.ptm_cache[key] = superop_ptm(error.to_quantumchannel())
            noise = self.ptm_cache[key]
        params = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
        if params:
            if name not in _ROTATION_GATES or len(op.params) != 1:
                raise UnsupportedCircuit(f"parameterised gate {name!r}")
            key = ("rot", name)
            if key not in self.ptm_cache:
                self.ptm_cache[key] = _rotation_terms(name, type(op))
            a0, a1, a2 = self.ptm_cache[key]
            row = self.angles.add(op.params[0])
            self._place(qs, Rotation(row, a0, a1, a2, noise))
            return
        key = ("gate", name, tuple(float(p) for p in op.params), qs_phys)
        if key not in self.ptm_cache:
            try:
                ideal = unitary_ptm(Operator(op).data)
            except Exception as exc:
                raise UnsupportedCircuit(f"non-unitary instruction {name!r}") from exc
            self.ptm_cache[key] = ideal if noise is None else noise @ ideal
        self._place(qs, self.ptm_cache[key])

    def _close(self, block: Block) -> None:
        self.open_blocks.remove(block)
        self.blocks.append(block)

    def _place(self, qs: tuple[int, ...], factor) -> None:
        touching = [b for b in self.open_blocks if set(b.qubits) & set(qs)]
        union = set(qs).union(*[b.qubits for b in touching])
        if len(union) > _MAX_BLOCK_QUBITS:
            # blocks reaching outside qs end here; those inside qs are absorbed
            for b in [b for b in touching if not set(b.qubits) <= set(qs)]:
                self._close(b)
            touching = [b for b in touching if set(b.qubits) <= set(qs)]
            union = set(qs)
        block = Block(tuple(sorted(union)))
        for b in touching:
            # open blocks are on disjoint qubits and commute: concatenate them
            b.widen(block.qubits)
            block.factors.extend(b.factors)
            self.open_blocks.remove(b)
        self.open_blocks.append(block)
        block.add(tuple(block.qubits.index(q) for q in qs), factor)
