"""QPA parameter generator: circuit probabilities + a mapping MLP -> a vector of M weights."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import validate
from .backends import QPABackend
from .circuits import ansatz
from .errors import InputError
from .qnn import QuantumProbabilities
from .seeding import torch_seeded

if TYPE_CHECKING:
    from .config import GeneratorConfig

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def qubits_for(n_weights: int, chunk_size: int) -> tuple[int, int]:
    """(n_chunks, N): n_ch = ceil(M / n_mlp) chunks need N = ceil(log2 n_ch) qubits (N >= 1)."""
    n_weights = validate.positive_int(n_weights, "the number of weights to generate")
    chunk_size = validate.positive_int(chunk_size, "chunk_size")
    if chunk_size > n_weights:
        raise InputError(
            f"chunk_size {chunk_size:,} is larger than the {n_weights:,} weights to generate: the mapping "
            f"network would produce {chunk_size:,} weights per chunk and use {n_weights:,} of them. "
            f"Choose a chunk size of at most {n_weights:,}"
        )
    n_chunks = math.ceil(n_weights / chunk_size)
    return n_chunks, max(1, math.ceil(math.log2(n_chunks)))


class QPAGenerator(nn.Module):
    """Generates M classical weights from the 2^N measurement probabilities of a circuit.

    Chunk c (of n_ch = ceil(M / n_mlp)) is fed its own basis state's N bits as ±1 and its
    rescaled probability x_c = (beta * tanh(gamma * 2^(N-1) * p_c))^alpha minus the mean
    over chunks; a mapping MLP turns those N+1 numbers into n_mlp weights, and the chunks
    are concatenated and cut to M. Chunk c always reads basis state c: the labels are fixed,
    so the generated weights are a deterministic function of the trainable parameters.

    Args:
        n_weights: M, how many weights to generate.
        backend: the :class:`QPABackend` that evaluates the circuit.
        config: a :class:`~qpa_qiskit.config.GeneratorConfig`: chunk size n_mlp, the
            ansatz, the mapping MLP, the rescaling, the completion (its backend fields are
            used by whoever builds `backend`).
        seed: the circuit angles, the mapping MLP and the completion each draw their
            initial values from their own stream derived from `seed`, so changing one of
            them (say, adding the GI network) leaves the others' initial values unchanged.
            None draws from torch's global stream.
    """

    def __init__(
        self,
        n_weights: int,
        backend: QPABackend,
        config: GeneratorConfig | None = None,
        *,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        from .config import GeneratorConfig

        cfg = config or GeneratorConfig()
        self.config = cfg
        self.n_weights = n_weights
        self.chunk_size = cfg.chunk_size
        self.n_chunks, self.n_qubits = qubits_for(n_weights, cfg.chunk_size)
        self.gamma, self.beta, self.alpha = cfg.gamma, cfg.beta, cfg.alpha
        self.circuit = ansatz(self.n_qubits, cfg.reps, rotation=cfg.rotation, entanglement=cfg.entanglement)
        with torch_seeded(seed, "circuit"):
            self.quantum = QuantumProbabilities(
                backend,
                self.circuit,
                completion=cfg.completion,
                completion_hidden=tuple(cfg.completion_hidden),
                seed=seed,
            )
        bits = (torch.arange(self.n_chunks)[:, None] >> torch.arange(self.n_qubits)) & 1
        self.register_buffer("labels", (1.0 - 2.0 * bits).float(), persistent=False)  # bit 0 -> +1
        widths = [self.n_qubits + 1, *cfg.hidden]
        layers: list[nn.Module] = []
        with torch_seeded(seed, "mapping"):
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), ACTIVATIONS[cfg.activation]()]
            last = nn.Linear(widths[-1], cfg.chunk_size)
            # Start the generated weights small (like LoRA's B = 0): the adapted model starts
            # close to the base model instead of far from it.
            nn.init.normal_(last.weight, std=0.01)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.mapping = nn.Sequential(*layers)

    def rescale(self, probs: torch.Tensor) -> torch.Tensor:
        """x = (beta * tanh(gamma * 2^(N-1) * p))^alpha, minus its mean over chunks.

        The base is clamped at 1e-12 before the power so an unmeasured state (p = 0 with
        finite shots) has a finite gradient.
        """
        base = self.beta * torch.tanh(self.gamma * 2 ** (self.n_qubits - 1) * probs)
        x = base.clamp_min(1e-12) ** self.alpha
        return x - x.mean()

    def forward(self) -> torch.Tensor:
        probs = self.quantum()[: self.n_chunks].float()
        inputs = torch.cat([self.labels, self.rescale(probs)[:, None]], dim=1)
        return self.mapping(inputs).reshape(-1)[: self.n_weights]

    def counts(self) -> dict[str, int]:
        """Trainable counts: circuit angles, mapping and completion weights; M generated."""
        completion = self.quantum.completion
        return {
            "circuit_angles": self.quantum.theta.numel(),
            "mapping": sum(p.numel() for p in self.mapping.parameters()),
            "completion": 0 if completion is None else sum(p.numel() for p in completion.parameters()),
            "generated": self.n_weights,
        }
