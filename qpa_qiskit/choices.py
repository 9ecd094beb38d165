"""The names a run's configuration chooses among, at the bottom of the layers.

:mod:`qpa_qiskit.train.run_config` validates every setting against these tables, and the modules that
implement the choices (:mod:`qpa_qiskit.generator`, :mod:`qpa_qiskit.adapters`,
:mod:`qpa_qiskit.circuits`, :mod:`qpa_qiskit.completion`) import them
from here too and re-export them: so the configuration does not import its implementations
to learn their names, and they import the configuration (its dataclasses and defaults) at
module level. This module imports nothing; each implementation checks on import that its
table here names exactly what it implements.
"""

from __future__ import annotations

# ----------------------------------------------------------------- the parameter generator
ACTIVATION_NAMES = ("gelu", "relu", "tanh", "silu")  # the mapping MLP's (generator.ACTIVATIONS)
LABELS = ("fixed", "random")
MAPPINGS = ("mlp", "linear")
# the mapping's hidden widths when none are given: ours, and the published chain
# (MappingModel(N+1, [32, 64, 128, 128, 64, 32], 32) then fc1 32 -> chunk in qpa_lora.py)
DEFAULT_WIDTHS = {"mlp": (32, 32), "linear": (32, 64, 128, 128, 64, 32, 32)}
X_CENTRINGS = ("chunks", "states", "none")
OUTPUT_CENTRINGS = ("none", "mean")
MAPPING_INITS = ("small", "torch")
PROBABILITIES = ("circuit", "frozen", "uniform", "fixed-random", "softmax", "none")
CIRCUIT_SOURCES = ("circuit", "frozen")  # the sources that evaluate the circuit on the backend
TRAINED_SOURCES = ("circuit", "softmax")  # the sources with trainable parameters
COUNTERFACTUALS = ("uniform", "permuted", "fixed-random")
# how a shot-based backend's circuit gradient is estimated (qnn.py): the parameter-shift rule
# (2P + 1 sets a step; adjoint on exact backends, equal to it) or SPSA (1 + 2K sets)
CIRCUIT_GRADIENTS = ("shift", "spsa")
SPSA_EPSILON = 0.2  # qiskit-machine-learning's SPSA.calibrate default perturbation c = 0.2
ROTATIONS = ("ry", "rx")  # the ansatz's rotations (circuits.ansatz)
ENTANGLEMENTS = ("linear", "circular")  # its CNOT ladders
COMPLETION_MODES = ("none", "gi", "uniform", "random")  # completion.MODES

# ----------------------------------------------------------------- the adapter methods
# the peft tuners (adapters.registry.TUNERS), and those whose tensors a generator can make
TUNER_NAMES = ("lora", "dora", "prefix", "ffa", "vera", "ia3")
GENERATED_TUNERS = ("lora", "dora", "prefix", "ffa")
# Generators of a tuner's tensors, by method prefix: QPA's circuit + mapping, and its classical
# low-rank peer (qpa_qiskit.generator.LowRankGenerator).
GENERATOR_KINDS = ("qpa", "lowrank")
METHODS: tuple[str, ...] = tuple(
    sorted([*TUNER_NAMES, *(f"{kind}-{name}" for kind in GENERATOR_KINDS for name in GENERATED_TUNERS)])
)


def split_method(method: str) -> tuple[str | None, str]:
    """(generator kind or None, tuner name): ``qpa-lora`` -> ("qpa", "lora"), ``lora`` -> (None, "lora")."""
    for kind in GENERATOR_KINDS:
        if method.startswith(f"{kind}-"):
            return kind, method.removeprefix(f"{kind}-")
    return None, method
