"""The generator's section of a run's configuration (:class:`GeneratorConfig`) and its presets.

Beside the generator (:mod:`.core`), and import-light (no torch, no qiskit): the run
configuration (:mod:`qpa_qiskit.train.run_config`) composes this section, and the command line builds
its options from it before any command runs. The names it chooses among are in
:mod:`qpa_qiskit.choices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..choices import (
    ACTIVATION_NAMES,
    CIRCUIT_GRADIENTS,
    COMPLETION_MODES,
    DEFAULT_WIDTHS,
    ENTANGLEMENTS,
    LABELS,
    MAPPING_INITS,
    MAPPINGS,
    OUTPUT_CENTRINGS,
    PROBABILITIES,
    ROTATIONS,
    SPSA_EPSILON,
    X_CENTRINGS,
)
from ..sections import described

# Presets: named sets of settings a run takes at once (``--preset``); a setting that contradicts
# its preset is refused. "paper" is the generator of the published QPA code (CYLphysics/QPA,
# qpa_lora.py); the README's preset table gives the source of each value. The sizes the paper
# sweeps (chunk size, L, rank) and the circuit (RY + linear CNOT) are not part of it: they are
# the axes of the studies, and their published values are already the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "labels": "random",  # generate_qubit_states_torch: random.sample at every forward pass
        "mapping": "linear",  # MappingModel: Linear layers, no activation; then fc1
        "hidden": list(DEFAULT_WIDTHS["linear"]),  # [32, 64, 128, 128, 64, 32] -> 32, then 32 -> chunk
        "mapping_init": "torch",  # nn.Linear defaults everywhere
        "x_centring": "states",  # QLayer.forward: x - torch.mean(x) over all 2^N states
        "output_centring": "mean",  # QT_HyperNet.forward: prob_val_post_processed - its mean
        "gamma": 0.1,  # QLayer.forward
        "beta": 0.60,
        "alpha": 0.15,
        "dropout": 0.05,  # QPA_LoRALayer: nn.Dropout(p=0.05) on the adapter's input
    }
}


@dataclass
class GeneratorConfig:
    """The generator: the ansatz, labels, mapping, rescaling and centrings, the probability
    source, the completion; the low-rank peer's rank. (Its backend is the run's
    :class:`~qpa_qiskit.backends.config.BackendConfig`.)"""

    _argument_group_name = "generator (qpa-* and lowrank-* methods)"
    chunk_size: int = field(
        default=2048, metadata=described("n_mlp: weights per chunk (the MLP's output width)")
    )
    reps: int = field(default=8, metadata=described("ansatz layers L"))
    rotation: str = field(default="ry", metadata=described("ansatz rotation", choices=ROTATIONS))
    entanglement: str = field(default="linear", metadata=described("CNOT ladder", choices=ENTANGLEMENTS))
    preset: str | None = field(
        default=None,
        metadata=described(
            "paper: the published generator's settings at once (random labels, linear mapping, its "
            "centrings and dropout); a setting that contradicts it is refused",
            choices=list(PRESETS),
        ),
    )
    labels: str = field(
        default="fixed",
        metadata=described(
            "chunk labels: fixed (chunk c reads basis state c's bits) or random (a fresh assignment "
            "of distinct bitstrings at every training step, as published)",
            choices=LABELS,
        ),
    )
    mapping: str = field(
        default="mlp",
        metadata=described(
            "mapping network: mlp (with --activation) or linear (the published chain)", choices=MAPPINGS
        ),
    )
    hidden: list[int] | None = field(
        default=None,
        metadata=described("mapping hidden widths (default: mlp 32 32; linear 32 64 128 128 64 32 32)"),
    )
    activation: str = field(
        default="gelu", metadata=described("mapping MLP activation", choices=ACTIVATION_NAMES)
    )
    mapping_init: str = field(
        default="small",
        metadata=described(
            "small: the last layer at std 0.01, zero bias; torch: torch's defaults (published)",
            choices=MAPPING_INITS,
        ),
    )
    gamma: float = field(default=0.1, metadata=described("probability rescaling gamma"))
    beta: float = field(default=0.60, metadata=described("probability rescaling beta"))
    alpha: float = field(default=0.15, metadata=described("probability rescaling exponent alpha"))
    x_centring: str = field(
        default="chunks",
        metadata=described(
            "the rescaled x minus its mean over the chunks, over all 2^N states (published), or none",
            choices=X_CENTRINGS,
        ),
    )
    output_centring: str = field(
        default="none",
        metadata=described(
            "mean: the generated vector minus its own mean (published)", choices=OUTPUT_CENTRINGS
        ),
    )
    probabilities: str = field(
        default="circuit",
        metadata=described(
            "what the mapping reads: the trained circuit, or a control: frozen (the circuit at its "
            "initial angles; with shots measured once per run, one sample reused at every step and for "
            "the final weights), uniform, fixed-random (one Porter-Thomas draw), softmax (2^N trained "
            "logits), none (the bits only)",
            choices=PROBABILITIES,
        ),
    )
    lowrank_k: int | None = field(
        default=None,
        metadata=described(
            "lowrank-* methods: the rank k of H @ C (default: the QPA generator's trainable count)"
        ),
    )
    completion: str = field(
        default="none",
        metadata=described(
            "fill unmeasured states: gi (Generative Interpolation) or a control", choices=COMPLETION_MODES
        ),
    )
    completion_hidden: list[int] = field(
        default_factory=lambda: [16], metadata=described("hidden widths of the GI network")
    )
    gradient: str = field(
        default="shift",
        metadata=described(
            "the circuit's gradient: shift (the parameter-shift rule, 2P + 1 parameter sets a step; adjoint "
            "on an exact backend, equal to it) or spsa (1 + 2K sets a step: K random directions, "
            "--spsa-samples; on an exact backend a documented control)",
            choices=CIRCUIT_GRADIENTS,
        ),
    )
    spsa_samples: int = field(
        default=1, metadata=described("gradient spsa: K, the random directions per step (2K shifted sets)")
    )
    spsa_epsilon: float = field(
        default=SPSA_EPSILON,
        metadata=described("gradient spsa: the perturbation size (qiskit-machine-learning's SPSA default c)"),
    )
    circuit_every: int = field(
        default=1,
        metadata=described(
            "run the circuit and its gradient every K steps; between them the mapping trains on the last "
            "probabilities (1: every step)"
        ),
    )

    def __post_init__(self) -> None:
        self.chunk_size = validate.positive_int(self.chunk_size, "chunk_size")
        self.reps = validate.positive_int(self.reps, "reps")
        validate.one_of(self.rotation, "rotation", ROTATIONS)
        validate.one_of(self.entanglement, "entanglement", ENTANGLEMENTS)
        if self.preset is not None:
            validate.one_of(self.preset, "preset", PRESETS)
        validate.one_of(self.labels, "labels", LABELS)
        validate.one_of(self.mapping, "mapping", MAPPINGS)
        if self.hidden is not None:
            self.hidden = list(validate.positive_ints(self.hidden, "hidden", allow_empty=True))
        validate.one_of(self.activation, "activation", ACTIVATION_NAMES)
        validate.one_of(self.mapping_init, "mapping_init", MAPPING_INITS)
        for name in ("gamma", "beta", "alpha"):
            setattr(self, name, validate.positive_number(getattr(self, name), name))
        validate.one_of(self.x_centring, "x_centring", X_CENTRINGS)
        validate.one_of(self.output_centring, "output_centring", OUTPUT_CENTRINGS)
        validate.one_of(self.probabilities, "probabilities", PROBABILITIES)
        if self.lowrank_k is not None:
            self.lowrank_k = validate.positive_int(self.lowrank_k, "lowrank_k")
        validate.one_of(self.completion, "completion", COMPLETION_MODES)
        self.completion_hidden = list(validate.positive_ints(self.completion_hidden, "completion_hidden"))
        validate.one_of(self.gradient, "gradient", CIRCUIT_GRADIENTS)
        self.spsa_samples = validate.positive_int(self.spsa_samples, "spsa_samples")
        self.spsa_epsilon = validate.perturbation(self.spsa_epsilon, "spsa_epsilon")
        self.circuit_every = validate.positive_int(self.circuit_every, "circuit_every")
