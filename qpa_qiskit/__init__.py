"""qpa-qiskit: Quantum Parameter Adaptation with Qiskit.

A small parameterised circuit and a classical mapping network generate the adapter weights
of a classical LLM. This package holds the quantum half: backends, circuits and a torch
layer with parameter-shift gradients.
"""

from .backends import QPABackend, list_backends
from .circuits import ansatz
from .errors import AccountError, CapacityError, InputError, QPAError, SpecError
from .qnn import QuantumProbabilities

__all__ = [
    "AccountError",
    "CapacityError",
    "InputError",
    "QPABackend",
    "QPAError",
    "QuantumProbabilities",
    "SpecError",
    "ansatz",
    "list_backends",
]
__version__ = "0.1.0"
