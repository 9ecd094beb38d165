"""The PTM engine's forward runs: probabilities and expectation values of many parameter
sets at once, walked as a tree of branches within a memory budget; gradients by :mod:`.adjoint`.

Why its own module: :class:`PTMProgram` is what the backends hold, one compiled circuit
(:mod:`.compile`) with its buffers kept between calls; the walk over the blocks is the
part that decides the time and memory of a noisy step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from qiskit import QuantumCircuit

from ...noise import NoiseDescription
from . import adjoint
from .budget import MemoryBudgetError, size_text
from .compile import Block, Compiled, Cone, UnsupportedCircuit, compile_circuit
from .state import StateOps


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
        self.parameters = list(circuit.parameters)
        self.compiled: Compiled = compile_circuit(circuit, self.noise)
        self.ops = StateOps(self.compiled, self.device)
        self._spare_states: list[torch.Tensor] = []  # buffers of the last gradient, for the next
        self._buffer_pair: list[torch.Tensor] | None = None
        self._cones: dict[tuple, Cone] = {}

    # what the compiled circuit says, under the names callers use
    @property
    def n_qubits(self) -> int:
        return self.compiled.n_qubits

    @property
    def physical_qubits(self) -> list[int]:
        return self.compiled.physical_qubits

    @property
    def measured(self) -> dict[int, int]:
        """clbit -> local qubit."""
        return self.compiled.measured

    @property
    def n_clbits(self) -> int:
        return self.compiled.n_clbits

    @property
    def blocks(self) -> list[Block]:
        return self.compiled.blocks

    @property
    def readout(self) -> list[np.ndarray]:
        return self.compiled.readout

    @property
    def bytes_moved(self) -> int:
        """Bytes the state operations have read and written so far (each operand once): what
        a memory-bound lower bound on the time divides by the bandwidth."""
        return self.ops.bytes_moved

    # ----------------------------------------------------------------- execution
    def memory_bytes(self, n_sets: int) -> int:
        """Peak state memory of :meth:`probabilities` walking `n_sets` rows of the branch tree
        at once: two ping-pong buffers of n_sets states, and the two states a chunk starts
        from and hands on."""
        return (2 * n_sets + 2) * self.compiled.state_bytes()

    def rows_within(self, memory_budget: int) -> int:
        """How many rows of the branch tree fit in `memory_budget` bytes (see :meth:`memory_bytes`)."""
        return max(0, (memory_budget // self.compiled.state_bytes() - 2) // 2)

    def _buffers(self, size: int) -> list[torch.Tensor]:
        # Kept between calls: fresh multi-GB allocations cost more in page faults than the
        # arithmetic of a small circuit.
        cached = self._buffer_pair
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
            self.compiled.cone,
            2**self.n_clbits,
            lambda state, sizes: self.ops.measure(state, sizes, readout),
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
            self._cones[key] = self.compiled.light_cone(dict(key))
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
        angles = self.compiled.angles.evaluate(values)  # (A, B)
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
                    f"({size_text(self.compiled.state_bytes())} a state)",
                    need,
                )
        branches = order[1:]
        step = max(1, per_chunk - 1)
        groups = [branches[i : i + step] for i in range(0, len(branches), step)] or [[]]
        out = np.empty((n_sets, width))
        start, initial = 0, self.ops.initial_state()
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
        for j, rows in enumerate(self.compiled.block_rows):
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
        select_rows, cone_sizes = cone or self.compiled.cone
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
                self.ops.bytes_moved += 2 * (n_new - n_rows) * size * 8
            new_sizes = list(cone_sizes[j + 1])
            out = buffers[1 - current][: n_new * math.prod(new_sizes)].view(n_new, *new_sizes)
            mats, inverse = self._distinct_matrices(j, angles, rows[:n_new])
            select = select_rows[j]
            base = inverse[0]
            self.ops.apply(mats[base][select], x, out, block.qubits, sizes)
            for slot in np.nonzero(inverse != base)[0].tolist():
                self.ops.apply(
                    mats[inverse[slot]][select], x[slot : slot + 1], out[slot : slot + 1], block.qubits, sizes
                )
            current = 1 - current
            sizes = new_sizes
            n_rows = n_new
        state = buffers[current][: n_rows * math.prod(sizes)].view(n_rows, *sizes)
        return state, sizes, saved

    def _distinct_matrices(
        self, j: int, angles: np.ndarray, rows: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Block j's PTMs for the sets `rows`, one for each distinct set of the block's angles,
        and for each row the index of its matrix (sets that share angles share a matrix)."""
        block = self.blocks[j]
        block_rows = self.compiled.block_rows[j]
        if block_rows:
            key = angles[block_rows][:, rows].T  # (rows, rotations in the block)
            uniq, inverse = np.unique(key, axis=0, return_inverse=True)
            return block.matrices(uniq), inverse.reshape(-1)
        return block.matrices(np.empty((1, 0))), np.zeros(len(rows), dtype=int)

    # ----------------------------------------------------------------- gradients
    def state_bytes(self) -> int:
        """Bytes of one state (the largest, before the light cone shrinks it)."""
        return self.compiled.state_bytes()

    def vjp_memory(self, slots: int) -> int:
        """Bytes :meth:`vjp` holds with `slots` state buffers: the buffers, the backward
        observable (two), and the temporaries of one non-neighbouring block (two)."""
        return adjoint.vjp_memory(self.compiled, slots)

    def vjp(self, values: np.ndarray, memory_budget: int | None = None) -> tuple[np.ndarray, Callable]:
        """Exact probabilities p(θ), and the function that maps dL/dp to dL/dθ.

        The adjoint method: the state goes forward once; the upstream gradient goes backward
        once as an observable (through the readout confusion, then the transpose of each
        block's PTM); at each block the derivative of its PTM (the shift rule, exactly) is
        contracted between the state before the block and the observable after it. When
        every state fits in ``memory_budget`` bytes (default: no limit) the forward pass keeps
        them for the backward one; otherwise the backward pass recomputes them from
        checkpoints within the budget (:mod:`..checkpoints`).

        Args:
            values: one parameter set (P,), in ``self.parameters`` order.
            memory_budget: bytes; at least ``vjp_memory(MIN_SLOTS)``.

        Returns:
            (p (2^n_clbits,), pullback), ``pullback(upstream)`` -> (gradient (P,), stats: the
            state buffers held and the forward steps run). ``upstream`` is dL/dp for the
            probabilities with readout errors; the pullback may be called once.
        """
        return adjoint.vjp(self.compiled, self.ops, values, memory_budget, self._spare_states)
