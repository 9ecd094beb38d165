"""Initial values that depend on the seed and on what they belong to, nothing else.

Runs that differ in one setting must start from the same values of everything else: a run
with the Generative Interpolation network must start from the same circuit angles and the
same mapping MLP as a run without it. So each component draws its initial values from its
own stream, seeded by the run seed and the component's name, instead of from one global
stream whose position depends on what was built before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed for the component `name` of a run seeded with `seed`."""
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextmanager
def torch_seeded(seed: int | None, name: str) -> Iterator[None]:
    """Inside the block torch's default generator is seeded for component `name`; the global
    stream is restored afterwards, as if the block had drawn nothing. With seed None the
    block draws from the global stream as usual."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, name))
        yield
