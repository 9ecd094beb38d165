"""The reverse sweep of an adjoint gradient, holding states only at checkpoints.

Why: the adjoint method needs, for every step j of a circuit taken backwards, the state
right before that step. Storing all of them costs (steps x state) memory, which at 13 qubits
in the Pauli picture (0.5 GiB a state, ~100 steps) no machine here has. With `slots` state
buffers the sweep stores what fits and recomputes the rest from the nearest checkpoint:
when every state fits, each step runs forward once; with fewer slots, a few times more
(uniform checkpoints, applied recursively), never more memory than the buffers given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Buffers the sweep needs at least: the initial state and two to step forward with (a step
# never writes over its input).
MIN_SLOTS = 3


class BufferPool:
    """A fixed number of equal buffers, handed out and taken back; never more are made."""

    def __init__(self, make: Callable[[], Any], capacity: int) -> None:
        self._make = make
        self.capacity = capacity
        self._free: list[Any] = []
        self.buffers: list[Any] = []  # every buffer made, to hand on for reuse when done
        self.made = 0
        self.in_use = 0
        self.peak = 0

    def take(self) -> Any:
        if self._free:
            buffer = self._free.pop()
        else:
            if self.made >= self.capacity:
                raise RuntimeError(f"the sweep needs more than its {self.capacity} state buffers")
            buffer = self._make()
            self.made += 1
            self.buffers.append(buffer)
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        return buffer

    def give(self, buffer: Any) -> None:
        self.in_use -= 1
        self._free.append(buffer)


def reverse_sweep(
    n_steps: int,
    initial: Any,
    forward: Callable[[int, Any, Any], None],
    backward: Callable[[int, Any], None],
    pool: BufferPool,
) -> int:
    """Call ``backward(j, state before step j)`` for j = n_steps - 1, ..., 0.

    ``forward(j, x, out)`` writes the state after step j into ``out`` and leaves ``x`` as it
    was; ``initial`` (the state before step 0, from ``pool``) is given back at the end. The
    pool must hold at least :data:`MIN_SLOTS` buffers. Returns the number of forward steps
    run, so the cost of a budget is visible (n_steps - 1 when every state fits).
    """
    if pool.capacity < MIN_SLOTS:
        raise ValueError(f"the reverse sweep needs at least {MIN_SLOTS} state buffers, got {pool.capacity}")
    count = 0

    def advance(x: Any, start: int, stop: int) -> Any:
        """The state before step `stop`, from `x` before `start`, in a buffer of its own."""
        nonlocal count
        out = pool.take()
        forward(start, x, out)
        count += 1
        for j in range(start + 1, stop):
            nxt = pool.take()
            forward(j, out, nxt)
            count += 1
            pool.give(out)
            out = nxt
        return out

    def sweep(start: int, stop: int, x: Any, free: int) -> None:
        """Steps [start, stop) backwards; `x` (owned by the caller) is the state before `start`;
        at most `free` + 2 buffers are taken at once."""
        n = stop - start
        if n <= 0:
            return
        if n <= free + 3:  # store every state of the segment
            states = [x]
            for j in range(start, stop - 1):
                out = pool.take()
                forward(j, states[-1], out)
                states.append(out)
            nonlocal count
            count += n - 1
            for j in range(stop - 1, start - 1, -1):
                backward(j, states[j - start])
                if j > start:
                    pool.give(states[j - start])
            return
        if free == 0:  # no room for a checkpoint: recompute from x for every step
            for j in range(stop - 1, start, -1):
                y = advance(x, start, j)
                backward(j, y)
                pool.give(y)
            backward(start, x)
            return
        # uniform checkpoints: the first segment stays, the rest recurses with one slot less
        length = math.ceil(n / (free + 1))
        checkpoint = advance(x, start, start + length)
        sweep(start + length, stop, checkpoint, free - 1)
        pool.give(checkpoint)
        sweep(start, start + length, x, free)

    # the initial state's buffer and the two to step with are not free slots
    sweep(0, n_steps, initial, pool.capacity - MIN_SLOTS)
    pool.give(initial)
    return count
