"""One backend abstraction over exact Aer simulation, Aer with IBM noise models, and IBM Quantum.

A backend is chosen by a spec string (:func:`parse_spec`, :func:`list_backends`):

* ``"statevector"`` (alias ``"ideal"``): Aer's statevector method (:mod:`.statevector`).
* ``"aer_noisy:<device>"``: a fake device's ISA and Aer noise model, exact noisy
  probabilities from :mod:`qpa_qiskit.simulator` or Aer itself (:mod:`.aer_noisy`).
* ``"ibm:<backend>"`` / ``"ibm:fake_<device>"``: IBM Quantum through qiskit-ibm-runtime's
  client-side Sampler, or its local testing mode (:mod:`.ibm`).

Why a package: :class:`QPABackend` (:mod:`.core`) is the one facade callers use; each family
is a module registered by name, so a new family is a new module. The fake-device table and
noise models are in :mod:`.devices`. Every call of :meth:`QPABackend.probabilities` sends all
parameter sets as one submission: one Aer run with parameter binds, or one Sampler PUB.
"""

from . import aer_noisy, ibm, statevector  # noqa: F401 - each registers its family
from .aer_noisy import ENGINES, SlowEngineWarning
from .core import (
    FAMILIES,
    Family,
    QPABackend,
    available_memory,
    fingerprint,
    flatten,
    measured_qubits,
    parse_spec,
    register,
    with_measurements,
)
from .devices import fake_device, fake_device_names, list_backends, noise_description, noise_model
from .ibm import HardwareLoopLike, counts_to_probabilities, pub_counts, redact, secrets

__all__ = [
    "ENGINES",
    "FAMILIES",
    "Family",
    "HardwareLoopLike",
    "QPABackend",
    "SlowEngineWarning",
    "available_memory",
    "counts_to_probabilities",
    "fake_device",
    "fake_device_names",
    "fingerprint",
    "flatten",
    "list_backends",
    "measured_qubits",
    "noise_description",
    "noise_model",
    "parse_spec",
    "pub_counts",
    "redact",
    "register",
    "secrets",
    "with_measurements",
]
