"""One backend abstraction over exact Aer simulation, Aer with IBM noise models, and IBM Quantum.

A backend is chosen by a spec string (:func:`parse_spec`, :func:`list_backends`):

* ``"statevector"`` (alias ``"ideal"``): Aer's statevector method (:mod:`.statevector`).
* ``"aer_noisy:<device>"``: a fake device's ISA and Aer noise model, exact noisy
  probabilities from :mod:`qpa_qiskit.simulator` or Aer itself (:mod:`.aer_noisy`).
* ``"ibm:<backend>"`` / ``"ibm:fake_<device>"``: IBM Quantum through qiskit-ibm-runtime's
  client-side Sampler, or its local testing mode (:mod:`.ibm`).

Why a package: :class:`QPABackend` (:mod:`.core`) is the one facade callers use; each family
is a module that subclasses the contract (:class:`Family`, :mod:`.family`: what a family
declares of itself, the registry) and registers itself by name, so a new family is a new
module and one import in :mod:`.specs` (spec parsing, above every family). The fake-device
table and noise models are in :mod:`.devices`, what the Aer families share in
:mod:`.aer_run`, and the circuit helpers in :mod:`qpa_qiskit.circuits`. Every call of
:meth:`QPABackend.probabilities` sends all parameter sets as one submission: one Aer run with
parameter binds, or one Sampler PUB.

The names below are imported on first use (PEP 562 ``__getattr__``); those that look a spec up
(``QPABackend``, ``parse_spec``, ``family_class``, ``FAMILIES``) come from modules that import
every family, so the configuration section (:mod:`.config`) imports without qiskit, for
``qpa --help`` and ``import qpa_qiskit.config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import ENGINES, BackendConfig

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "SlowEngineWarning": "aer_noisy",
    "available_memory": "aer_run",
    **dict.fromkeys(("Family", "register"), "family"),
    **dict.fromkeys(("FAMILIES", "family_class", "parse_spec"), "specs"),
    # the circuit helpers (qpa_qiskit.circuits), as the facade's module re-exports them
    **dict.fromkeys(("QPABackend", "fingerprint", "flatten", "measured_qubits", "with_measurements"), "core"),
    **dict.fromkeys(
        ("fake_device", "fake_device_names", "list_backends", "noise_description", "noise_model"), "devices"),
    **dict.fromkeys(
        ("HardwareLoopLike", "counts_to_probabilities", "pub_counts", "redact", "secrets"), "ibm"),
}  # fmt: skip

if TYPE_CHECKING:  # what type checkers and editors see
    from .aer_noisy import SlowEngineWarning
    from .aer_run import available_memory
    from .core import QPABackend, fingerprint, flatten, measured_qubits, with_measurements
    from .devices import fake_device, fake_device_names, list_backends, noise_description, noise_model
    from .family import Family, register
    from .ibm import HardwareLoopLike, counts_to_probabilities, pub_counts, redact, secrets
    from .specs import FAMILIES, family_class, parse_spec


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "ENGINES",
    "FAMILIES",
    "BackendConfig",
    "Family",
    "HardwareLoopLike",
    "QPABackend",
    "SlowEngineWarning",
    "available_memory",
    "counts_to_probabilities",
    "fake_device",
    "fake_device_names",
    "family_class",
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
