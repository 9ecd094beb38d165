"""The fake IBM devices of qiskit-ibm-runtime, by name, at the bottom of the layers.

:func:`fake_device` finds one with forgiving spelling (``fake_brisbane``, ``brisbane``,
``FakeBrisbane``) and names close matches when it finds none; the table is built once. It is
here, below both, because noise snapshots are made from fake devices
(:meth:`qpa_qiskit.noise.Snapshot.from_fake_device`) and the backends run them
(:mod:`qpa_qiskit.backends.devices` re-exports these names). It imports only the credentials
rule and the errors of qpa_qiskit; qiskit-ibm-runtime's fake provider on first use.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import warnings
from typing import Any

from .credentials import redact
from .errors import SpecError


@functools.cache
def _fake_device_classes() -> dict[str, type]:
    """Fake IBM devices by their backend name (``fake_brisbane``), built once."""
    import qiskit_ibm_runtime.fake_provider as fake_provider  # heavy: on the first lookup only
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
