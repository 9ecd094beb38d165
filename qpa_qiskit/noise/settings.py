"""Noise strength and noise components: what ``noise_scale`` and the switches do.

Why scale the calibration data rather than the channels: Aer's ``NoiseModel.from_backend``
already turns a device's calibration into channels, with each gate's reported error split
between thermal relaxation during the gate and a depolarising remainder. Scaling the data it
reads keeps that construction, and keeps ``qpa noise show`` of a scaled device honest:

* every gate error probability is multiplied by s (the depolarising part is what remains of
  s x the reported error after relaxation, as at s = 1);
* every relaxation rate is multiplied by s: T1 -> T1 / s, T2 -> T2 / s (T2 <= 2 T1 still
  holds, and the relaxation during a gate scales with s to first order);
* every readout flip probability is multiplied by s (Aer's model of a ``BackendV2`` flips
  either outcome with the reported ``readout_error``, the mean of P(1|0) and P(0|1); those
  two are scaled as well, so the stored calibration stays consistent).

s = 1 is the device, s = 0 is exactly noiseless (T1 = T2 = infinity, zero errors), s > 1 is a
worse device, valid while every scaled probability is: a gate error at most Aer's bound
d/(d+1) for a d-dimensional gate (beyond it Aer silently truncates) and a readout flip at most
1. That check needs the qubits a circuit uses (one bad qubit elsewhere on the chip must not
forbid s = 2), so it runs per circuit, :func:`check_scale`; for the noise model to be built
at all, a scaled readout probability of an unused qubit is capped at 1.

The switches are ``NoiseModel.from_backend``'s own: ``gate_error`` (the depolarising part),
``thermal_relaxation`` and ``readout_error``, each on by default.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .. import validate
from ..errors import InputError

#: the option names a noisy backend accepts for these settings
OPTIONS = ("noise_scale", "gate_error", "thermal_relaxation", "readout_error")
COMPONENTS = ("gate_error", "thermal_relaxation", "readout_error")
READOUT = ("readout_error", "prob_meas0_prep1", "prob_meas1_prep0")


def _switch(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class NoiseSettings:
    """How strong the device's noise is and which of its components are simulated."""

    scale: float = 1.0
    gate_error: bool = True
    thermal_relaxation: bool = True
    readout_error: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", validate.number(self.scale, "noise_scale", minimum=0.0))
        for name in COMPONENTS:
            _switch(getattr(self, name), name)
        if not any(getattr(self, name) for name in COMPONENTS) and self.scale != 1.0:
            raise InputError(
                f"noise_scale={self.scale:g} scales nothing: gate_error, thermal_relaxation and "
                "readout_error are all switched off. Switch a component on, or drop noise_scale"
            )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> NoiseSettings:
        return cls(
            scale=options.get("noise_scale", 1.0),
            **{name: options.get(name, True) for name in COMPONENTS},
        )

    @property
    def is_device(self) -> bool:
        """The device as calibrated: scale 1, every component on."""
        return self == NoiseSettings()

    @property
    def switches(self) -> dict[str, bool]:
        """The component switches, as ``NoiseModel.from_backend`` takes them."""
        return {name: getattr(self, name) for name in COMPONENTS}

    def describe(self) -> str:
        off = [name for name in COMPONENTS if not getattr(self, name)]
        text = f"noise x{self.scale:g}"
        return text + (f", without {', '.join(off)}" if off else "")


def scaled_properties(properties: dict, scale: float) -> dict:
    """A copy of raw device properties (``props_<device>.json`` layout) with every error
    channel scaled by `scale` (see the module docstring); `properties` is not changed."""
    out = copy.deepcopy(properties)
    if scale == 1.0:
        return out
    for qubit in out.get("qubits", []):
        for item in qubit:
            if item.get("name") in ("T1", "T2") and item.get("value") is not None:
                item["value"] = float("inf") if scale == 0 else item["value"] / scale
            elif item.get("name") in READOUT and item.get("value") is not None:
                item["value"] = min(item["value"] * scale, 1.0)  # see check_scale
    for gate in out.get("gates", []):
        for item in gate.get("parameters", []):
            if item.get("name") == "gate_error" and item.get("value") is not None:
                item["value"] = item["value"] * scale
    return out


def gate_error_bound(n_qubits: int) -> float:
    """The largest gate error Aer turns into a channel without truncating it: d/(d+1)."""
    dim = 2**n_qubits
    return dim / (dim + 1)


def check_scale(
    scale: float,
    gate_errors: dict[tuple[str, tuple[int, ...]], float],
    readout_errors: dict[int, dict[str, float]],
    device: str,
) -> None:
    """InputError if `scale` makes a probability invalid for the gates and measured qubits
    of one circuit (its calibrated errors at scale 1, given here), naming the first one and
    the largest scale those qubits allow. Errors already beyond the bound at scale 1 are the
    device's own (Aer truncates them) and are not blamed on the scale."""
    if scale <= 1.0:
        return
    limits: list[tuple[float, str]] = []
    for (name, qubits), error in gate_errors.items():
        bound = gate_error_bound(len(qubits))
        if error and error <= bound:
            what = f"{name} on qubits {list(qubits)} (error {error:.3g}, at most {bound:.3g})"
            limits.append((bound / error, what))
    for qubit, values in readout_errors.items():
        for name, value in values.items():
            if value and value <= 1.0:
                limits.append((1.0 / value, f"{name} of qubit {qubit} ({value:.3g}, at most 1)"))
    if not limits:
        return
    largest, what = min(limits)
    if scale > largest:
        raise InputError(
            f"noise_scale={scale:g} makes a probability invalid on {device}: {what} would become "
            f"{scale:g} x larger. The qubits this circuit uses allow noise_scale <= {largest:.4g}"
        )
