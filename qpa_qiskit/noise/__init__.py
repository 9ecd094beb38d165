"""Noise as data: what a noise model applies, snapshots of devices, strength and components.

* :mod:`.description`: :class:`NoiseDescription`, the one reader of Aer's NoiseModel internals;
* :mod:`.snapshot`: :class:`Snapshot` files that fix a device's configuration and calibration;
* :mod:`.settings`: :class:`NoiseSettings`, ``noise_scale`` and the component switches;
* the noise a circuit meets on a device (``qpa noise show``) is reported by
  :mod:`qpa_qiskit.cli.noise_report`, beside the command that prints it.

The snapshot and description names are imported on first use (PEP 562 ``__getattr__``): they
import qiskit, and the settings alone (:mod:`.settings`) are what the run configuration needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .settings import COMPONENTS, NoiseSettings, check_scale, scaled_properties

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    **dict.fromkeys(("NoiseDescription", "describe_noise"), "description"),
    **dict.fromkeys(("Snapshot", "SnapshotDevice", "check_values", "find_snapshot", "packaged_dir",
                     "snapshot_dirs", "snapshot_names"), "snapshot"),
}  # fmt: skip

if TYPE_CHECKING:  # what type checkers and editors see
    from .description import NoiseDescription, describe_noise
    from .snapshot import (
        Snapshot,
        SnapshotDevice,
        check_values,
        find_snapshot,
        packaged_dir,
        snapshot_dirs,
        snapshot_names,
    )


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "COMPONENTS",
    "NoiseDescription",
    "NoiseSettings",
    "Snapshot",
    "SnapshotDevice",
    "check_scale",
    "check_values",
    "describe_noise",
    "find_snapshot",
    "packaged_dir",
    "scaled_properties",
    "snapshot_dirs",
    "snapshot_names",
]
