"""The operations on the PTM engine's states: blocks applied to them, the adjoint's outer
products, and the measurement read from the final state (and its transpose).

Why its own module: the forward walk (:mod:`.program`) and the adjoint (:mod:`.adjoint`)
apply the same blocks to the same layout of states, and the same bytes moved count for
both. A state is one float64 tensor (rows, q_0, ..., q_{n-1}) of Pauli coefficients, each
qubit's axis 4 long until the light cone shrinks it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .compile import Compiled


class StateOps:
    """The state operations of one compiled circuit on one torch device."""

    def __init__(self, compiled: Compiled, device: torch.device) -> None:
        self.compiled = compiled
        self.device = device
        #: bytes the state operations have read and written so far (each operand once): what
        #: a memory-bound lower bound on the time divides by the bandwidth
        self.bytes_moved = 0

    def tensor(self, matrix: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(matrix)).to(self.device)

    def initial_state(self) -> torch.Tensor:
        zero = torch.tensor(
            [1.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=self.device
        )  # |0><0|: I, X, Y, Z
        init = zero
        for _ in range(self.compiled.n_qubits - 1):
            init = torch.outer(init, zero).reshape(-1)
        return init

    def observable(self, upstream: np.ndarray, out: torch.Tensor) -> None:
        """Write into `out` (the final state's layout) the covector L = out · state, for
        L = upstream · p: the transpose of what :meth:`measure` does to the final state."""
        g = apply_readout(upstream[None, :], self.compiled.readout, transpose=False)  # through C^T
        h = np.array([[0.5, 0.5], [0.5, -0.5]])
        g = apply_readout(g, [h] * self.compiled.n_clbits, transpose=False)  # through (I, Z) -> outcomes
        index, order = self._readout_view(out.shape[1:])
        g = self.tensor(g.reshape([1] + [2] * self.compiled.n_clbits)).permute(np.argsort(order).tolist())
        out.zero_()
        out[index] = g

    def outer(self, lam: torch.Tensor, x: torch.Tensor, qubits, sizes) -> torch.Tensor:
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

    def apply(self, matrix, x: torch.Tensor, out: torch.Tensor, qubits, sizes) -> None:
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
        measured_q = {q: c for c, q in self.compiled.measured.items()}
        index: list = [slice(None)]
        for q in range(self.compiled.n_qubits):
            if q in measured_q:
                index.append(slice(0, 4, 3) if sizes[q] == 4 else slice(None))
            else:
                index.append(0)
        kept = sorted(measured_q)  # the measured qubits' axes remain, in ascending order
        order = [0] + [
            1 + kept.index(self.compiled.measured[c]) for c in reversed(range(self.compiled.n_clbits))
        ]
        return tuple(index), order

    def measure(self, state: torch.Tensor, sizes: list[int], readout: bool) -> np.ndarray:
        """Outcome probabilities (rows, 2^n_clbits) of the final states (rows, q_0, ...)."""
        index, order = self._readout_view(sizes)
        sub = state[index].permute(order).contiguous().cpu().numpy()
        # Pauli coefficients (r_I, r_Z) of each measured qubit -> outcome probabilities
        h = np.array([[0.5, 0.5], [0.5, -0.5]])
        probs = apply_readout(sub.reshape(sub.shape[0], -1), [h] * self.compiled.n_clbits, transpose=False)
        if readout:
            probs = apply_readout(probs, self.compiled.readout)
        return probs


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
