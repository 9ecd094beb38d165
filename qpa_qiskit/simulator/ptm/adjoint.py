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
    n_steps = len(compiled.blocks)
    slots = _slots(compiled, memory_budget)
    keep_all = slots == n_steps + 1
    size = 4**compiled.n_qubits
    sizes = compiled.cone[1]
    del spare[max(slots, MIN_SLOTS) :]  # never more than this budget holds

    def make() -> torch.Tensor:
        # states of an earlier step are reused: fresh gigabytes cost page faults each step
        return spare.pop() if spare else torch.empty(size, dtype=torch.float64, device=ops.device)

    pool = BufferPool(make, max(slots, MIN_SLOTS))

    def view(buffer: torch.Tensor, j: int) -> torch.Tensor:
        shape = sizes[j]
        return buffer[: math.prod(shape)].view(1, *shape)

    def forward(j: int, x: torch.Tensor, out: torch.Tensor) -> None:
        ops.apply(mats[j], view(x, j), view(out, j + 1), compiled.blocks[j].qubits, sizes[j])

    # the forward pass, for p; it keeps every state if they all fit
    initial = pool.take()
    view(initial, 0).copy_(ops.initial_state().view(1, *sizes[0]))
    states = [initial]  # with keep_all: the state before every block
    scratch = [] if keep_all else [pool.take(), pool.take()]
    x = initial
    for j in range(n_steps):
        out = pool.take() if keep_all else scratch[j % 2]
        forward(j, x, out)
        if keep_all:
            states.append(out)
        x = out
    probs = ops.measure(view(x, n_steps), list(sizes[n_steps]), True)[0]
    for b in [states.pop()] if keep_all else scratch:  # the final state is not needed again
        pool.give(b)

    def pullback(upstream: np.ndarray) -> tuple[np.ndarray, dict]:
        upstream = np.asarray(upstream, dtype=float).reshape(-1)
        if upstream.shape != (2**compiled.n_clbits,):
            raise ValueError(f"upstream must have shape ({2**compiled.n_clbits},), got {upstream.shape}")
        observable = [torch.empty(size, dtype=torch.float64, device=ops.device) for _ in range(2)]
        ops.observable(upstream, view(observable[0], n_steps))
        grad_angles = np.zeros(len(angles))
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
                ops.apply(mats[j].T, lam, nxt, block.qubits, sizes[j + 1])
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
        return compiled.angles.pullback(grad_angles, values), stats

    return probs, pullback


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
