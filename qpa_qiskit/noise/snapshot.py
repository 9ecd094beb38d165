"""Noise-model snapshots: one JSON file that fixes everything a noisy simulation depends on.

Why the runtime's own formats: qiskit-ibm-runtime builds each fake device from two files, the
device configuration (``conf_<device>.json``: qubits, coupling map, basis gates, timing) and
its calibration (``props_<device>.json``: gate errors and lengths, T1, T2, readout errors),
and refreshes them from a real device's ``configuration()`` and ``properties()``. A snapshot
holds exactly those two documents, unchanged, plus provenance; a device is rebuilt from them
the way the runtime rebuilds a fake device (``convert_to_target``), so the ISA transpilation
and Aer's ``NoiseModel.from_backend`` are reproduced exactly, whatever the installed
qiskit-ibm-runtime ships later. No ``NoiseModel.to_dict``/``from_dict`` (deprecated) is used.

Layout (``"format": "qpa-noise-snapshot"``, ``"version": 1``)::

    {"format", "version", "name",
     "provenance": {"source", "calibration_date", "taken", "libraries": {...}},
     "configuration": {...conf_<device>.json...},
     "properties": {...props_<device>.json...}}
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import functools
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.providers import BackendV2, Options

from ..errors import AccountError, InputError, SpecError
from ..fake_devices import fake_device
from ..files import atomic_write
from .settings import READOUT, scaled_properties

FORMAT = "qpa-noise-snapshot"
VERSION = 1
ENV_DIRS = "QPA_NOISE_MODELS"
PACKAGED = "models"  # the shipped snapshots, package data of qpa_qiskit.noise
CONFIGURATION_KEYS = ("backend_name", "n_qubits", "basis_gates", "coupling_map", "online_date")
PROPERTIES_KEYS = ("backend_name", "last_update_date", "qubits", "gates", "general")
LIBRARIES = ("qiskit", "qiskit-aer", "qiskit-ibm-runtime", "qpa-qiskit")


def packaged_dir() -> Path:
    """The snapshots shipped in the package (``qpa_qiskit/noise/models/``), read through
    ``importlib.resources``: the same folder from a checkout, an editable install or a wheel."""
    global _PACKAGED
    if _PACKAGED is None:
        folder = resources.files("qpa_qiskit.noise").joinpath(PACKAGED)
        if isinstance(folder, Path):
            _PACKAGED = folder
        else:  # a package inside a zip file: extract the folder once, for this process
            _PACKAGED = _EXTRACTED.enter_context(resources.as_file(folder))
            atexit.register(_EXTRACTED.close)
    return _PACKAGED


_PACKAGED: Path | None = None
_EXTRACTED = contextlib.ExitStack()


def snapshot_dirs() -> list[Path]:
    """Where ``aer_noisy:<name>`` looks for ``<name>.json``, in order: the folders in
    ``$QPA_NOISE_MODELS`` (``os.pathsep``-separated), ``./noise_models``, and the snapshots
    shipped in the package (:func:`packaged_dir`)."""
    dirs = [Path(p) for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "noise_models")
    dirs.append(packaged_dir())
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_snapshot(text: str) -> Path | None:
    """The snapshot file a spec's device part names: a path to a ``.json`` file (which must
    exist), or ``<text>.json`` in :func:`snapshot_dirs`; None if it names none."""
    text = text.strip()
    if text.lower().endswith(".json") or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise SpecError(f"noise-model snapshot {str(path)!r} does not exist (or is not a file)")
        return path.resolve()
    for folder in snapshot_dirs():
        for name in dict.fromkeys((text, text.lower())):
            path = folder / f"{name}.json"
            if path.is_file():
                return path.resolve()
    return None


def snapshot_names() -> list[str]:
    """The snapshots :func:`find_snapshot` finds by name, for listings and error messages."""
    names: list[str] = []
    for folder in snapshot_dirs():
        if folder.is_dir():
            names += [p.stem for p in sorted(folder.glob("*.json")) if p.stem not in names]
    return names


def _versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _json_default(value: Any) -> Any:
    """What ``configuration().to_dict()``/``properties().to_dict()`` hold beyond JSON."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, complex):
        return [value.real, value.imag]
    raise TypeError(f"cannot store {type(value).__name__} in a snapshot")


def _as_json(document: dict) -> dict:
    return json.loads(json.dumps(document, default=_json_default))


def check_output(path: str | Path) -> Path:
    """`path` as a snapshot file to write: InputError if it is no ``.json`` name, is a
    directory or something else than a file, or lies under a file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(
            f"{str(path)!r} is a directory; a snapshot is written to a file: give its name, e.g. "
            f"{str(path / 'device.json')!r}"
        )
    if path.suffix.lower() != ".json":
        raise SpecError(f"a snapshot file name ends in .json, got {str(path)!r}")
    if path.exists() and not path.is_file():
        raise InputError(f"{str(path)!r} exists and is not a file; a snapshot replaces only a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
            break
    return path


@dataclass(frozen=True)
class Snapshot:
    """A device's configuration and calibration, as stored in a snapshot file."""

    name: str
    configuration: dict
    properties: dict
    provenance: dict = field(default_factory=dict)
    path: Path | None = None

    # ------------------------------------------------------------------ making
    @classmethod
    def from_fake_device(cls, name: str) -> Snapshot:
        """The data files a qiskit-ibm-runtime fake device is built from, unchanged."""
        device = fake_device(name)
        folder = Path(type(device).dirname)
        conf = json.loads((folder / type(device).conf_filename).read_text(encoding="utf-8"))
        props = json.loads((folder / type(device).props_filename).read_text(encoding="utf-8"))
        conf["backend_name"] = device.name  # as the runtime does when it loads the file
        return cls._made(device.name, conf, props, f"{device.name}: qiskit-ibm-runtime fake device")

    @classmethod
    def from_ibm(cls, name: str, service: Any = None) -> Snapshot:
        """A real device's current configuration and calibration, through the saved account
        (``QiskitRuntimeService().backend(name)``, its ``configuration()`` and ``properties()``)."""
        if service is None:
            try:
                # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
                from qiskit_ibm_runtime import QiskitRuntimeService

                service = QiskitRuntimeService()
            except Exception as exc:  # the runtime raises several kinds for a missing account
                raise AccountError(
                    f"cannot open the saved IBM Quantum account ({type(exc).__name__}: {exc}); save one "
                    "with QiskitRuntimeService.save_account(channel=..., token=...)"
                ) from None
        try:
            backend = service.backend(name)
            conf = backend.configuration().to_dict()
            props = backend.properties(refresh=True)
        except Exception as exc:
            raise AccountError(
                f"cannot read the calibration of {name!r}: {type(exc).__name__}: {exc}"
            ) from None
        if props is None:
            raise AccountError(
                f"{name!r} publishes no calibration (properties() is None); nothing to snapshot"
            )
        conf = _as_json(conf)
        conf["backend_name"] = name
        return cls._made(name, conf, _as_json(props.to_dict()), f"{name}: IBM Quantum, current calibration")

    @classmethod
    def _made(cls, name: str, conf: dict, props: dict, source: str) -> Snapshot:
        provenance = {
            "source": source,
            "calibration_date": props.get("last_update_date"),
            "taken": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "libraries": _versions(),
        }
        snapshot = cls(name, conf, props, provenance)
        snapshot.device()  # refuse to write a snapshot that cannot be read back
        return snapshot

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "provenance": self.provenance,
            "configuration": self.configuration,
            "properties": self.properties,
        }

    def save(self, path: str | Path) -> Path:
        """Write the snapshot (whole or not at all), replacing a file of that name."""
        path = check_output(path)
        try:
            atomic_write(path, json.dumps(self.to_dict(), separators=(",", ":")).encode())
        except OSError as exc:
            raise InputError(
                f"cannot write the snapshot {str(path)!r}: {exc.strerror or exc}; choose a file in a "
                "folder you can write to"
            ) from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """Read and check a snapshot file; SpecError names the file and what is wrong."""
        path = Path(path).resolve()
        stat = path.stat() if path.is_file() else None
        if stat is None:
            raise SpecError(f"noise-model snapshot {str(path)!r} does not exist (or is not a file)")
        return _load(path, stat.st_mtime_ns, stat.st_size)

    @property
    def num_qubits(self) -> int:
        return int(self.configuration["n_qubits"])

    @property
    def calibration_date(self) -> str | None:
        return self.provenance.get("calibration_date") or self.properties.get("last_update_date")

    @property
    def key(self) -> str:
        """A digest of the data: equal keys, equal noise."""
        data = json.dumps([self.configuration, self.properties], sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ devices
    def device(self, scale: float = 1.0) -> SnapshotDevice:
        """The device as a qiskit ``BackendV2`` (its Target, for transpiling and for
        ``NoiseModel.from_backend``), with every error channel scaled by `scale`."""
        where = f"noise-model snapshot {str(self.path)!r}" if self.path else f"snapshot of {self.name}"
        check_values(self.configuration, self.properties, where)
        try:
            return SnapshotDevice(self.name, self.configuration, scaled_properties(self.properties, scale))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise SpecError(
                f"{where} is malformed: the device cannot be rebuilt from it ({type(exc).__name__}: {exc})"
            ) from None


@functools.lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int, size: int) -> Snapshot:  # the stat values are cache keys
    where = f"noise-model snapshot {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"cannot read {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpecError(
            f'{where} is not a qpa-qiskit noise snapshot (no "format": "{FORMAT}"); make one with '
            "`qpa noise snapshot DEVICE -o FILE`"
        )
    if data.get("version") != VERSION:
        raise SpecError(
            f"{where} has version {data.get('version')!r}; this qpa-qiskit reads version {VERSION}"
        )
    missing = [k for k in ("name", "configuration", "properties") if not data.get(k)]
    if missing:
        raise SpecError(f"{where} lacks {', '.join(missing)}")
    for section, keys in (("configuration", CONFIGURATION_KEYS), ("properties", PROPERTIES_KEYS)):
        if not isinstance(data[section], dict):
            raise SpecError(f"{where}: {section} must be an object")
        absent = [k for k in keys if k not in data[section]]
        if absent:
            raise SpecError(f"{where}: {section} lacks {', '.join(absent)}")
    n_qubits, qubits = data["configuration"]["n_qubits"], data["properties"]["qubits"]
    if not isinstance(n_qubits, int) or not isinstance(qubits, list) or len(qubits) != n_qubits:
        raise SpecError(
            f"{where}: configuration.n_qubits ({n_qubits!r}) does not match the calibrated qubits "
            f"in properties.qubits ({len(qubits) if isinstance(qubits, list) else qubits!r})"
        )
    for q, items in enumerate(qubits):
        names = {i.get("name") for i in items} if isinstance(items, list) else set()
        lacking = [n for n in ("T1", "T2", "readout_error") if n not in names]
        if lacking:
            raise SpecError(f"{where}: qubit {q} lacks {', '.join(lacking)} in properties.qubits")
    snapshot = Snapshot(str(data["name"]), data["configuration"], data["properties"],
                        dict(data.get("provenance") or {}), path)  # fmt: skip
    snapshot.device()  # malformed contents and impossible values fail here, naming the file
    return snapshot


#: the calibrated values a snapshot is checked for when it is read: (lowest, highest,
#: whether the lowest is allowed); a value may also be null (not calibrated)
PROBABILITY = (0.0, 1.0, True)
QUBIT_RANGES = {"T1": (0.0, math.inf, False), "T2": (0.0, math.inf, False),
                **{name: PROBABILITY for name in READOUT}}  # fmt: skip
GATE_RANGES = {"gate_error": PROBABILITY, "gate_length": (0.0, math.inf, True)}


def _accepted(low: float, high: float, closed: bool) -> str:
    if math.isinf(high):
        return f"a finite number {'>=' if closed else '>'} {low:g}"
    return f"a number in [{low:g}, {high:g}]"


def _check_value(value: Any, bounds: tuple[float, float, bool], what: str, where: str) -> None:
    low, high, closed = bounds
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None or (
        number and math.isfinite(value) and (value >= low if closed else value > low) and value <= high
    ):
        return
    raise SpecError(f"{where}: {what} is {value!r}; accepted: {_accepted(*bounds)}")


def check_values(configuration: dict, properties: dict, where: str) -> None:
    """SpecError naming the file, the field, the qubit(s) and the accepted range of the first
    impossible calibrated value (a gate error above 1 or NaN, a readout error outside [0, 1],
    a T1 or T2 not positive), or of a basis gate qiskit does not know."""
    known = get_standard_gate_name_mapping()
    basis = configuration.get("basis_gates")
    if not isinstance(basis, list) or not basis:
        raise SpecError(f"{where}: configuration.basis_gates is {basis!r}; accepted: a list of gate names")
    unknown = [g for g in basis if not isinstance(g, str) or g not in known]
    if unknown:
        raise SpecError(
            f"{where}: configuration.basis_gates holds {', '.join(map(repr, unknown))}, not a qiskit "
            f"standard gate; accepted: {', '.join(sorted(known))}"
        )
    qubits = properties.get("qubits")
    for q, items in enumerate(qubits if isinstance(qubits, list) else []):
        for item in items if isinstance(items, list) else []:
            bounds = QUBIT_RANGES.get(item.get("name")) if isinstance(item, dict) else None
            if bounds is not None:
                what = f"properties.qubits[{q}] {item['name']} of qubit {q}"
                _check_value(item.get("value"), bounds, what, where)
    gates = properties.get("gates")
    if not isinstance(gates, list):
        raise SpecError(f"{where}: properties.gates is {type(gates).__name__}; accepted: a list of gates")
    for i, gate in enumerate(gates):
        if not isinstance(gate, dict) or not isinstance(gate.get("parameters"), list):
            continue  # a structural fault: the rebuilt device names it
        for item in gate["parameters"]:
            bounds = GATE_RANGES.get(item.get("name")) if isinstance(item, dict) else None
            if bounds is not None:
                what = (f"properties.gates[{i}] {item['name']} of {gate.get('gate')!r} on "
                        f"qubits {gate.get('qubits')}")  # fmt: skip
                _check_value(item.get("value"), bounds, what, where)


class SnapshotDevice(BackendV2):
    """A device rebuilt from a snapshot: its Target, configuration and properties. It
    runs nothing itself; ``QPABackend("aer_noisy:<snapshot>")`` simulates it."""

    def __init__(self, name: str, configuration: dict, properties: dict) -> None:
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        from qiskit_ibm_runtime.models import BackendConfiguration
        from qiskit_ibm_runtime.utils.backend_converter import convert_to_target
        from qiskit_ibm_runtime.utils.backend_decoder import (
            decode_backend_configuration,
            properties_from_server_data,
        )

        conf, props = copy.deepcopy(configuration), copy.deepcopy(properties)
        decode_backend_configuration(conf)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._properties = properties_from_server_data(props)
            self._configuration = BackendConfiguration.from_dict(conf)
            super().__init__(
                name=name, description=conf.get("description"), backend_version=conf.get("backend_version")
            )
            self._target = convert_to_target(
                configuration=self._configuration,
                properties=self._properties,
                include_control_flow=True,
                include_fractional_gates=True,
            )

    @property
    def target(self):
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    @classmethod
    def _default_options(cls):
        return Options()

    def configuration(self):
        return self._configuration

    def properties(self):
        return self._properties

    def run(self, run_input, **options):
        raise NotImplementedError(
            "a snapshot device runs nothing itself: use QPABackend('aer_noisy:<snapshot>')"
        )
