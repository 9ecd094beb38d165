"""Fake IBM devices, their Aer noise models, and the table of valid backend specs.

Why a module of its own: the ``aer_noisy`` family simulates fake devices, the ``ibm`` family
runs them in the runtime's local testing mode, and the spec parser names them in its error
messages. The lookup (with forgiving spelling and close matches) is built once, here.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import warnings
from typing import Any

from ..errors import SpecError
from ..noise import NoiseDescription, NoiseSettings, Snapshot, describe_noise, find_snapshot, snapshot_names


@functools.cache
def _fake_device_classes() -> dict[str, type]:
    """Fake IBM devices by their backend name (``fake_brisbane``), built once."""
    import qiskit_ibm_runtime.fake_provider as fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    table: dict[str, type] = {}
    for attr in dir(fake_provider):
        cls = getattr(fake_provider, attr)
        if inspect.isclass(cls) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2:
            stem = re.sub(r"V2$", "", attr[len("Fake") :])
            table["fake_" + re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()] = cls
    return table


@functools.cache
def _instance(cls: type) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "properties are not typical"
        return cls()


def fake_device_names() -> list[str]:
    """The fake devices' names, sorted (``fake_algiers``, ...)."""
    return sorted(_fake_device_classes())


def example_devices(n: int = 4) -> list[str]:
    """A few fake device names, well-known ones first, for error messages."""
    names = fake_device_names()
    preferred = [d for d in ("fake_brisbane", "fake_torino", "fake_manila", "fake_athens") if d in names]
    return (preferred + [d for d in names if d not in preferred])[:n]


@functools.cache
def fake_device(name: str) -> Any:
    """Instance of the fake device `name` (``fake_brisbane``, ``brisbane``, ``FakeBrisbane``)."""
    from .ibm import redact

    key = name.strip().lower()
    key = key if key.startswith("fake_") else "fake_" + key.removeprefix("fake")
    table = _fake_device_classes()
    if key not in table:
        # class names do not always spell the device name: look at the instances
        for cls in table.values():
            if _instance(cls).name == key:
                return _instance(cls)
        known = sorted(table)
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"unknown fake device {redact(repr(name))}.{hint} Known devices: {', '.join(known)} "
            "(case-insensitive, the fake_ prefix is optional)"
        )
    return _instance(table[key])


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
