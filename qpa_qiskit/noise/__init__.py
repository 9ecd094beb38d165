"""Noise as data: what a noise model applies, snapshots of devices, strength and components.

* :mod:`.description`: :class:`NoiseDescription`, the one reader of Aer's NoiseModel internals;
* :mod:`.snapshot`: :class:`Snapshot` files that fix a device's configuration and calibration;
* :mod:`.settings`: :class:`NoiseSettings`, ``noise_scale`` and the component switches;
* :mod:`.report`: the noise a circuit meets on a device (``qpa noise show``).
"""

from .description import NoiseDescription, describe_noise
from .settings import COMPONENTS, NoiseSettings, check_scale, scaled_properties
from .snapshot import (
    Snapshot,
    SnapshotDevice,
    check_values,
    find_snapshot,
    packaged_dir,
    snapshot_dirs,
    snapshot_names,
)

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
