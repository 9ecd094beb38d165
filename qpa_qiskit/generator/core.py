"""Weight generators: a probability vector + a mapping network -> a vector of M weights.

:class:`QPAGenerator` is QPA's generator. Chunk c (of n_ch = ceil(M / n_mlp)) is fed N
label bits as ±1 and its rescaled probability x_c = (beta * tanh(gamma * 2^(N-1) * p_c))^alpha;
a mapping network turns those N+1 numbers into n_mlp weights, and the chunks are concatenated
and cut to M. Its settings (:class:`~qpa_qiskit.generator.config.GeneratorConfig`) cover two designs:

* ours (the defaults): chunk c always reads basis state c's bits (``labels="fixed"``), a GELU
  MLP (``mapping="mlp"``), x centred over the chunks, no centring of the output;
* the published one (CYLphysics/QPA, ``qpa_lora.py``; ``preset="paper"``): a fresh random
  assignment of distinct bitstrings to chunks at every training step (``labels="random"``), so
  the bits carry no chunk identity and p_c is the only input that tells chunks apart; a deep
  linear chain with no activation (``mapping="linear"``); x centred over all 2^N states; the
  generated vector centred by its own mean.

Where the probabilities come from is a setting too (``probabilities``), so that what the
circuit adds can be measured against classical stand-ins with every other initial value
shared: the trained circuit, the circuit frozen at its initial angles, the uniform
distribution, one fixed Porter-Thomas draw, a free softmax distribution, or none at all. Each
is a class behind one interface (:mod:`.sources`); the generator asks its source and does not
branch on its name.

:class:`LowRankGenerator` is the purely classical peer: the generated chunks as H @ C.

How often the circuit runs (a QPU bills every shot): with ``circuit_every`` K the circuit and
its gradient run at the training steps whose 0-based index s has s % K == 0; between them
:meth:`QPAGenerator.forward` reuses the last probabilities, detached (no evaluation; the angles
get no gradient, the mapping and the completion train). A frozen circuit on a backend that
samples is measured once per run, at the first step, and that sample serves every later step
and the final weights. The kept probabilities are part of :attr:`QPAGenerator.rng_state`, so a
checkpoint resumes exactly. Final weights with ``circuit_every`` measure afresh, as always.

Random labels and evaluation: the trained result must be one classical adapter, so
:meth:`QPAGenerator.final_weights` (what evaluation and export use) gives the *expected*
adapter over the label draws. Each chunk's label is uniform over the 2^N bitstrings (its
marginal under a random assignment of distinct ones), and the mapping acts on each chunk
alone, so that expectation is exactly the mean of the mapping's output over the 2^N
bitstrings; for the linear mapping it is the output at the mean label, 0.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import validate
from ..choices import (  # noqa: F401 - the tables of names, re-exported (qpa_qiskit.choices)
    ACTIVATION_NAMES,
    CIRCUIT_SOURCES,
    COUNTERFACTUALS,
    DEFAULT_WIDTHS,
    LABELS,
    MAPPING_INITS,
    MAPPINGS,
    OUTPUT_CENTRINGS,
    PROBABILITIES,
    TRAINED_SOURCES,
    X_CENTRINGS,
)
from ..errors import InputError
from ..seeding import derived_seed, torch_seeded
from .config import GeneratorConfig
from .sources import make_source, porter_thomas

if TYPE_CHECKING:
    from ..backends import QPABackend
    from ..qnn import QuantumProbabilities

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}
if tuple(ACTIVATIONS) != ACTIVATION_NAMES:
    raise AssertionError(f"choices.ACTIVATION_NAMES must name ACTIVATIONS {tuple(ACTIVATIONS)}")


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


def mapping_widths(cfg: GeneratorConfig) -> tuple[int, ...]:
    """The mapping's hidden widths: the configured ones, or its kind's default."""
    return tuple(cfg.hidden) if cfg.hidden is not None else DEFAULT_WIDTHS[cfg.mapping]


def qpa_trainable(n_weights: int, cfg: GeneratorConfig) -> int:
    """Trainable parameters of a QPA generator with a trained circuit (angles + mapping), from
    the configuration alone: the count a low-rank peer is matched to."""
    _, n_qubits = qubits_for(n_weights, cfg.chunk_size)
    widths = [n_qubits + 1, *mapping_widths(cfg), cfg.chunk_size]
    mapping = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    return n_qubits * cfg.reps + mapping


def basis_bits(n_states: int, n_qubits: int) -> torch.Tensor:
    """(n_states, N) float32: state i's bits as ±1, bit q of i in column q (bit 0 -> +1)."""
    bits = (torch.arange(n_states)[:, None] >> torch.arange(n_qubits)) & 1
    return (1.0 - 2.0 * bits).float()


def split_weights(
    vector: torch.Tensor, shapes: dict[str, torch.Size], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """A generated vector cut, in order, into tensors of the given shapes, by name: what
    ``torch.func.functional_call`` takes in place of a module's own tensors."""
    out, start = {}, 0
    for name, shape in shapes.items():
        out[name] = vector[start : start + shape.numel()].reshape(shape).to(dtype)
        start += shape.numel()
    return out


@torch.no_grad()
def chunk_spread(vector: torch.Tensor, chunk_size: int) -> float:
    """How different the generated chunks are: the relative distance ||W - mean chunk|| / ||W||
    of the full chunks W (n x chunk_size; a last partial chunk is left out). 0: every chunk is
    the same vector, the adapter one chunk repeated; 1: chunks with no common part."""
    n = vector.numel() // chunk_size
    if n < 2:
        return 0.0
    chunks = vector[: n * chunk_size].reshape(n, chunk_size).float()
    return float((chunks - chunks.mean(0)).norm() / chunks.norm().clamp_min(1e-30))


def build_mapping(
    cfg: GeneratorConfig, widths: list[int], *, seed: int | None, start_small: bool
) -> nn.Sequential:
    """The mapping network: Linear layers through `widths` (with the configured activation
    between them for ``mapping="mlp"``) and a last one to ``cfg.chunk_size``, from the seeded
    stream "mapping" (``start_small``: see :class:`QPAGenerator`)."""
    layers: list[nn.Module] = []
    with torch_seeded(seed, "mapping"):
        for a, b in itertools.pairwise(widths):
            layers.append(nn.Linear(a, b))
            if cfg.mapping == "mlp":
                layers.append(ACTIVATIONS[cfg.activation]())
        last = nn.Linear(widths[-1], cfg.chunk_size)
        if cfg.mapping_init == "small":
            if start_small:
                # Start the generated weights small (like LoRA's B = 0): the adapted model starts
                # close to the base model instead of far from it.
                nn.init.normal_(last.weight, std=0.01)
            # The bias is added to every chunk alike: a random one would shift all generated
            # weights by a common offset (for a whole network, enough to silence every ReLU).
            nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class QPAGenerator(nn.Module):
    """Generates M classical weights from 2^N probabilities (see the module docstring).

    Args:
        n_weights: M, how many weights to generate.
        backend: the :class:`QPABackend` that evaluates the circuit; only the ``circuit``
            and ``frozen`` probability sources use one (None is accepted for the others).
        config: a :class:`~qpa_qiskit.generator.config.GeneratorConfig`: chunk size n_mlp, the ansatz,
            the labels, the mapping, the rescaling and centrings, the probability source,
            the completion (its backend fields are used by whoever builds `backend`).
        seed: the circuit angles, the mapping, the completion, the label draws and the fixed
            random distribution each draw from their own stream derived from `seed`, so
            changing one of them (say, the probability source) leaves the others' initial
            values unchanged. None draws from torch's global stream.
        start_small: with ``mapping_init="small"``, the mapping's last weights start at std 0.01
            (adapters: the adapted model starts near the base model); False keeps torch's
            default there, so a whole network generated by :class:`~qpa_qiskit.QuantumTrain`
            starts at a trainable scale. The last bias starts at zero either way.
            ``mapping_init="torch"`` keeps torch's default initialisation everywhere, as the
            published code does.
    """

    def __init__(
        self,
        n_weights: int,
        backend: QPABackend | None,
        config: GeneratorConfig | None = None,
        *,
        seed: int | None = 0,
        start_small: bool = True,
    ) -> None:
        super().__init__()
        cfg = config or GeneratorConfig()
        self.config = cfg
        self.n_weights = n_weights
        self.chunk_size = cfg.chunk_size
        self.n_chunks, self.n_qubits = qubits_for(n_weights, cfg.chunk_size)
        self.n_states = 2**self.n_qubits
        self.source = cfg.probabilities
        source = make_source(cfg, backend, n_weights=n_weights, n_qubits=self.n_qubits, seed=seed)
        # held outside the module tree, so that state-dict keys, parameter and buffer names stay what
        # they were: its members (the circuit's ``quantum`` module, the ``logits``, the kept
        # ``theta_start``, ``logits_start`` or ``fixed``) are registered here, under their own names
        object.__setattr__(self, "probability_source", source)
        self.quantum: QuantumProbabilities | None = source.quantum
        self.logits: nn.Parameter | None = source.logits
        for name, buffer in source.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=False)
        self.register_load_state_dict_post_hook(QPAGenerator._share_with_source)
        self.circuit_every = cfg.circuit_every
        self.gamma, self.beta, self.alpha = cfg.gamma, cfg.beta, cfg.alpha
        self.register_buffer("labels", basis_bits(self.n_chunks, self.n_qubits), persistent=False)
        self.random_labels = cfg.labels == "random"
        if self.random_labels:
            self.register_buffer("all_labels", basis_bits(self.n_states, self.n_qubits), persistent=False)
        self._label_stream = torch.Generator().manual_seed(
            0 if seed is None else derived_seed(seed, "labels")
        )
        self._seed = seed
        self.widths = [self.n_qubits + 1, *mapping_widths(cfg)]
        self.mapping = build_mapping(cfg, self.widths, seed=seed, start_small=start_small)

    def _apply(self, fn, recurse: bool = True):
        # .to(), .double(), ...: a tensor may be replaced by a converted one
        super()._apply(fn, recurse)
        self._share_with_source()
        return self

    def _share_with_source(self, *_: Any) -> None:
        """Point the source's own parameters and buffers at the generator's (after a conversion
        or a ``load_state_dict(assign=True)`` replaced them); its modules are the same objects."""
        source = self.probability_source
        for name, _ in source.named_parameters(recurse=False):
            setattr(source, name, getattr(self, name))
        for name, _ in source.named_buffers(recurse=False):
            source.register_buffer(name, getattr(self, name), persistent=False)

    @property
    def circuit(self):
        """The ansatz of the probability source (``circuit``, ``frozen``, ``softmax``), or None."""
        return self.probability_source.circuit

    # ------------------------------------------------------------------ probabilities
    def probabilities(self, step: int | None = None) -> torch.Tensor | None:
        """The (2^N,) float64 probabilities the mapping reads now (None: the ``none`` source).

        `step`: the 0-based index of the training step they are for (with ``circuit_every``
        K the circuit runs where step % K == 0, the last probabilities are reused between);
        None: an evaluation, which measures the circuit afresh (once per run where the frozen
        circuit is sampled: see the module docstring)."""
        return self.probability_source.probabilities(step)

    def rescale(self, probs: torch.Tensor) -> torch.Tensor:
        """x = (beta * tanh(gamma * 2^(N-1) * p))^alpha of the (2^N,) or (n_chunks,) vector
        `probs`, centred as configured (over the chunks, over all 2^N states, or not), for the
        n_chunks chunks.

        The base is clamped at 1e-12 before the power so an unmeasured state (p = 0 with
        finite shots) has a finite gradient.
        """
        if self.config.x_centring != "states":
            probs = probs[: self.n_chunks]
        base = self.beta * torch.tanh(self.gamma * 2 ** (self.n_qubits - 1) * probs)
        x = base.clamp_min(1e-12) ** self.alpha
        if self.config.x_centring == "none":
            return x
        return (x - x.mean())[: self.n_chunks]

    def _inputs(self, probs: torch.Tensor | None) -> torch.Tensor:
        """(n_chunks,) float32 x values, on the mapping's device; zeros where there are no
        probabilities."""
        if probs is None:
            return torch.zeros(self.n_chunks, device=self.labels.device)
        if self.config.x_centring != "states":
            probs = probs[: self.n_chunks]  # the float32 rescaling of the chunks' share, as before
        return self.rescale(probs.float()).to(self.labels.device)

    def place(self, device: torch.device | str) -> None:
        """Put the mapping network and the labels on `device` (a run's device). The probability
        source stays on the CPU, beside the circuit's evaluation (numpy, float64: MPS has no
        float64): the angles, softmax logits, fixed distributions and the completion; only the
        rescaled x (n_chunks float32 values) moves to the device each step."""
        self.mapping.to(device)
        self.labels = self.labels.to(device)
        if self.random_labels:
            self.all_labels = self.all_labels.to(device)

    # ------------------------------------------------------------------ labels
    def draw_labels(self) -> torch.Tensor:
        """(n_chunks, N): a fresh assignment of distinct basis bitstrings to the chunks, from
        the generator's own seeded stream (checkpointed: :attr:`rng_state`)."""
        order = torch.randperm(self.n_states, generator=self._label_stream)[: self.n_chunks]
        return self.all_labels[order.to(self.all_labels.device)]

    @property
    def rng_state(self) -> dict[str, Any]:
        """Random states this generator owns beyond torch's global one: the backend's shot
        sampler, the completion's generator, the label stream and the SPSA directions' stream;
        and the circuit's probabilities it reuses (``circuit_every``, a sampled frozen circuit)
        as a list of floats, None before the first measurement (for an exact resume)."""
        return {"labels": self._label_stream.get_state(), **self.probability_source.rng_state}

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        if state.get("labels") is not None:
            self._label_stream.set_state(state["labels"])
        self.probability_source.rng_state = state

    # ------------------------------------------------------------------ weights
    def _weights(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([labels, x[:, None]], dim=1)
        return self._finish(self.mapping(inputs).reshape(-1))

    def _finish(self, vector: torch.Tensor) -> torch.Tensor:
        out = vector[: self.n_weights]
        return out - out.mean() if self.config.output_centring == "mean" else out

    def forward(self, step: int | None = None) -> torch.Tensor:
        """The weights of a training step: with random labels, a fresh draw of them. `step`:
        the step's 0-based index (the run's step count before it), which ``circuit_every``
        needs (:meth:`probabilities`)."""
        if step is None and self.circuit_every > 1:
            raise InputError(
                f"circuit_every {self.circuit_every} runs the circuit once every {self.circuit_every} "
                "training steps, and this training step came without its index: call the generator "
                "with step=<the 0-based step> (qpa train does), or leave circuit_every at 1"
            )
        labels = self.draw_labels() if self.random_labels else self.labels
        return self._weights(self._inputs(self.probabilities(step)), labels)

    def final_weights(self, probabilities: torch.Tensor | None = None) -> torch.Tensor:
        """The trained adapter's weights: what evaluation and export use. Fixed labels: the
        same as a training step. Random labels: the expected weights over the label draws
        (the module docstring says why that is exact). `probabilities` (2^N,) replaces the
        source's output (a counterfactual evaluation)."""
        probs = self.probabilities() if probabilities is None else probabilities
        x = self._inputs(probs)
        if not self.random_labels:
            return self._weights(x, self.labels)
        total = torch.zeros(self.n_chunks * self.chunk_size, device=x.device)
        # blocks of states, each fed to every chunk: about 2^24 floats of output at a time
        block = max(1, 2**24 // (self.n_chunks * max(self.chunk_size, *self.widths)))
        for start in range(0, self.n_states, block):
            labels = self.all_labels[start : start + block]
            inputs = torch.cat(
                [
                    labels[:, None, :].expand(-1, self.n_chunks, -1),
                    x[None, :, None].expand(len(labels), -1, 1),
                ],
                dim=2,
            )
            total = total + self.mapping(inputs).sum(0).reshape(-1)
        # centring is linear, so the mean of the centred draws is the centred mean
        return self._finish(total / self.n_states)

    def counterfactual(self, kind: str) -> torch.Tensor:
        """(2^N,) probabilities that replace the trained ones at test time: ``uniform``,
        ``permuted`` (the trained distribution over a seeded permutation of the states) or
        ``fixed-random`` (a seeded Porter-Thomas draw, another than the ``fixed-random``
        source's)."""
        validate.one_of(kind, "counterfactual probabilities", COUNTERFACTUALS)
        if not self.probability_source.gives_probabilities:
            raise InputError(
                "this run's generator reads no probabilities (probabilities 'none'): there is nothing to "
                "replace. Counterfactual evaluation applies to qpa-* runs whose mapping reads p"
            )
        if kind == "uniform":
            return torch.full((self.n_states,), 1.0 / self.n_states, dtype=torch.float64)
        if kind == "fixed-random":
            return porter_thomas(self.n_states, 0 if self._seed is None else self._seed, "counterfactual")
        probs = self.probabilities().detach()
        stream = torch.Generator().manual_seed(derived_seed(self._seed or 0, "counterfactual-permuted"))
        return probs[torch.randperm(self.n_states, generator=stream).to(probs.device)]

    # ------------------------------------------------------------------ reports
    def source_parameter_names(self) -> list[str]:
        """Names (in this module) of the probability source's trainable parameters: the
        circuit angles, or the softmax logits (they take ``circuit_lr``)."""
        return self.probability_source.parameter_names()

    def diagnostics(self) -> dict[str, float]:
        """How far the probability source moved from its start: the angles' largest and RMS
        change (radians) and the TVD between the initial and the current *ideal* distribution
        (statevector at the angles, or the softmax), whatever the backend."""
        return self.probability_source.drift()

    @torch.no_grad()
    def label_spread(self, draws: int = 8) -> float:
        """Random labels: the mean relative distance of a training step's weights (one label
        draw, from a stream of its own) to the final, expected weights; 0 with fixed labels."""
        if not self.random_labels:
            return 0.0
        mean = self.final_weights()
        stream = torch.Generator().manual_seed(derived_seed(self._seed or 0, "label-spread"))
        x = self._inputs(self.probabilities())
        distances = []
        for _ in range(draws):
            order = torch.randperm(self.n_states, generator=stream)[: self.n_chunks]
            weights = self._weights(x, self.all_labels[order.to(self.all_labels.device)])
            distances.append(float((weights - mean).norm() / mean.norm().clamp_min(1e-30)))
        return sum(distances) / draws

    def counts(self) -> dict[str, int]:
        """Trainable counts: circuit angles, softmax logits, mapping and completion weights
        (the mapping's x column is left out where it reads nothing, ``probabilities="none"``);
        M generated."""
        source = self.probability_source.counts()
        mapping = sum(p.numel() for p in self.mapping.parameters())
        if not self.probability_source.gives_probabilities:
            mapping -= self.widths[1]  # the first layer's weights from x, which is always 0
        counts = {
            "circuit_angles": source["circuit_angles"],
            "probability_logits": source["probability_logits"],
            "mapping": mapping,
            "completion": source["completion"],
        }
        return {**counts, "trainable": sum(counts.values()), "generated": self.n_weights}


class LowRankGenerator(nn.Module):
    """The classical peer of a QPA generator: the n_ch chunks of n_mlp weights as the product
    H (n_ch x k) @ C (k x n_mlp), both trained, cut to M.

    With ``config.lowrank_k`` None, k is chosen so the trainable count k (n_ch + n_mlp) is the
    nearest to that of the QPA generator with the same configuration (:func:`qpa_trainable`);
    a k given is at most min(n_ch, n_mlp), the rank the product can have (beyond it a larger
    k adds parameters and no freedom). H starts at N(0, 1/k) (rows of unit norm on average)
    and C at std 0.01, so the weights start at std about 0.01, the start-small scale of the
    QPA mapping's last layer.
    """

    def __init__(self, n_weights: int, config: GeneratorConfig, *, seed: int | None = 0) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.n_weights = n_weights
        self.chunk_size = cfg.chunk_size
        self.n_chunks, self.n_qubits = qubits_for(n_weights, cfg.chunk_size)
        per_rank = self.n_chunks + cfg.chunk_size
        bound = min(self.n_chunks, cfg.chunk_size)
        if cfg.lowrank_k is not None and cfg.lowrank_k > bound:
            # a k given beyond the rank the product can have only adds parameters: refused. The
            # default k (matched to the QPA generator's count) is kept whatever it is.
            raise InputError(
                f"lowrank_k {cfg.lowrank_k} is larger than the rank the generated weights can have: "
                f"{n_weights:,} weights in chunks of {cfg.chunk_size:,} are H ({self.n_chunks:,} x k) @ C "
                f"(k x {cfg.chunk_size:,}), of rank at most min({self.n_chunks:,}, {cfg.chunk_size:,}) = "
                f"{bound:,}; a larger k adds {(cfg.lowrank_k - bound) * per_rank:,} trainable parameters and "
                f"no freedom. Give --lowrank-k at most {bound:,}, or leave it out (k matched to the QPA "
                "generator's trainable count)"
            )
        k = cfg.lowrank_k or max(1, round(qpa_trainable(n_weights, cfg) / per_rank))
        self.k = k
        with torch_seeded(seed, "lowrank"):
            self.left = nn.Parameter(torch.randn(self.n_chunks, k) / math.sqrt(k))
            self.right = nn.Parameter(torch.randn(k, cfg.chunk_size) * 0.01)

    def forward(self, step: int | None = None) -> torch.Tensor:
        """The generated weights (`step` is the QPA generator's argument; nothing here depends on it)."""
        return (self.left @ self.right).reshape(-1)[: self.n_weights]

    def place(self, device: torch.device | str) -> None:
        """Put H and C on `device` (a run's device)."""
        self.to(device)

    def final_weights(self, probabilities: torch.Tensor | None = None) -> torch.Tensor:
        if probabilities is not None:
            raise InputError("a low-rank generator reads no probabilities: there is nothing to replace")
        return self.forward()

    def source_parameter_names(self) -> list[str]:
        return []

    def diagnostics(self) -> dict[str, float]:
        return {}

    def label_spread(self, draws: int = 8) -> float:
        return 0.0

    @property
    def rng_state(self) -> dict[str, Any]:
        return {}

    @rng_state.setter
    def rng_state(self, state: dict[str, Any]) -> None:
        pass

    def counts(self) -> dict[str, int]:
        trainable = self.left.numel() + self.right.numel()
        return {"lowrank_k": self.k, "trainable": trainable, "generated": self.n_weights}
