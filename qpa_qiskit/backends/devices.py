"""Fake IBM devices, their Aer noise models, and the table of valid backend specs.

Why a module of its own: the ``aer_noisy`` family simulates fake devices, the ``ibm`` family
runs them in the runtime's local testing mode, and the spec parser names them in its error
messages. The lookup of fake devices itself (with forgiving spelling and close matches) is
:mod:`qpa_qiskit.fake_devices`, below :mod:`qpa_qiskit.noise` (whose snapshots are made from
fake devices) and the backends; this module re-exports it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..errors import SpecError
from ..fake_devices import (  # noqa: F401 - re-exported: example_devices, fake_device_names, _instance
    _fake_device_classes,
    _instance,
    example_devices,
    fake_device,
    fake_device_names,
)
from ..noise import NoiseDescription, NoiseSettings, Snapshot, describe_noise, find_snapshot, snapshot_names


def noise_source(device_name: str) -> Any:
    """What an ``aer_noisy`` device name stands for: a :class:`~qpa_qiskit.noise.Snapshot`
    (a snapshot file, or ``<name>.json`` in :func:`~qpa_qiskit.noise.snapshot_dirs`) or a live
    fake device."""
    path = find_snapshot(device_name)
    return Snapshot.load(path) if path is not None else fake_device(device_name)


def noisy_device_name(text: str) -> str:
    """The canonical ``aer_noisy`` device name: a snapshot's path or name, or a fake device's
    name; SpecError naming the snapshots and fake devices otherwise."""
    path = find_snapshot(text)
    if path is not None:
        Snapshot.load(path)  # a malformed file fails now, naming itself
        named = not (text.strip().lower().endswith(".json") or "/" in text or os.sep in text)
        return path.stem if named else str(path)
    try:
        return fake_device(text).name
    except SpecError as exc:
        names = snapshot_names()
        found = f" Snapshots found by name: {', '.join(names)}." if names else ""
        raise SpecError(f"{exc}.{found} A snapshot file can be given by its path (.json)") from None


_NOISE: dict[tuple, dict[str, Any]] = {}


def _noise(device_name: str, settings: NoiseSettings | None) -> dict[str, Any]:
    """The cache entry of one device and settings: its noise model, and its description
    once asked for. Keyed by the snapshot's data (not its name), so an edited file is new."""
    # lazy: qiskit-aer (seconds), only where Aer itself runs
    from qiskit_aer.noise import NoiseModel

    settings = settings or NoiseSettings()
    source = noise_source(device_name)
    key = (source.key if isinstance(source, Snapshot) else source.name, settings)
    if key not in _NOISE:
        if isinstance(source, Snapshot):
            device = source.device(settings.scale)
        elif settings.scale != 1.0:
            device = Snapshot.from_fake_device(source.name).device(settings.scale)
        else:
            device = source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _NOISE[key] = {"model": NoiseModel.from_backend(device, **settings.switches)}
    return _NOISE[key]


def noise_model(device_name: str, settings: NoiseSettings | None = None) -> Any:
    """Aer's noise model of a device, ``NoiseModel.from_backend``: gate errors (depolarising
    and thermal relaxation) and readout errors from its calibration data, scaled and switched
    by `settings` (:mod:`qpa_qiskit.noise.settings`); built once per device and settings.

    For a fake device as calibrated it is the model qiskit-ibm-runtime's client-side Sampler
    simulates with in local testing mode, so ``aer_noisy:fake_x`` and ``ibm:fake_x`` sample
    the same distributions (a test checks this).
    """
    return _noise(device_name, settings)["model"]


def noise_description(device_name: str, settings: NoiseSettings | None = None) -> NoiseDescription:
    """The :class:`~qpa_qiskit.noise.NoiseDescription` of :func:`noise_model`, built once."""
    entry = _noise(device_name, settings)
    if "description" not in entry:
        entry["description"] = describe_noise(entry["model"])
    return entry["description"]


def list_backends() -> list[tuple[str, int | None]]:
    """Valid backend specs with their qubit counts (None: limited by memory only)."""
    rows: list[tuple[str, int | None]] = [("statevector", None)]
    instances = [_instance(cls) for cls in _fake_device_classes().values()]
    devices = sorted((dev.name, dev.num_qubits) for dev in instances)
    rows += [(f"aer_noisy:{name}", n) for name, n in devices]
    for name in snapshot_names():
        try:
            rows.append((f"aer_noisy:{name}", Snapshot.load(find_snapshot(name)).num_qubits))
        except SpecError:
            continue  # a malformed file in a snapshot folder is reported when it is used
    rows += [(f"ibm:{name}", n) for name, n in devices]
    rows.append(("ibm:<device of your IBM Quantum account>", None))
    return rows
