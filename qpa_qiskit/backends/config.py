"""The backend section of a run's configuration: the spec, the shots, the aer_noisy engine and
noise switches, and how IBM Quantum runs the jobs. :meth:`QPABackend.from_config
<qpa_qiskit.backends.core.QPABackend.from_config>` builds the backend from it.

Beside the backends, and import-light (no qiskit, no torch): the run configuration
(:mod:`qpa_qiskit.train.run_config`) composes this section, and the command line builds its options
from it before any command runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..errors import InputError
from ..noise.settings import NoiseSettings
from ..sections import described
from .ibm_options import EXECUTION_MODES
from .ibm_options import sampler_options as runtime_sampler_options

ENGINES = ("auto", "ptm", "aer")  # aer_noisy's engines (backends/aer_noisy.py)
MITIGATIONS = ("none", "m3")  # readout mitigation of aer_noisy and ibm backends (backends/mitigation.py)


@dataclass
class BackendConfig:
    """The backend of a ``qpa-*`` run's circuit: spec and shots, the aer_noisy engine and noise
    components, and the IBM Quantum execution settings."""

    _argument_group_name = "backend (qpa-* methods)"
    backend: str = field(
        default="statevector", metadata=described("statevector, aer_noisy:<device>, ibm:<device>")
    )
    shots_factor: float | None = field(
        default=None, metadata=described("c: n_shot = ceil(c 2^N) shots per set; default exact probabilities")
    )
    layout: str = field(
        default="noise_aware",
        metadata=described(
            "where the circuit's qubits go on a device: noise_aware (Qiskit's level-2 layout search, "
            "scored by the device's gate and readout errors), preset (the level-1 preset's own: the "
            "first qubits when they need no swaps; runs before this option), or physical qubits "
            "Q0,Q1,... (circuit qubit 0 first)"
        ),
    )
    mitigation: str = field(
        default="none",
        metadata=described(
            "aer_noisy, ibm: readout mitigation of the measured probabilities before the generator "
            'sees them: none, or m3 (the mthree package, pip install "qpa-qiskit[mitigation]"; '
            "calibrated from the simulated device's readout errors, or from calibration circuits on IBM "
            "Quantum), projected to the nearest probability distribution",
            choices=MITIGATIONS,
        ),
    )
    engine: str = field(
        default="auto",
        metadata=described("aer_noisy engine: exact PTM, Aer, or auto (PTM where it can)", choices=ENGINES),
    )
    torch_device: str | None = field(
        default=None,
        metadata=described(
            "aer_noisy PTM engine: where its states live (cpu, cuda, cuda:<index>); default the run's "
            "--device (the CPU for mps, which has no float64)"
        ),
    )
    noise_scale: float = field(
        default=1.0,
        metadata=described("aer_noisy: every error and relaxation rate x s (0: noiseless, 1: the device)"),
    )
    gate_error: bool = field(
        default=True, metadata=described("aer_noisy: the depolarising gate errors (on; --no-gate-error: off)")
    )
    thermal_relaxation: bool = field(
        default=True,
        metadata=described("aer_noisy: relaxation (T1, T2) in gates (on; --no-thermal-relaxation: off)"),
    )
    readout_error: bool = field(
        default=True, metadata=described("aer_noisy: the readout errors (on; --no-readout-error: off)")
    )
    mode: str | None = field(
        default=None,
        metadata=described(
            "ibm: execution mode of the training jobs: job (default; every plan), batch (every "
            "plan), session (paid plans only; bills the time between steps too)",
            choices=EXECUTION_MODES,
        ),
    )
    sampler_options: str | None = field(
        default=None,
        metadata=described(
            "ibm: the runtime Sampler's options as JSON text or a JSON file, checked by "
            "qiskit_ibm_runtime.options_models.SamplerOptions "
            '(e.g. \'{"twirling": {"enable_gates": true}}\')'
        ),
    )
    max_execution_time: int | None = field(
        default=None, metadata=described("ibm: QPU seconds a job may use before the service cancels it")
    )
    max_qpu_seconds: float | None = field(
        default=None,
        metadata=described(
            "ibm: the run's QPU-time budget in seconds: refused before anything is written when the "
            "projected cost exceeds it; the run stops cleanly before the step that would pass it (a "
            "larger budget resumes it)"
        ),
    )
    cost_as: str | None = field(
        default=None,
        metadata=described(
            "what-if: project the QPU cost of this run as if its circuit ran on ibm:<device> (a "
            "simulator run's cost on hardware)"
        ),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise InputError(f"backend must be a backend spec such as 'statevector', got {self.backend!r}")
        if self.shots_factor is not None:
            self.shots_factor = validate.positive_number(self.shots_factor, "shots_factor")
        validate.one_of(self.engine, "engine", ENGINES)
        placed = validate.layout(self.layout, "layout")
        self.layout = placed if isinstance(placed, str) else ",".join(map(str, placed))
        if not isinstance(placed, str) and self.backend.strip().lower() in ("statevector", "ideal"):
            raise InputError(
                f"layout {self.layout!r} names physical qubits, and backend {self.backend!r} has none (an "
                "ideal simulator has no device). Drop --layout, or use an aer_noisy or ibm backend"
            )
        if self.torch_device is not None:
            self.torch_device = validate.device_form(self.torch_device, "torch_device", auto=False)
            if self.torch_device == "mps":
                raise InputError(
                    "torch_device must be cpu, cuda or cuda:<index>: the PTM engine computes in float64, "
                    "which MPS does not have; got 'mps'"
                )
            if not self.backend.strip().lower().startswith("aer_noisy"):
                raise InputError(
                    f"torch_device sets where the PTM engine of an aer_noisy:<device> backend runs; backend "
                    f"{self.backend!r} has none. Drop --torch-device, or use an aer_noisy backend"
                )
        noise = NoiseSettings(self.noise_scale, self.gate_error, self.thermal_relaxation, self.readout_error)
        self.noise_scale = noise.scale
        self._check_mitigation(noise)
        if not noise.is_device and not self.backend.strip().lower().startswith("aer_noisy"):
            raise InputError(
                f"{noise.describe()} applies to aer_noisy:<device> backends, which simulate a noise model; "
                f"backend {self.backend!r} has none to scale or switch. Use an aer_noisy backend or drop "
                "--noise-scale and the --no-* noise switches"
            )
        self._check_ibm()

    def _check_mitigation(self, noise: NoiseSettings) -> None:
        """mitigation='m3' where there is a readout error to correct: an aer_noisy backend
        reading out with errors, or IBM Quantum."""
        validate.one_of(self.mitigation, "mitigation", MITIGATIONS)
        if self.mitigation == "none":
            return
        backend = self.backend.strip().lower()
        if not backend.startswith(("aer_noisy", "ibm:")):
            raise InputError(
                f"mitigation {self.mitigation!r} corrects readout errors, and backend {self.backend!r} has "
                "none (an ideal simulator reads out exactly). Drop --mitigation, or use an aer_noisy or ibm "
                "backend"
            )
        if backend.startswith("aer_noisy") and (not noise.readout_error or noise.scale == 0):
            raise InputError(
                f"mitigation {self.mitigation!r} corrects readout errors, and {noise.describe()} simulates "
                "none: it would do nothing. Drop --mitigation, or keep the readout errors on"
            )

    def _check_ibm(self) -> None:
        """The IBM Quantum settings: valid, for an ibm: backend only, and not contradictory."""
        if self.mode is not None:
            validate.one_of(self.mode, "mode", EXECUTION_MODES)
        if self.max_execution_time is not None:
            self.max_execution_time = validate.positive_int(self.max_execution_time, "max_execution_time")
        if self.max_qpu_seconds is not None:
            self.max_qpu_seconds = validate.positive_number(self.max_qpu_seconds, "max_qpu_seconds")
        if self.cost_as is not None:
            spec = self.cost_as.strip() if isinstance(self.cost_as, str) else ""
            if not spec.lower().startswith("ibm:") or not spec[4:].strip():
                raise InputError(
                    f"cost_as names the IBM Quantum device whose QPU time a run is projected on, "
                    f"'ibm:<device>' (e.g. ibm:ibm_torino or ibm:fake_torino); got {self.cost_as!r}"
                )
            self.cost_as = spec
        if self.sampler_options is not None:
            options = runtime_sampler_options(self.sampler_options, "sampler_options")
            limit = options.max_execution_time
            if limit is not None and self.max_execution_time not in (None, limit):
                raise InputError(
                    f"max_execution_time {self.max_execution_time} contradicts the sampler options' "
                    f"max_execution_time {limit}; give one of them"
                )
            dumped = options.model_dump(mode="json", exclude_unset=True)
            self.sampler_options = json.dumps(dumped, sort_keys=True)
        given = [n for n in ("mode", "sampler_options", "max_execution_time") if getattr(self, n) is not None]
        if given and not self.backend.strip().lower().startswith("ibm:"):
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise InputError(
                f"{', '.join(given)} set(s) how IBM Quantum runs the jobs of an ibm:<device> backend; "
                f"backend {self.backend!r} runs here. Use an ibm: backend or drop {flags}"
            )

    def runtime_options(self) -> dict[str, Any] | None:
        """The runtime Sampler's options of an ibm: backend (None: the runtime's defaults)."""
        options = json.loads(self.sampler_options) if self.sampler_options else {}
        if self.max_execution_time is not None:
            options["max_execution_time"] = self.max_execution_time
        return options or None
