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
``qpa --help`` and ``import qpa_qiskit.train.run_config``.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".aer_noisy": "SlowEngineWarning",
    ".aer_run": "available_memory",
    ".config": "ENGINES BackendConfig",
    ".core": "QPABackend fingerprint flatten measured_qubits with_measurements",
    ".devices": "fake_device fake_device_names list_backends noise_description noise_model",
    ".family": "Family register",
    ".ibm": "HardwareLoopLike counts_to_probabilities pub_counts redact secrets",
    ".specs": "FAMILIES family_class parse_spec",
})  # fmt: skip
