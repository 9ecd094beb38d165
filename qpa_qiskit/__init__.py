"""qpa-qiskit: Quantum Parameter Adaptation with Qiskit.

A small parameterised circuit and a classical mapping network generate the adapter weights
of a classical LLM: backends and circuits (the quantum half), a torch layer with
parameter-shift gradients, the parameter generator, completion of finite-shot data, and
peft adapters whose weights it generates (LoRA, DoRA, prefix tuning, feed-forward adapters),
Quantum-Train for whole networks, device noise as reproducible data, IBM Quantum job
stores that survive restarts, and the exact engines as Qiskit V2 primitives
(:mod:`qpa_qiskit.primitives`: ``Sampler``, ``Estimator``).
"""

from .adapters import AdaptedModel
from .backends import QPABackend, list_backends
from .circuits import ansatz
from .completion import GenerativeInterpolation
from .config import AdapterConfig, EvalConfig, GeneratorConfig, RunConfig, TaskConfig, TrainingConfig
from .errors import (
    AccountError,
    BusyError,
    CapacityError,
    InputError,
    JobsError,
    QPAError,
    SpecError,
    StateError,
)
from .export import export
from .generator import LowRankGenerator, QPAGenerator
from .ibm import JobStore
from .noise import NoiseSettings, Snapshot
from .qnn import QuantumProbabilities
from .quantum_train import QuantumTrain
from .train import Run, evaluate_run

__all__ = [
    "AccountError",
    "AdaptedModel",
    "AdapterConfig",
    "BusyError",
    "CapacityError",
    "EvalConfig",
    "GenerativeInterpolation",
    "GeneratorConfig",
    "InputError",
    "JobStore",
    "JobsError",
    "LowRankGenerator",
    "NoiseSettings",
    "QPABackend",
    "QPAError",
    "QPAGenerator",
    "QuantumProbabilities",
    "QuantumTrain",
    "Run",
    "RunConfig",
    "Snapshot",
    "SpecError",
    "StateError",
    "TaskConfig",
    "TrainingConfig",
    "ansatz",
    "evaluate_run",
    "export",
    "list_backends",
]
__version__ = "0.1.0"
