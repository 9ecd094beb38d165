"""The backend contract: the :class:`Family` base, what each family declares of itself, and
the registry of families by name.

Why a contract apart from the facade: what differs between an exact simulator, a noisy
simulator and IBM Quantum is how a prepared circuit (:class:`Prepared`) is run, and what
callers may ask of a family without knowing its name (it only samples, it runs remotely, it
simulates a noise model, it has a device). Those are the class attributes and hooks below;
a family is one module (:mod:`.statevector`, :mod:`.aer_noisy`, :mod:`.ibm`) that subclasses
:class:`Family` and registers it with :func:`register`. Spec parsing over the registered
families is in :mod:`.specs`, which imports every family module; the facade is :mod:`.core`.
Nothing here names a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from qiskit import QuantumCircuit

from ..errors import InputError

if TYPE_CHECKING:
    from .core import QPABackend

#: the options every family takes (the ISA transpilation): :mod:`.layout`
COMMON_OPTIONS = frozenset({"optimization_level", "seed_transpiler", "layout"})


@dataclass
class Prepared:
    """What a backend builds once per circuit; the ISA circuit when it is first needed."""

    circuit: QuantumCircuit
    fingerprint: int
    measured: QuantumCircuit
    n_bits: int
    parameters: list
    transpile: Callable[[QuantumCircuit], QuantumCircuit]
    extras: dict[str, Any] = field(default_factory=dict)
    _isa: QuantumCircuit | None = None

    @property
    def isa(self) -> QuantumCircuit:
        if self._isa is None:
            self._isa = self.transpile(self.measured)
        return self._isa

    @property
    def unmeasured(self) -> QuantumCircuit:
        """The ISA circuit without its final measurements: the state expectation values are of."""
        if "unmeasured" not in self.extras:
            self.extras["unmeasured"] = self.isa.remove_final_measurements(inplace=False)
        return self.extras["unmeasured"]

    def isa_values(self, values: np.ndarray) -> np.ndarray:
        """`values` (B, P) in circuit.parameters order -> columns in isa.parameters order."""
        column = {p: i for i, p in enumerate(self.parameters)}
        return values[:, [column[p] for p in self.isa.parameters]]

    def circuit_gradient(self, isa_gradient: np.ndarray) -> np.ndarray:
        """A gradient (P_isa,) in isa.parameters order -> (P,) in circuit.parameters order;
        a parameter the transpiler removed has none."""
        column = {p: i for i, p in enumerate(self.parameters)}
        out = np.zeros(len(self.parameters))
        for p, g in zip(self.isa.parameters, isa_gradient, strict=True):
            out[column[p]] += g
        return out


class Family:
    """One kind of backend: how a spec names its device and how a prepared circuit runs.

    Subclasses set the class attributes, implement :meth:`probabilities`, and are made
    available by :func:`register`. One instance belongs to one :class:`QPABackend`.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the spec forms for error messages, e.g. ``'"aer_noisy:<fake device>"'``
    forms: ClassVar[tuple[str, ...]] = ()
    #: options accepted beyond :data:`COMMON_OPTIONS`
    options: ClassVar[frozenset[str]] = frozenset()
    #: the spec names a device after the colon
    needs_device: ClassVar[bool] = True
    #: it can only sample (no exact probabilities): shots or shots_factor are required
    samples_only: ClassVar[bool] = False
    #: where it runs, for the message that asks a sampling family for shots
    runs_on: ClassVar[str] = "this simulator"
    #: its circuits run as jobs on a remote service (IBM Quantum), not here: what job stores,
    #: the hardware loop and the cost model's QPU projection are for, and what the local
    #: primitives refuse
    runs_remotely: ClassVar[bool] = False
    #: it simulates a noise model (:meth:`noise_model`, :attr:`noise_settings`,
    #: :meth:`noise_device`): what ``qpa noise show`` reports
    has_noise_model: ClassVar[bool] = False
    #: the options that set the strength or components of its simulated noise model
    noise_options: ClassVar[frozenset[str]] = frozenset()
    #: what its noise is, for the message refusing a noise option it does not take
    noise_text: ClassVar[str] = "is noiseless"

    #: the runtime Sampler's options, where the family takes them (its ``sampler_options``
    #: option; a family that does sets it on its instance), else None
    sampler_options: Any = None

    def __init__(self, backend: QPABackend, options: dict[str, Any]) -> None:
        self.backend = backend

    @classmethod
    def device_name(cls, text: str) -> str:
        """The canonical device name of the text after the colon; SpecError if unknown."""
        return text

    @classmethod
    def missing_device(cls) -> str:
        """What to write after the colon, for the error of a spec that names no device."""
        return ""

    def opens_at_start(self) -> bool:
        """Open the device when the backend is built (else on first use)."""
        return False

    def open_device(self) -> Any:
        """The device (a qiskit BackendV2), or None where there is none (an ideal simulator)."""
        return None

    def transpile_target(self) -> Any:
        """What the ISA circuit is transpiled for."""
        return self.backend.connect()

    def check_capacity(self, measured: QuantumCircuit) -> None:
        """CapacityError if this circuit cannot be simulated here (before any work)."""

    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        """(B, 2^N) probabilities, exact when `shots` is None, else shot frequencies."""
        raise NotImplementedError

    def expectation_values(
        self, prepared: Prepared, values: np.ndarray, terms: list[dict[int, int]]
    ) -> np.ndarray:
        """Exact expectation values (B, K) of Pauli terms ({physical qubit: 1 X, 2 Y, 3 Z}) on
        the state the ISA circuit prepares before its measurements."""
        raise InputError(f"{self.name} backends compute no exact expectation values")

    def noise_model(self) -> Any:
        """The Aer NoiseModel this family simulates, or None (noiseless, or real hardware)."""
        return None

    @property
    def noise_settings(self) -> Any:
        """The :class:`~qpa_qiskit.noise.NoiseSettings` of the noise model it simulates (scale and
        switches), None where it simulates none."""
        return None

    def noise_device(self) -> Any:
        """The device as its noise is simulated (its calibration scaled), None where it
        simulates no noise model."""
        return None

    def check_circuit_scale(self, circuit: QuantumCircuit) -> None:
        """InputError if the simulated noise, as scaled, makes a probability invalid on this
        circuit's qubits; nothing to check where no noise model is scaled."""

    def readout_confusion(self, prepared: Prepared) -> list[np.ndarray]:
        """The readout confusion C[true, read] of each classical bit of the ISA circuit, as
        the mitigation is calibrated here (a family with the ``mitigation`` option overrides it)."""
        raise InputError(f"{self.name} backends read out exactly: there is no readout error to mitigate")

    @classmethod
    def config_options(
        cls, section: Any, hardware_loop: Any = None, device: str | None = None
    ) -> dict[str, Any]:
        """The options of :class:`QPABackend` this family takes from a backend configuration
        section (:class:`~qpa_qiskit.backends.config.BackendConfig`); `hardware_loop` is for a
        family that runs its jobs through one, `device` (the run's torch device) for a family
        whose engine computes on one."""
        return {}

    # The accessors of one family only (a remote service's account, runtime Sampler and local
    # testing mode): the facade asks the family, the family that has them overrides these,
    # and the others refuse here, naming the families that have one.
    @property
    def local_testing(self) -> bool:
        """The family's local testing mode (a remote service simulated here, with no account)."""
        return False

    @property
    def service(self) -> Any:
        """The family's account service; only a remote family has one."""
        having = _having("service")
        raise InputError(f"only {having} backends have an account service, not {self.backend.name!r}")

    def sampler(self) -> Any:
        """The family's runtime Sampler; only a remote family has one."""
        having = _having("sampler")
        raise InputError(f"only {having} backends run a runtime Sampler, not {self.backend.name!r}")

    def program(self, prepared: Prepared) -> Any:
        """The circuit compiled for this family's own engine, or None where there is none."""
        return None

    def gradient_unavailable(self, prepared: Prepared) -> str | None:
        """None where :meth:`vjp` gives exact gradients of this circuit, else why it cannot."""
        return f"{self.name} backends have no engine for exact gradients"

    def vjp(self, prepared: Prepared, values: np.ndarray) -> tuple[np.ndarray, Callable]:
        """Exact p (2^N,) for one parameter set (circuit order), and the pullback that maps
        dL/dp to dL/dθ (circuit order)."""
        raise NotImplementedError


#: the registered families by name, and every name and alias -> its family's name
FAMILIES: dict[str, type[Family]] = {}
ALIASES: dict[str, str] = {}


def register(family: type[Family]) -> type[Family]:
    """Make a :class:`Family` available to specs under its name and aliases (a decorator)."""
    FAMILIES[family.name] = family
    for alias in (family.name, *family.aliases):
        ALIASES[alias] = family.name
    return family


def _having(accessor: str) -> str:
    """The spec forms of the families that override a :class:`Family` accessor (``"ibm:"``)."""
    names = [f"{n}:" if f.needs_device else n for n, f in FAMILIES.items()
             if getattr(f, accessor) is not getattr(Family, accessor)]  # fmt: skip
    return ", ".join(names) or "no"
