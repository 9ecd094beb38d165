"""Torch layer: circuit angles in, 2^N outcome probabilities out, exact or shot-based gradients.

Three ways to the vector-Jacobian product g · dp/dθ: the adjoint method (``QPABackend.vjp``:
exact probabilities, about three passes over the circuit) where the backend gives exact
probabilities, else the parameter-shift rule (2P + 1 parameter sets in one submission, the
estimator shots need). Both are exact for exact backends and agree to rounding. The third,
SPSA (simultaneous perturbation), is the one a QPU can afford: 1 + 2K parameter sets in one
submission whatever P is, an estimate averaged over K random directions.

SPSA's mean, exactly: each parameter is the angle of one Pauli rotation (:func:`check_shift_rule`),
so p has degree one in each angle's cos and sin, and for Δ_k = ±1 a shift by εΔ_k scales that
angle's cos/sin part by cos ε and adds Δ_k sin ε times its derivative. Averaging over the
directions, E[estimate] = tan(ε)/ε · g · ∇p̃(θ), where p̃(θ) = E_Δ[p(θ + εΔ)] is the circuit
with every angle over-rotated by ±ε at random: SPSA follows the gradient of that smoothed
circuit, which tends to p's own as ε → 0 (at P = 56 and ε = 0.2 it is measured at about 0.57
of it, at cosine 0.99: docs/ibm.md; tests check the identity exactly).

Why SPSA is written here and not taken from qiskit-machine-learning's
``SPSASamplerGradient``: its random generator is a private attribute (``self._seed``, a numpy
Generator) that a checkpoint cannot save without reaching into private state, so a resumed
run would not draw the directions an uninterrupted one draws; it returns the whole P x 2^N
Jacobian as per-parameter dicts where the backward pass needs one vector; and it submits its
own Sampler jobs, apart from the forward evaluation, while a step here is exactly one
labelled submission through :meth:`QPABackend.probabilities` (hardware in the loop: one
recorded job).
"""

from __future__ import annotations

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from .backends import QPABackend
from .choices import SPSA_EPSILON
from .completion import GenerativeInterpolation
from .errors import InputError
from .seeding import derived_seed, torch_seeded
from .validate import one_of, perturbation, positive_int

GRADIENTS = ("auto", "adjoint", "shift", "spsa")

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


def spsa_parameter_sets(values: np.ndarray, directions: np.ndarray, epsilon: float) -> np.ndarray:
    """(1 + 2K, P): the forward set, then θ + ε Δ_j and θ - ε Δ_j for every direction Δ_j
    (the K rows of `directions`) in turn."""
    k = directions.shape[0]
    rows = np.empty((2 * k + 1, values.shape[0]))
    rows[0] = values
    rows[1::2] = values + epsilon * directions
    rows[2::2] = values - epsilon * directions
    return rows


def rademacher(k: int, n: int, stream: torch.Generator) -> np.ndarray:
    """(k, n) float64 directions of independent ±1 entries, each sign with probability 1/2,
    drawn from `stream` (a seeded torch generator, whose state a checkpoint saves)."""
    return (torch.randint(0, 2, (k, n), generator=stream) * 2 - 1).double().numpy()


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


class _SPSA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, layer, needs_grad):  # type: ignore[override]
        values = theta.detach().cpu().double().numpy()
        if needs_grad:
            directions = rademacher(layer.spsa_samples, values.shape[0], layer.spsa_stream)
            sets = spsa_parameter_sets(values, directions, layer.spsa_epsilon)
            probs = layer.backend.probabilities(layer.circuit, sets)
            ctx.save_for_backward(torch.from_numpy(probs[1::2] - probs[2::2]), torch.from_numpy(directions))
            ctx.epsilon = layer.spsa_epsilon
        else:
            probs = layer.backend.probabilities(layer.circuit, values)
        return torch.from_numpy(probs[0]).to(device=theta.device)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        difference, directions = ctx.saved_tensors
        # g · dp/dθ ≈ (1/K) Σ_j [g · (p(θ + ε Δ_j) - p(θ - ε Δ_j)) / (2 ε)] Δ_j
        along = difference.to(grad_output.device) @ grad_output.double() / (2 * ctx.epsilon)
        grad = along @ directions.to(grad_output.device) / directions.shape[0]
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
    * ``"auto"`` (default): ``"adjoint"`` where the backend can, else ``"shift"``;
    * ``"spsa"``: the forward set and 2K perturbed sets θ ± ε Δ_j (Δ_j, j = 1..K, Rademacher
      directions from the layer's own seeded stream, :attr:`spsa_stream`) as one submission;
      backward forms (1/K) Σ_j [g · (p(θ+εΔ_j) - p(θ-εΔ_j)) / (2ε)] Δ_j, whose mean over the
      directions is tan(ε)/ε · g · ∇E_Δ[p(θ+εΔ)] (the module docstring). On an exact
      backend the shifted sets' probabilities are exact (a control: what SPSA's randomness
      costs without shot noise).

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
        seed: seeds the completion's own initial values and random stream and the SPSA
            directions' stream (see :mod:`qpa_qiskit.seeding`); None draws the completion's
            from torch's global stream and seeds the SPSA stream with 0.
        gradient: "auto", "adjoint", "shift" or "spsa" (above).
        spsa_samples: gradient "spsa": K, the directions per evaluation (default 1).
        spsa_epsilon: gradient "spsa": the perturbation size ε (default
            :data:`~qpa_qiskit.choices.SPSA_EPSILON`).
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
        spsa_samples: int | None = None,
        spsa_epsilon: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backend, QPABackend):
            raise InputError(f"backend must be a QPABackend, got {type(backend).__name__}")
        gradient = one_of(gradient, "gradient", GRADIENTS)
        self._set_spsa(gradient, spsa_samples, spsa_epsilon, seed)
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
        reason = None if gradient == "spsa" else backend.gradient_unavailable(circuit)
        if gradient == "adjoint" and reason is not None:
            raise InputError(f"gradient='adjoint' is not possible on {backend.name}: {reason}")
        if gradient in ("spsa", "shift"):
            self.gradient = gradient
        else:
            self.gradient = "shift" if reason is not None else "adjoint"

    def _set_spsa(
        self, gradient: str, spsa_samples: int | None, spsa_epsilon: float | None, seed: int | None
    ) -> None:
        """The SPSA gradient's settings (K, ε and its directions' stream) for gradient "spsa";
        for the others, no stream, and SPSA settings given are refused."""
        self.spsa_stream: torch.Generator | None = None
        if gradient == "spsa":
            self.spsa_samples = positive_int(1 if spsa_samples is None else spsa_samples, "spsa_samples")
            self.spsa_epsilon = perturbation(
                SPSA_EPSILON if spsa_epsilon is None else spsa_epsilon, "spsa_epsilon"
            )
            stream_seed = 0 if seed is None else derived_seed(seed, "spsa")
            self.spsa_stream = torch.Generator().manual_seed(stream_seed)
        else:
            settings = {"spsa_samples": spsa_samples, "spsa_epsilon": spsa_epsilon}
            given = [name for name, value in settings.items() if value is not None]
            if given:
                raise InputError(
                    f"{' and '.join(given)} set(s) the SPSA gradient, and gradient is {gradient!r}; "
                    "drop them, or pass gradient='spsa'"
                )

    def measure(self) -> torch.Tensor:
        """The circuit's (2^N,) probabilities at the current angles, before any completion: one
        submission to the backend (with the gradient's parameter sets where the angles need a
        gradient), differentiable in the angles."""
        needs_grad = torch.is_grad_enabled() and self.theta.requires_grad
        method = {"adjoint": _Adjoint, "shift": _ParameterShift, "spsa": _SPSA}[self.gradient]
        return method.apply(self.theta, self, needs_grad)

    def complete(self, probs: torch.Tensor) -> torch.Tensor:
        """`probs` (what :meth:`measure` returned) through the completion, where there is one."""
        return probs if self.completion is None else self.completion(probs, shots=self.shots)

    def forward(self, measured: torch.Tensor | None = None) -> torch.Tensor:
        """The probabilities: the circuit measured now, or `measured` (probabilities measured
        before, by :meth:`measure`: a cached evaluation, no submission), then completed."""
        return self.complete(self.measure() if measured is None else measured)

    def extra_repr(self) -> str:
        spsa = ""
        if self.gradient == "spsa":
            spsa = f", spsa_samples={self.spsa_samples}, spsa_epsilon={self.spsa_epsilon:g}"
        return (
            f"backend={self.backend.name!r}, parameters={self.theta.numel()}, outcomes={self.n_outcomes}, "
            f"gradient={self.gradient!r}{spsa}"
        )
