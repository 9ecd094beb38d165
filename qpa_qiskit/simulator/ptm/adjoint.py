"""Adjoint gradients of the PTM engine: exact probabilities p(θ) and the pullback dL/dp -> dL/dθ.

Why its own module: the gradient is a different walk from the forward one (one parameter
set, every state kept or recomputed from checkpoints, an observable going backward), and
it reads only the compiled circuit (:class:`.compile.Compiled`) and the state operations
(:class:`.state.StateOps`), as the forward walk does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..checkpoints import MIN_SLOTS, BufferPool, reverse_sweep
from .budget import MemoryBudgetError, size_text
from .compile import Compiled
from .state import StateOps


def vjp_memory(compiled: Compiled, slots: int) -> int:
    """Bytes :func:`vjp` holds with `slots` state buffers: the buffers, the backward
    observable (two), and the temporaries of one non-neighbouring block (two)."""
    return (slots + 4) * compiled.state_bytes()


def vjp(
    compiled: Compiled,
    ops: StateOps,
    values: np.ndarray,
    memory_budget: int | None,
    spare: list[torch.Tensor],
) -> tuple[np.ndarray, Callable]:
    """Exact probabilities p(θ), and the function that maps dL/dp to dL/dθ
    (:meth:`.program.PTMProgram.vjp` says how); `spare` holds state buffers from one call
    to the next (fresh gigabytes cost page faults each step)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    angles = compiled.angles.evaluate(values[None, :])[:, 0]
    mats, derivs = _block_matrices(compiled, ops, angles)
    slots = _slots(compiled, memory_budget)
    keep_all = slots == len(compiled.blocks) + 1
    size = 4**compiled.n_qubits
    del spare[max(slots, MIN_SLOTS) :]  # never more than this budget holds

    def make() -> torch.Tensor:
        # states of an earlier step are reused: fresh gigabytes cost page faults each step
        return spare.pop() if spare else torch.empty(size, dtype=torch.float64, device=ops.device)

    steps = _Steps(compiled, ops, mats, BufferPool(make, max(slots, MIN_SLOTS)))
    probs, states = _forward_pass(steps, keep_all)

    def pullback(upstream: np.ndarray) -> tuple[np.ndarray, dict]:
        upstream = np.asarray(upstream, dtype=float).reshape(-1)
        if upstream.shape != (2**compiled.n_clbits,):
            raise ValueError(f"upstream must have shape ({2**compiled.n_clbits},), got {upstream.shape}")
        grad_angles, again = _reverse_pass(steps, derivs, states, upstream, len(angles), keep_all)
        stats = {"slots": steps.pool.peak, "forward_steps": steps.n + again}
        spare.extend(steps.pool.buffers)
        return compiled.angles.pullback(grad_angles, values), stats

    return probs, pullback


class _Steps:
    """The blocks of one parameter set as steps between state buffers: a buffer's view as
    the state before block j (its light-cone sizes), block j applied forward, and the pool
    the buffers come from. What the forward and the reverse pass (and the checkpointed
    sweep) share."""

    def __init__(self, compiled: Compiled, ops: StateOps, mats: list[torch.Tensor], pool: BufferPool) -> None:
        self.compiled = compiled
        self.ops = ops
        self.mats = mats
        self.pool = pool
        self.sizes = compiled.cone[1]
        self.n = len(compiled.blocks)

    def view(self, buffer: torch.Tensor, j: int) -> torch.Tensor:
        shape = self.sizes[j]
        return buffer[: math.prod(shape)].view(1, *shape)

    def forward(self, j: int, x: torch.Tensor, out: torch.Tensor) -> None:
        qubits = self.compiled.blocks[j].qubits
        self.ops.apply(self.mats[j], self.view(x, j), self.view(out, j + 1), qubits, self.sizes[j])


def _forward_pass(steps: _Steps, keep_all: bool) -> tuple[np.ndarray, list[torch.Tensor]]:
    """The forward pass, for p; returns (p, the states the reverse pass starts from): with
    `keep_all` the state before every block, else the initial state alone (the sweep
    recomputes the others from it)."""
    pool = steps.pool
    initial = pool.take()
    steps.view(initial, 0).copy_(steps.ops.initial_state().view(1, *steps.sizes[0]))
    states = [initial]  # with keep_all: the state before every block
    scratch = [] if keep_all else [pool.take(), pool.take()]
    x = initial
    for j in range(steps.n):
        out = pool.take() if keep_all else scratch[j % 2]
        steps.forward(j, x, out)
        if keep_all:
            states.append(out)
        x = out
    probs = steps.ops.measure(steps.view(x, steps.n), list(steps.sizes[steps.n]), True)[0]
    for b in [states.pop()] if keep_all else scratch:  # the final state is not needed again
        pool.give(b)
    return probs, states


def _reverse_pass(
    steps: _Steps,
    derivs: list[list[torch.Tensor]],
    states: list[torch.Tensor],
    upstream: np.ndarray,
    n_angles: int,
    keep_all: bool,
) -> tuple[np.ndarray, int]:
    """The reverse pass: dL/d(angles) for dL/dp = `upstream`, the observable going backward
    block by block from the states :func:`_forward_pass` left; returns (dL/d(angles), the
    forward steps it ran again). Gives every state buffer back to the pool."""
    compiled, ops, view = steps.compiled, steps.ops, steps.view
    sizes = steps.sizes
    size = 4**compiled.n_qubits
    observable = [torch.empty(size, dtype=torch.float64, device=ops.device) for _ in range(2)]
    ops.observable(upstream, view(observable[0], steps.n))
    grad_angles = np.zeros(n_angles)
    current = 0

    def backward(j: int, x: torch.Tensor) -> None:
        nonlocal current
        block = compiled.blocks[j]
        lam = view(observable[current], j + 1)
        rows = compiled.block_rows[j]
        if rows:
            outer = ops.outer(lam, view(x, j), block.qubits, sizes[j + 1])
            for row, d in zip(rows, derivs[j], strict=True):
                grad_angles[row] += float(torch.sum(outer * d))
        if j > 0:  # the observable before block j: the transposed block applied to it
            nxt = view(observable[1 - current], j)
            ops.apply(steps.mats[j].T, lam, nxt, block.qubits, sizes[j + 1])
            current = 1 - current

    if keep_all:
        for j in range(steps.n - 1, -1, -1):
            backward(j, states[j])
            steps.pool.give(states.pop())
        return grad_angles, 0
    return grad_angles, reverse_sweep(steps.n, states.pop(), steps.forward, backward, steps.pool)


def _block_matrices(
    compiled: Compiled, ops: StateOps, angles: np.ndarray
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Each block's PTM at `angles` and its derivatives by its rotations' angles, on the
    rows the light cone keeps, as tensors on the states' device."""
    mats, derivs = [], []
    for j, block in enumerate(compiled.blocks):
        a = angles[compiled.block_rows[j]]
        select = compiled.cone[0][j]
        mats.append(ops.tensor(block.matrices(a[None, :])[0][select]))
        derivs.append([ops.tensor(d[select]) for d in block.derivatives(a)])
    return mats, derivs


def _slots(compiled: Compiled, memory_budget: int | None) -> int:
    """State buffers the sweep may hold: one per state if they fit in the budget, else as many
    as fit (MemoryBudgetError below the least the sweep runs in)."""
    slots = len(compiled.blocks) + 1  # every state before a block, and the final one
    if memory_budget is None:
        return slots
    state = compiled.state_bytes()
    fits = memory_budget // state - 4
    if fits < min(MIN_SLOTS, slots):
        need = vjp_memory(compiled, min(MIN_SLOTS, slots))
        raise MemoryBudgetError(
            f"a memory budget of {size_text(memory_budget)} cannot hold the adjoint sweep of "
            f"{compiled.n_qubits} qubits: it needs at least {size_text(need)} "
            f"({need // state} states of {size_text(state)})",
            need,
        )
    return min(slots, fits)
