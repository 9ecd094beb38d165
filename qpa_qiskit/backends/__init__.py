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

The names below are imported on first use (PEP 562 ``__getattr__``), and with the first of
them every family (``from qpa_qiskit.backends import QPABackend`` registers them all): so the
configuration section (:mod:`.config`) imports without qiskit, for ``qpa --help`` and
``import qpa_qiskit.config``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import ENGINES, BackendConfig

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "SlowEngineWarning": "aer_noisy",
    **dict.fromkeys(
        ("FAMILIES", "Family", "QPABackend", "available_memory", "fingerprint", "flatten",
         "measured_qubits", "parse_spec", "register", "with_measurements"), "core"),
    **dict.fromkeys(
        ("fake_device", "fake_device_names", "list_backends", "noise_description", "noise_model"), "devices"),
    **dict.fromkeys(
        ("HardwareLoopLike", "counts_to_probabilities", "pub_counts", "redact", "secrets"), "ibm"),
}  # fmt: skip
_FAMILY_MODULES = ("statevector", "aer_noisy", "ibm")  # each registers its family on import

if TYPE_CHECKING:  # what type checkers and editors see
    from .aer_noisy import SlowEngineWarning
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


def load_families() -> None:
    """Import every family's module (each registers its family); imported modules are cached,
    so this costs nothing after the first call. ``core`` calls it before it looks a spec up."""
    for family in _FAMILY_MODULES:
        importlib.import_module(f".{family}", __name__)


__getattr__, __dir__ = lazy_exports(globals(), _LAZY, before=load_families)


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
