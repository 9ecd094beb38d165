"""Noise as data: what a noise model applies, snapshots of devices, strength and components.

* :mod:`.description`: :class:`NoiseDescription`, the one reader of Aer's NoiseModel internals;
* :mod:`.snapshot`: :class:`Snapshot` files that fix a device's configuration and calibration;
* :mod:`.settings`: :class:`NoiseSettings`, ``noise_scale`` and the component switches;
* the noise a circuit meets on a device (``qpa noise show``) is reported by
  :mod:`qpa_qiskit.cli.noise_report`, beside the command that prints it.

The names are imported on first use (PEP 562 ``__getattr__``, :mod:`qpa_qiskit.lazy`): the
snapshot and description import qiskit, and the settings alone (:mod:`.settings`) are what the
run configuration needs.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".description": "NoiseDescription describe_noise",
    ".settings": "COMPONENTS NoiseSettings check_scale scaled_properties",
    ".snapshot": "Snapshot SnapshotDevice check_values find_snapshot packaged_dir snapshot_dirs "
                 "snapshot_names",
})  # fmt: skip
