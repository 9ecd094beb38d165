"""The probability sources of :class:`~qpa_qiskit.generator.core.QPAGenerator`: where the 2^N
probabilities its mapping reads come from, one class per ``probabilities`` setting.

Every source answers the same questions (:class:`ProbabilitySource`): its probabilities for a
training step (or an evaluation), the names of its trainable parameters, the random states it
owns (for an exact resume), how far it moved from its start, and its trainable counts. A new
control is a new subclass added to :data:`SOURCES`; the generator has no branch on the name.

* ``circuit`` (:class:`CircuitSource`): the ansatz's angles trained on the backend (shots,
  gradient, completion and ``circuit_every`` as the backend and configuration say);
* ``frozen`` (:class:`FrozenSource`): the circuit at its initial angles, not trained; on a
  backend that samples, measured once per run and kept;
* ``uniform`` and ``fixed-random`` (:class:`FixedSource`): the uniform distribution and one
  seeded Porter-Thomas draw;
* ``softmax`` (:class:`SoftmaxSource`): 2^N trained logits, starting at the ideal distribution of
  the circuit's initial angles;
* ``none`` (:class:`NoSource`): no probabilities (the mapping reads x = 0).

State-dict keys: a source is not a child module of the generator; the generator registers the
source's trainable members under their names of old (``quantum``: the circuit's
:class:`~qpa_qiskit.qnn.QuantumProbabilities`, ``logits``), so checkpoints and parameter names
(``generator.quantum.theta``, ``generator.logits``) are what they were.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ..backends import QPABackend
from ..choices import CIRCUIT_SOURCES, PROBABILITIES, TRAINED_SOURCES
from ..circuits import ansatz
from ..errors import InputError
from ..qnn import QuantumProbabilities, initial_angles
from ..seeding import torch_seeded
from .config import GeneratorConfig


def porter_thomas(n_states: int, seed: int | None, name: str) -> torch.Tensor:
    """(n_states,) float64: one seeded draw of a Porter-Thomas distribution (normalised
    exponential weights), the distribution of a deep random circuit's probabilities."""
    with torch_seeded(seed, name):
        weights = torch.empty(n_states, dtype=torch.float64).exponential_()
    return weights / weights.sum()


def _tvd(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def _circuit(n_qubits: int, cfg: GeneratorConfig):
    return ansatz(n_qubits, cfg.reps, rotation=cfg.rotation, entanglement=cfg.entanglement)


class ProbabilitySource(nn.Module):
    """Where the generator's probabilities come from (the module docstring). Subclasses set
    :attr:`name` and override what differs; the defaults are a source with nothing trained,
    no circuit and no random state. Every source is made as ``cls(n_qubits, backend, cfg,
    seed)`` (:func:`make_source`), and draws its initial values from its own seeded streams."""

    name: ClassVar[str]
    evaluates_circuit: ClassVar[bool] = False  # evaluates the circuit on the backend
    takes_circuit_every: ClassVar[bool] = False  # ``circuit_every`` applies
    gives_probabilities: ClassVar[bool] = True  # False: the mapping reads x = 0
    trained: ClassVar[bool] = False  # has trainable parameters (they take ``circuit_lr``)

    def __init__(
        self, n_qubits: int, backend: QPABackend | None, cfg: GeneratorConfig, seed: int | None
    ) -> None:
        super().__init__()
        self.n_states = 2**n_qubits
        self.circuit = None  # the ansatz, where the source has one
        self.quantum: QuantumProbabilities | None = None
        self.logits: nn.Parameter | None = None

    def probabilities(self, step: int | None = None) -> torch.Tensor | None:
        """(2^N,) float64 probabilities for the 0-based training step `step` (None: an
        evaluation); None where the source gives none."""
        raise NotImplementedError

    def parameter_names(self) -> list[str]:
        """Names of the trainable parameters, as the generator registers them."""
        return []

    @property
    def rng_state(self) -> dict[str, Any]:
        """Random states (and kept probabilities) this source owns, for an exact resume."""
        return {}

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        pass

    def drift(self) -> dict[str, float]:
        """How far the source moved from its start (empty where nothing is trained)."""
        return {}

    def counts(self) -> dict[str, int]:
        """Trainable counts: circuit angles, probability logits, completion weights."""
        return {"circuit_angles": 0, "probability_logits": 0, "completion": 0}


class CircuitSource(ProbabilitySource):
    """``circuit``: the ansatz's angles trained on the backend. With ``circuit_every`` K the
    circuit runs at the steps s with s % K == 0 and its last probabilities are reused between
    them, detached (kept in :attr:`rng_state`)."""

    name = "circuit"
    evaluates_circuit = True
    takes_circuit_every = True
    trained = True

    def __init__(self, n_qubits: int, backend: QPABackend, cfg: GeneratorConfig, seed: int | None) -> None:
        super().__init__(n_qubits, backend, cfg, seed)
        self.circuit = _circuit(n_qubits, cfg)
        spsa = {}
        if cfg.gradient == "spsa":  # "shift": the adjoint method where the backend is exact
            spsa = {"spsa_samples": cfg.spsa_samples, "spsa_epsilon": cfg.spsa_epsilon}
        with torch_seeded(seed, "circuit"):
            self.quantum = QuantumProbabilities(
                backend,
                self.circuit,
                completion=cfg.completion,
                completion_hidden=tuple(cfg.completion_hidden),
                seed=seed,
                gradient="spsa" if cfg.gradient == "spsa" else "auto",
                **spsa,
            )
        self.circuit_every = cfg.circuit_every
        self.register_buffer("theta_start", self.quantum.theta.detach().clone(), persistent=False)
        self._measured: torch.Tensor | None = None  # the last probabilities, where they are kept

    @property
    def keeps_probabilities(self) -> bool:
        """Whether the circuit's last probabilities (before the completion) are reused."""
        return self.circuit_every > 1

    def probabilities(self, step: int | None = None) -> torch.Tensor:
        return self.quantum(self._kept_probabilities(step))

    def _kept_probabilities(self, step: int | None) -> torch.Tensor | None:
        """The circuit's probabilities to reuse for `step` instead of a new evaluation, or None
        (evaluate now). Measures and keeps them where they are kept (the measurement's gradient
        reaches the angles at the step that measures them, never later)."""
        if step is None or self.circuit_every == 1:
            return None
        if step % self.circuit_every == 0 or self._measured is None:
            measured = self.quantum.measure()
            self._measured = measured.detach()
            return measured
        return self._measured

    def parameter_names(self) -> list[str]:
        return ["quantum.theta"] if self.quantum.theta.requires_grad else []

    @property
    def rng_state(self) -> dict[str, Any]:
        """The backend's shot sampler, the completion's generator, the SPSA directions' stream,
        and the kept probabilities as a list of floats (None before the first measurement)."""
        state: dict[str, Any] = {"backend": self.quantum.backend.rng_state}
        if self.quantum.completion is not None:
            state["completion"] = self.quantum.completion.rng_state
        if self.quantum.spsa_stream is not None:
            state["spsa"] = self.quantum.spsa_stream.get_state()
        if self.keeps_probabilities:
            state["probabilities"] = None if self._measured is None else self._measured.tolist()
        return state

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        if state.get("backend") is not None:
            self.quantum.backend.rng_state = state["backend"]
        if self.quantum.completion is not None and state.get("completion") is not None:
            self.quantum.completion.rng_state = state["completion"]
        if self.quantum.spsa_stream is not None and state.get("spsa") is not None:
            self.quantum.spsa_stream.set_state(state["spsa"])
        if self.keeps_probabilities and "probabilities" in state:
            kept = state["probabilities"]
            self._measured = None if kept is None else torch.tensor(kept, dtype=torch.float64)

    @torch.no_grad()
    def drift(self) -> dict[str, float]:
        """The angles' largest and RMS change (radians) and the TVD between the initial and the
        current *ideal* (statevector) distribution, whatever the backend."""
        delta = (self.quantum.theta - self.theta_start).abs()
        ideal = QPABackend("statevector")
        now, start = (
            torch.from_numpy(ideal.probabilities(self.circuit, t.cpu().numpy())[0])
            for t in (self.quantum.theta.detach(), self.theta_start)
        )
        rms = float(delta.pow(2).mean().sqrt())
        return {"angle_drift_max": float(delta.max()), "angle_drift_rms": rms, "tvd_start": _tvd(now, start)}

    def counts(self) -> dict[str, int]:
        completion = self.quantum.completion
        return {
            "circuit_angles": self.quantum.theta.numel() if self.quantum.theta.requires_grad else 0,
            "probability_logits": 0,
            "completion": 0 if completion is None else sum(p.numel() for p in completion.parameters()),
        }


class FrozenSource(CircuitSource):
    """``frozen``: the circuit at its initial angles, not trained. On a backend that samples it
    is measured once per run, at the first step, and that sample serves every later step and
    the final weights (kept in :attr:`rng_state`)."""

    name = "frozen"
    takes_circuit_every = False
    trained = False

    def __init__(self, n_qubits: int, backend: QPABackend, cfg: GeneratorConfig, seed: int | None) -> None:
        super().__init__(n_qubits, backend, cfg, seed)
        self.quantum.theta.requires_grad_(False)
        self.measure_once = self.quantum.shots is not None

    @property
    def keeps_probabilities(self) -> bool:
        return self.measure_once

    def _kept_probabilities(self, step: int | None) -> torch.Tensor | None:
        if not self.measure_once:
            return None
        if self._measured is None:
            self._measured = self.quantum.measure().detach()
        return self._measured


class SoftmaxSource(ProbabilitySource):
    """``softmax``: a free distribution, softmax of 2^N trained logits, starting where the
    circuit starts: the ideal distribution at the circuit's initial angles (the same seeded
    draw), so only the parameterisation differs."""

    name = "softmax"
    trained = True

    def __init__(
        self, n_qubits: int, backend: QPABackend | None, cfg: GeneratorConfig, seed: int | None
    ) -> None:
        super().__init__(n_qubits, backend, cfg, seed)
        self.circuit = _circuit(n_qubits, cfg)
        with torch_seeded(seed, "circuit"):
            theta = initial_angles(self.circuit.num_parameters)
        start = QPABackend("statevector").probabilities(self.circuit, theta.numpy())[0]
        logits = torch.from_numpy(start).clamp_min(1e-12).log()
        self.logits = nn.Parameter(logits - logits.mean())
        self.register_buffer("logits_start", self.logits.detach().clone(), persistent=False)

    def probabilities(self, step: int | None = None) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def parameter_names(self) -> list[str]:
        return ["logits"]

    @torch.no_grad()
    def drift(self) -> dict[str, float]:
        """The TVD between the initial and the current softmax distribution."""
        return {"tvd_start": _tvd(torch.softmax(self.logits, 0), torch.softmax(self.logits_start, 0))}

    def counts(self) -> dict[str, int]:
        return {**super().counts(), "probability_logits": self.logits.numel()}


class FixedSource(ProbabilitySource):
    """``uniform``: the uniform distribution over the 2^N states, fixed."""

    name = "uniform"

    def __init__(
        self, n_qubits: int, backend: QPABackend | None, cfg: GeneratorConfig, seed: int | None
    ) -> None:
        super().__init__(n_qubits, backend, cfg, seed)
        self.register_buffer("fixed", self.distribution(seed), persistent=False)

    def distribution(self, seed: int | None) -> torch.Tensor:
        return torch.full((self.n_states,), 1.0 / self.n_states, dtype=torch.float64)

    def probabilities(self, step: int | None = None) -> torch.Tensor:
        return self.fixed


class FixedRandomSource(FixedSource):
    """``fixed-random``: one seeded Porter-Thomas draw, fixed."""

    name = "fixed-random"

    def distribution(self, seed: int | None) -> torch.Tensor:
        return porter_thomas(self.n_states, seed, "fixed-random")


class NoSource(ProbabilitySource):
    """``none``: no probabilities; the mapping reads x = 0 (its labels alone tell chunks apart)."""

    name = "none"
    gives_probabilities = False

    def probabilities(self, step: int | None = None) -> None:
        return None


# the one registry: a name of choices.PROBABILITIES -> its class
SOURCES: dict[str, type[ProbabilitySource]] = {
    cls.name: cls
    for cls in (CircuitSource, FrozenSource, FixedSource, FixedRandomSource, SoftmaxSource, NoSource)
}
if tuple(SOURCES) != PROBABILITIES:
    raise AssertionError(f"choices.PROBABILITIES must name SOURCES {tuple(SOURCES)}")
if tuple(n for n, c in SOURCES.items() if c.evaluates_circuit) != CIRCUIT_SOURCES:
    raise AssertionError("choices.CIRCUIT_SOURCES must name the sources that evaluate the circuit")
if tuple(n for n, c in SOURCES.items() if c.trained) != TRAINED_SOURCES:
    raise AssertionError("choices.TRAINED_SOURCES must name the sources with trainable parameters")


def make_source(
    cfg: GeneratorConfig, backend: QPABackend | None, *, n_weights: int, n_qubits: int, seed: int | None
) -> ProbabilitySource:
    """The source ``cfg.probabilities`` names, checked against the backend (a circuit source
    needs a :class:`QPABackend` wide enough for N qubits) and ``circuit_every``."""
    name = cfg.probabilities
    cls = SOURCES[name]
    if cls.evaluates_circuit:
        if not isinstance(backend, QPABackend):
            raise InputError(
                f"probabilities {name!r} evaluate the circuit and need a QPABackend, got "
                f"{type(backend).__name__}"
            )
        width = backend.num_qubits
        if width is not None and n_qubits > width:
            fits, n_chunks = math.ceil(n_weights / 2**width), math.ceil(n_weights / cfg.chunk_size)
            raise InputError(
                f"{n_weights:,} weights in chunks of {cfg.chunk_size:,} are {n_chunks:,} chunks, which "
                f"need {n_qubits} qubits; {backend.name} has {width}. Use a chunk size of at least "
                f"{fits:,}"
            )
    if cfg.circuit_every != 1 and not cls.takes_circuit_every:
        raise InputError(
            f"circuit_every {cfg.circuit_every} sets how often a trained circuit runs; probabilities "
            f"{name!r} train no circuit. Leave circuit_every at 1, or use probabilities 'circuit'"
        )
    return cls(n_qubits, backend, cfg, seed)
