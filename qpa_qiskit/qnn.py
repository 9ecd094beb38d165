"""Torch layer: circuit angles in, 2^N outcome probabilities out, exact or shot-based gradients.

Two ways to the vector-Jacobian product g · dp/dθ: the adjoint method (``QPABackend.vjp``:
exact probabilities, about three passes over the circuit) where the backend gives exact
probabilities, else the parameter-shift rule (2P + 1 parameter sets in one submission, the
estimator shots need). Both are exact for exact backends and agree to rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from .backends import QPABackend
from .completion import GenerativeInterpolation
from .errors import InputError
from .seeding import derived_seed, torch_seeded
from .validate import one_of

GRADIENTS = ("auto", "adjoint", "shift")

# Gates exp(-i θ G / 2) with G a Pauli string: the two-term shift rule with ±π/2 is exact.
SHIFT_RULE_GATES = frozenset({"rx", "ry", "rz", "rxx", "ryy", "rzz", "rzx"})


def check_shift_rule(circuit: QuantumCircuit) -> None:
    """Raise unless every parameter enters exactly one Pauli rotation as its bare angle."""
    uses: dict[Parameter, list[str]] = {p: [] for p in circuit.parameters}
    for inst in circuit.data:
        for value in inst.operation.params:
            for p in getattr(value, "parameters", ()):
                ok = inst.operation.name in SHIFT_RULE_GATES and value == p
                uses[p].append(inst.operation.name if ok else f"{inst.operation.name}({value})")
    for p, names in uses.items():
        if len(names) != 1 or names[0] not in SHIFT_RULE_GATES:
            raise InputError(
                f"parameter {p} appears as {names or 'nothing'}; the parameter-shift rule "
                f"needs each parameter as the bare angle of exactly one of {sorted(SHIFT_RULE_GATES)}"
            )


def initial_angles(n: int) -> torch.Tensor:
    """(n,) float64 angles uniform in [0, 2π) from torch's default generator: the circuit's
    starting point (the softmax control of the generator starts from the same draw)."""
    return torch.rand(n, dtype=torch.float64) * (2 * np.pi)


def shifted_parameter_sets(values: np.ndarray, shift: float = np.pi / 2) -> np.ndarray:
    """(2P+1, P): the forward set, then θ + s e_k and θ - s e_k for every k in turn."""
    n = values.shape[0]
    eye = np.eye(n) * shift
    rows = np.empty((2 * n + 1, n))
    rows[0] = values
    rows[1::2] = values + eye
    rows[2::2] = values - eye
    return rows


class _ParameterShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, layer, needs_grad):  # type: ignore[override]
        values = theta.detach().cpu().double().numpy()
        if needs_grad:
            probs = layer.backend.probabilities(layer.circuit, shifted_parameter_sets(values))
            ctx.save_for_backward(torch.from_numpy(probs[1::2] - probs[2::2]))
        else:
            probs = layer.backend.probabilities(layer.circuit, values)
        return torch.from_numpy(probs[0]).to(device=theta.device)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        (difference,) = ctx.saved_tensors
        # d p / d θ_k = (p(θ + π/2 e_k) - p(θ - π/2 e_k)) / 2; vjp_k = g · that
        grad = 0.5 * difference.to(grad_output.device) @ grad_output.double()
        return grad.to(grad_output.dtype), None, None


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, layer, needs_grad):  # type: ignore[override]
        values = theta.detach().cpu().double().numpy()
        if needs_grad:
            probs, ctx.pullback = layer.backend.vjp(layer.circuit, values)
        else:
            probs = layer.backend.probabilities(layer.circuit, values)[0]
        return torch.from_numpy(probs).to(device=theta.device)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad = ctx.pullback(grad_output.detach().cpu().double().numpy())
        del ctx.pullback  # what the forward pass kept for this backward pass goes now
        return torch.from_numpy(grad).to(device=grad_output.device, dtype=grad_output.dtype), None, None


class QuantumProbabilities(torch.nn.Module):
    """The 2^N outcome probabilities of `circuit` on `backend`, with trainable angles.

    ``forward()`` returns a float64 tensor of shape (2^N,). Gradients (``gradient``):

    * ``"adjoint"``: the backend's exact vector-Jacobian product (:meth:`QPABackend.vjp`),
      for backends with exact probabilities (``statevector``, ``aer_noisy`` without shots);
    * ``"shift"``: the forward set and all 2P shifted sets go to the backend as one
      submission; backward forms g · (p(θ+π/2 e_k) - p(θ-π/2 e_k)) / 2 from the upstream
      gradient g. Exact backends give exact gradients; with shots it is the standard
      shot-based parameter-shift estimator;
    * ``"auto"`` (default): ``"adjoint"`` where the backend can, else ``"shift"``.

    Args:
        backend: a :class:`QPABackend`.
        circuit: parameterised circuit; each parameter the angle of one Pauli rotation.
        init: initial angles (P,) in ``circuit.parameters`` order; default uniform in [0, 2π)
            from torch's random generator (so ``torch.manual_seed`` fixes it).
        completion: fill the states finite shots never measured: "none", "gi" (Generative
            Interpolation, trained with the rest), "uniform" or "random"; see
            :mod:`qpa_qiskit.completion`. Gradients flow through it into its network and,
            by the parameter-shift product, into the angles.
        completion_hidden: hidden widths of the GI network.
        seed: seeds the completion's own initial values and random stream (see
            :mod:`qpa_qiskit.seeding`); None draws them from torch's global stream.
        gradient: "auto", "adjoint" or "shift" (above).
    """

    def __init__(
        self,
        backend: QPABackend,
        circuit: QuantumCircuit,
        init=None,
        completion: str = "none",
        completion_hidden: tuple[int, ...] = (16,),
        seed: int | None = None,
        gradient: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(backend, QPABackend):
            raise InputError(f"backend must be a QPABackend, got {type(backend).__name__}")
        gradient = one_of(gradient, "gradient", GRADIENTS)
        check_shift_rule(circuit)
        n = circuit.num_parameters
        if n == 0:
            raise InputError("the circuit has no parameters to train")
        if init is None:
            theta = initial_angles(n)
        else:
            theta = torch.as_tensor(np.asarray(init, dtype=float), dtype=torch.float64).clone()
            if theta.shape != (n,):
                raise InputError(f"init must have shape ({n},), got {tuple(theta.shape)}")
        self.backend = backend
        self.circuit = circuit
        self.theta = torch.nn.Parameter(theta)
        n_bits = backend.num_outcome_bits(circuit)
        self.n_outcomes = 2**n_bits
        self.completion = None
        if completion != "none":
            with torch_seeded(seed, "completion"):
                self.completion = GenerativeInterpolation(
                    n_bits,
                    hidden=completion_hidden,
                    mode=completion,
                    seed=0 if seed is None else derived_seed(seed, "completion-random"),
                )
        self.shots = backend.num_shots(n_bits)
        reason = backend.gradient_unavailable(circuit)
        if gradient == "adjoint" and reason is not None:
            raise InputError(f"gradient='adjoint' is not possible on {backend.name}: {reason}")
        self.gradient = "shift" if gradient == "shift" or reason is not None else "adjoint"

    def forward(self) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and self.theta.requires_grad
        method = _Adjoint if self.gradient == "adjoint" else _ParameterShift
        probs = method.apply(self.theta, self, needs_grad)
        if self.completion is not None:
            probs = self.completion(probs, shots=self.shots)
        return probs

    def extra_repr(self) -> str:
        return (
            f"backend={self.backend.name!r}, parameters={self.theta.numel()}, outcomes={self.n_outcomes}, "
            f"gradient={self.gradient!r}"
        )
