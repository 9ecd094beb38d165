"""Completing finite-shot distributions: Generative Interpolation (GI) and its controls.

With n_shot = c * 2^N shots and a small c, many basis states are never measured; their
estimated probability is 0 and the adapter-weight chunk they feed degenerates. GI treats the
2^N probabilities like frames of a video and fills each unmeasured state from its
neighbours in Hilbert space, the N states at Hamming distance 1: a small network F maps the
neighbours' probabilities (ordered by the flipped bit) to a non-negative estimate. F starts
untrained and learns through the fine-tuning loss, with no pre-training and no extra shots.

Modes:

* ``"gi"``: F fills unmeasured states; measured states keep their sampled value.
* ``"none"``: zeros stay.
* ``"uniform"``: every unmeasured state gets the mean of the missing mass, the Good-Turing
  estimate of the probability of all unseen outcomes (states seen once / shots) divided by
  the number of unmeasured states.
* ``"random"``: every unmeasured state gets a random convex combination of its neighbours
  (fresh weights on every call), the "random interpolation" baseline.

After filling, the vector no longer sums to one; with ``renormalize=True`` (the default) it
is divided by its sum, which keeps the ratios between measured states. Exact distributions
pass through unchanged unless they hold exact zeros.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from . import validate
from .choices import COMPLETION_MODES as MODES
from .errors import InputError


def neighbour_index(n_qubits: int) -> torch.Tensor:
    """(2^N, N): column k holds i XOR 2^k, the state that differs from i in bit k."""
    states = torch.arange(2**n_qubits)[:, None]
    return states ^ (1 << torch.arange(n_qubits))[None, :]


class GenerativeInterpolation(nn.Module):
    """Fills unmeasured basis states of sampled distributions (B, 2^N) or (2^N,).

    Args:
        n_qubits: N.
        hidden: hidden widths of F (mode "gi").
        mode: "gi", "none", "uniform" or "random".
        renormalize: divide the completed vector by its sum.
        seed: seeds the "random" mode's weights.
    """

    def __init__(
        self,
        n_qubits: int,
        hidden: tuple[int, ...] = (16,),
        mode: str = "gi",
        renormalize: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        n_qubits = validate.positive_int(n_qubits, "n_qubits")
        validate.one_of(mode, "completion mode", MODES)
        hidden = validate.positive_ints(hidden, "hidden widths")
        seed = validate.integer(seed, "seed", minimum=0)
        self.n_qubits = n_qubits
        self.mode = mode
        self.renormalize = renormalize
        self.register_buffer("neighbours", neighbour_index(n_qubits), persistent=False)
        self.net: nn.Module | None = None
        if mode == "gi":
            widths = [n_qubits, *hidden]
            layers: list[nn.Module] = []
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.GELU()]
            layers += [nn.Linear(widths[-1], 1), nn.Softplus()]
            self.net = nn.Sequential(*layers)
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def rng_state(self) -> torch.Tensor:
        """State of the "random" mode's own generator (checkpointed for an exact resume)."""
        return self._generator.get_state()

    @rng_state.setter
    def rng_state(self, state: torch.Tensor) -> None:
        self._generator.set_state(state)

    def gather(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, 2^N) -> (B, 2^N, N): the neighbours' probabilities, ordered by flipped bit."""
        return probs[:, self.neighbours]

    def estimate(self, probs: torch.Tensor, shots: int | None = None) -> torch.Tensor:
        """The value each state would get if it were unmeasured, (B, 2^N)."""
        dim = 2**self.n_qubits
        if self.mode == "gi":
            # F sees 2^N p, about 1 for a flat distribution, and answers on the same scale
            weight = next(self.net.parameters())
            inputs = (dim * self.gather(probs)).to(weight.dtype)
            return self.net(inputs).squeeze(-1).to(probs.dtype) / dim
        if self.mode == "random":
            weights = torch.rand(probs.shape[0], dim, self.n_qubits, generator=self._generator)
            weights = (weights / weights.sum(-1, keepdim=True)).to(probs.dtype)
            return (weights * self.gather(probs)).sum(-1)
        if self.mode == "uniform":
            if shots is None:
                raise InputError("completion 'uniform' needs the shot count")
            missing = probs == 0
            seen_once = (torch.round(probs * shots) == 1).sum(-1, keepdim=True)
            per_state = seen_once / shots / missing.sum(-1, keepdim=True).clamp_min(1)
            return per_state.to(probs.dtype).expand_as(probs)
        return torch.zeros_like(probs)

    def forward(self, probs: torch.Tensor, shots: int | None = None) -> torch.Tensor:
        single = probs.dim() == 1
        p = probs[None] if single else probs
        if p.shape[-1] != 2**self.n_qubits:
            raise InputError(
                f"expected {2**self.n_qubits} probabilities (N={self.n_qubits}), got {p.shape[-1]}"
            )
        if self.mode == "none":
            out = p
        else:
            out = torch.where(p == 0, self.estimate(p, shots), p)
        if self.renormalize and self.mode != "none":
            out = out / out.sum(-1, keepdim=True)
        return out[0] if single else out
