"""QPA parameter generator: circuit probabilities + a mapping MLP -> a vector of M weights."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .backends import QPABackend
from .circuits import ansatz
from .errors import InputError
from .qnn import QuantumProbabilities

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


def qubits_for(n_weights: int, chunk_size: int) -> tuple[int, int]:
    """(n_chunks, N): n_ch = ceil(M / n_mlp) chunks need N = ceil(log2 n_ch) qubits (N >= 1)."""
    if isinstance(n_weights, bool) or not isinstance(n_weights, int) or n_weights < 1:
        raise InputError(f"the number of weights to generate must be a positive integer, got {n_weights!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk size must be a positive integer, got {chunk_size!r}")
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
        chunk_size: n_mlp, weights per chunk (the MLP's output width).
        backend: the :class:`QPABackend` that evaluates the circuit.
        reps, rotation, entanglement: the :func:`ansatz`.
        hidden: hidden widths of the mapping MLP.
        activation: "gelu", "relu", "tanh" or "silu".
        gamma, beta, alpha: the probability rescaling (published defaults 0.1, 0.60, 0.15).
        completion, completion_hidden: passed to :class:`QuantumProbabilities` ("gi" fills
            the states finite shots never measured).
    """

    def __init__(
        self,
        n_weights: int,
        chunk_size: int,
        backend: QPABackend,
        *,
        reps: int = 8,
        rotation: str = "ry",
        entanglement: str = "linear",
        hidden: tuple[int, ...] = (32, 32),
        activation: str = "gelu",
        gamma: float = 0.1,
        beta: float = 0.60,
        alpha: float = 0.15,
        completion: str = "none",
        completion_hidden: tuple[int, ...] = (16,),
    ) -> None:
        super().__init__()
        self.n_weights = n_weights
        self.chunk_size = chunk_size
        self.n_chunks, self.n_qubits = qubits_for(n_weights, chunk_size)
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise InputError(f"hidden widths must be positive integers, got {hidden!r}")
        for name, value in (("gamma", gamma), ("beta", beta), ("alpha", alpha)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a number > 0, got {value!r}")
        self.gamma, self.beta, self.alpha = float(gamma), float(beta), float(alpha)
        self.circuit = ansatz(self.n_qubits, reps, rotation=rotation, entanglement=entanglement)
        self.quantum = QuantumProbabilities(
            backend, self.circuit, completion=completion, completion_hidden=completion_hidden
        )
        bits = (torch.arange(self.n_chunks)[:, None] >> torch.arange(self.n_qubits)) & 1
        self.register_buffer("labels", (1.0 - 2.0 * bits).float(), persistent=False)  # bit 0 -> +1
        widths = [self.n_qubits + 1, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        last = nn.Linear(widths[-1], chunk_size)
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
