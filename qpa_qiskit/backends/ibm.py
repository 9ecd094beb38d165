"""The ``ibm:<device>`` family: IBM Quantum through qiskit-ibm-runtime's client-side Sampler.

Why it is shaped like this: hardware only samples (shots are required), the account may
not be needed at all (``connect=False`` reads recorded results with none), and training runs
every evaluation through recorded, resumable jobs: a ``hardware_loop`` given when the backend
is built receives each call instead of the Sampler. ``ibm:fake_<device>`` runs the same code
path in the runtime's local testing mode, with no account.

The credentials rule (:func:`redact`: every backend error that echoes user text goes through
it, so a token typed by mistake as ``ibm:<token>`` is never printed) is
:mod:`qpa_qiskit.credentials`, below the backends; this module re-exports its names.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Protocol

import numpy as np
from qiskit import QuantumCircuit

from ..circuits import measured_qubits
from ..credentials import TOKEN_VARIABLE, _saved_accounts, describe, redact, secrets  # noqa: F401 - secrets: re-exported
from ..errors import AccountError, InputError, JobsError, SpecError
from .devices import example_devices, fake_device
from .family import Family, Prepared, register
from .ibm_options import EXECUTION_MODES, sampler_options
from .mitigation import (
    calibration_circuit,
    calibration_strings,
    calibration_values,
    confusion_from_calibration,
)

PLANS_HINT = (
    "Open Plan instances may run only job and batch mode; sessions need a paid plan "
    "(--mode job or --mode batch work on every plan)"
)


class HardwareLoopLike(Protocol):
    """What ``hardware_loop=`` takes: it runs every evaluation of an ``ibm:`` backend."""

    def probabilities(
        self, backend: Any, circuit: QuantumCircuit, values: np.ndarray, shots: int
    ) -> np.ndarray:
        """(B, 2^N) shot frequencies of `circuit` at `values` (B, P), like the Sampler path."""
        ...

    def calibration(self) -> HardwareLoopLike:
        """The loop that runs the readout calibration circuits (``mitigation="m3"``): recorded
        jobs of their own, labelled once, so a resumed run reads its calibration back."""
        ...


def check_mode(mode: Any) -> Any:
    """The ``mode`` option of an ``ibm:`` backend: None (job mode), one of
    :data:`EXECUTION_MODES` by name, or a runtime Session or Batch already open."""
    if mode is None or (isinstance(mode, str) and mode in EXECUTION_MODES):
        return mode
    if not isinstance(mode, str):
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime import Batch, Session

        if isinstance(mode, (Session, Batch)):
            return mode
    shown = repr(mode) if isinstance(mode, str) else type(mode).__name__
    raise SpecError(
        f"mode must be one of {', '.join(EXECUTION_MODES)} or an open qiskit_ibm_runtime Session "
        f"or Batch, got {redact(shown)[:100]}"
    )


_STATUS = re.compile(r"\b([1-5]\d\d) (?:Client|Server) Error")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request to IBM Quantum, from the exception or, when the
    runtime wrapped it in another error, from the message it kept; None if none is known."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, int) and code > 0:
        return code
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def open_mode(mode: Any, device: Any) -> Any:
    """What the runtime's primitives take as ``mode=``: the device itself in job mode, or a new
    Batch or Session on it. A refused creation (a 403, e.g. a session on the Open Plan) is an
    AccountError in one line with the service's reason."""
    mode = check_mode(mode)
    if mode is None or mode == "job":
        return device
    if not isinstance(mode, str):  # a Session or Batch opened by the caller
        return mode
    # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
    from qiskit_ibm_runtime import Batch, Session

    try:
        return (Batch if mode == "batch" else Session)(backend=device)
    except Exception as exc:
        name = redact(str(getattr(device, "name", device)))
        if http_status(exc) in (401, 403) or "not authorized" in str(exc).lower():
            raise AccountError(
                f"IBM Quantum refused to open a {mode} on {name} ({describe(exc, 300)}). {PLANS_HINT}"
            ) from None
        raise JobsError(
            f"cannot open a {mode} on {name} ({describe(exc, 300)}); nothing was submitted: run the "
            "same command again later"
        ) from None


@register
class IBMFamily(Family):
    name = "ibm"
    forms = ('"ibm:<backend>"', '"ibm:fake_<device>"')
    options = frozenset({"service", "sampler_options", "mode", "connect", "hardware_loop", "mitigation"})
    samples_only = True
    runs_on = "IBM Quantum"
    runs_remotely = True
    noise_text = "runs IBM's own noise"

    def __init__(self, backend: Any, options: dict[str, Any]) -> None:
        super().__init__(backend, options)
        self.hardware_loop: HardwareLoopLike | None = options.get("hardware_loop")
        loop = self.hardware_loop
        if loop is not None and not callable(getattr(loop, "probabilities", None)):
            raise InputError(
                "hardware_loop must have a method probabilities(backend, circuit, values, shots), "
                f"got {type(self.hardware_loop).__name__}"
            )
        if redact(str(self.backend.device_name)) != self.backend.device_name:
            raise SpecError(
                f"{redact(repr(self.backend.spec))} names a credential (an IBM Quantum token) as the "
                f"device; write {self.missing_device()}"
            )
        try:
            self.sampler_options = sampler_options(options.get("sampler_options"))
        except InputError as exc:
            raise SpecError(str(exc)) from None
        self._note_default_shots()
        self.mode = check_mode(options.get("mode"))
        self._service = options.get("service")
        self._sampler = None

    def _note_default_shots(self) -> None:
        """Say once that the sampler options' ``default_shots`` is ignored: every job passes the
        backend's own shots to ``Sampler.run``, which take precedence. Not refused, since a job
        store or configuration that holds it still runs as it did; ``qpa train`` and the studies
        refuse it when given on their command line (:func:`~qpa_qiskit.train.run_config.check_given`)."""
        if self.sampler_options is None or "default_shots" not in self.sampler_options.model_fields_set:
            return
        own = (
            f"shots {self.backend.shots}"
            if self.backend.shots is not None
            else f"shots_factor {self.backend.shots_factor:g}: n_shot = ceil(c 2^N)"
        )
        warnings.warn(
            f"the sampler options' default_shots {self.sampler_options.default_shots} is not used: every job "
            f"asks for the backend's own shots ({own} per parameter set); drop default_shots from the "
            "sampler options",
            UserWarning,
            stacklevel=4,
        )

    @classmethod
    def device_name(cls, text: str) -> str:
        return fake_device(text).name if text.lower().startswith("fake") else text

    @classmethod
    def missing_device(cls) -> str:
        fakes = ", ".join(f"ibm:{d}" for d in example_devices())
        return (
            f'"ibm:<device of your IBM Quantum account>" (e.g. ibm:ibm_torino) '
            f'or "ibm:fake_<device>" ({fakes})'
        )

    @classmethod
    def config_options(
        cls, section: Any, hardware_loop: Any = None, device: str | None = None
    ) -> dict[str, Any]:
        # on IBM Quantum the account opens when a job is due: a finished run reads its
        # recorded results (eval, export) with no account
        options = section.runtime_options()
        return {"connect": False, "hardware_loop": hardware_loop, "sampler_options": options}

    @property
    def local_testing(self) -> bool:
        """``ibm:fake_<device>``: the runtime's local testing mode, which needs no account."""
        return str(self.backend.device_name).startswith("fake_")

    def opens_at_start(self) -> bool:
        return self.local_testing or bool(self.backend.options.get("connect", True))

    # ------------------------------------------------------------------ account
    @property
    def service(self) -> Any:
        """The QiskitRuntimeService, opened on first use; None in local testing mode."""
        if self.local_testing:
            return None
        if self._service is None:
            self._service = self._open_account()
        return self._service

    def _open_account(self) -> Any:
        try:
            # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
            from qiskit_ibm_runtime import QiskitRuntimeService

            return QiskitRuntimeService()
        except Exception as exc:
            spec = redact(repr(self.backend.spec))
            message = f"cannot open an IBM Quantum account for {spec}: {describe(exc)}."
            if not _saved_accounts() and not os.environ.get(TOKEN_VARIABLE):
                message += (
                    " No account is saved and QISKIT_IBM_TOKEN is not set: save one with "
                    "QiskitRuntimeService.save_account(channel=..., token=..., instance=...) "
                    "or set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE)."
                )
            message += " The ibm:fake_<device> specs run locally with no account."
            raise AccountError(message) from None

    def open_device(self) -> Any:
        if self.local_testing:
            return fake_device(self.backend.device_name)
        service = self.service
        try:
            return service.backend(self.backend.device_name)
        except Exception as exc:
            raise SpecError(
                f"IBM Quantum backend {redact(repr(self.backend.device_name))} is not available to "
                f"this account ({describe(exc, 200)}); list yours with QiskitRuntimeService().backends()"
            ) from None

    def sampler(self) -> Any:
        """The runtime Sampler, built once (local testing mode for fake devices).

        The client-side ``executor_sampler.Sampler`` (``SamplerV2`` is deprecated since
        qiskit-ibm-runtime 0.50), in the ``mode`` option's execution mode (job mode by default).
        """
        if self._sampler is None:
            # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
            from qiskit_ibm_runtime.executor_sampler import Sampler

            mode = open_mode(self.mode, self.backend.connect())
            self._sampler = Sampler(mode=mode, options=self.sampler_options)
        return self._sampler

    def readout_confusion(self, prepared: Prepared) -> list[np.ndarray]:
        """Measured, not assumed: mthree's balanced calibration strings, one parameter set each of
        :func:`~.mitigation.calibration_circuit`, run on the circuit's own measured physical
        qubits with its shots per string, through the hardware loop's calibration jobs when
        there is one (recorded in their own ledger), else the Sampler."""
        qubits = measured_qubits(prepared.isa)
        loop = None if self.hardware_loop is None else self.hardware_loop.calibration()
        calibrating = type(self.backend)(  # a QPABackend like this one
            self.backend.spec,
            shots=self.backend.num_shots(prepared.n_bits),
            layout=qubits,
            optimization_level=self.backend.optimization_level,
            seed_transpiler=self.backend.seed_transpiler,
            service=self._service,
            sampler_options=self.sampler_options,
            mode=self.mode,
            connect=False,
            hardware_loop=loop,
        )
        strings = calibration_strings(len(qubits))
        frequencies = calibrating.probabilities(calibration_circuit(len(qubits)), calibration_values(strings))
        return confusion_from_calibration(strings, frequencies)

    # ------------------------------------------------------------------ evaluation
    def probabilities(self, prepared: Prepared, values: np.ndarray, shots: int | None) -> np.ndarray:
        assert shots is not None  # samples_only: the backend refuses to be built without shots
        if self.hardware_loop is not None:
            return self.hardware_loop.probabilities(self.backend, prepared.circuit, values, shots)
        n_sets = values.shape[0]
        if prepared.parameters:
            job = self.sampler().run([(prepared.isa, prepared.isa_values(values))], shots=shots)
        else:  # nothing to bind: one PUB of B * shots shots, cut into B independent rows
            job = self.sampler().run([(prepared.isa,)], shots=shots * n_sets)
        self.backend.last_job_id = job.job_id()
        result = job.result()[0]
        if prepared.parameters:
            return counts_to_probabilities(result, prepared.isa, n_sets, shots)
        bits = result.join_data(names=[c.name for c in prepared.isa.cregs])
        out = np.zeros((n_sets, 2**prepared.isa.num_clbits))
        for b in range(n_sets):
            for value, count in bits.slice_shots(range(b * shots, (b + 1) * shots)).get_int_counts().items():
                out[b, value] += count
        return out / shots


def pub_counts(pub_result: Any, isa: QuantumCircuit, n_sets: int) -> np.ndarray:
    """Counts (B, 2^N), int64, of one Sampler PUB result over all classical bits of `isa`,
    outcomes in Qiskit's little-endian order (the order of :meth:`QPABackend.probabilities`)."""
    bits = pub_result.join_data(names=[c.name for c in isa.cregs])
    out = np.zeros((n_sets, 2**isa.num_clbits), dtype=np.int64)
    for b in range(n_sets):
        loc = np.unravel_index(b, bits.shape) if bits.shape else None
        for value, count in bits.get_int_counts(loc=loc).items():
            out[b, value] += count
    return out


def counts_to_probabilities(pub_result: Any, isa: QuantumCircuit, n_sets: int, shots: int) -> np.ndarray:
    """Turn one Sampler PUB result into (B, 2^N) probabilities over all classical bits."""
    return pub_counts(pub_result, isa, n_sets) / shots
