"""A study's folder on disk: what it records (``study.json``), what of it is committed
(``.gitignore``), and what a resume checks before anything runs.

* ``study.json``: the study's kind, its definition (the configuration of its runs less where
  they train, its axes, its learning-rate selection) and the code it was made with: the
  results version (:data:`RESULTS_VERSION`) and the package version. Running a study in a
  folder that holds another (another grid, another configuration, another results version)
  is refused before anything runs, naming each field that differs with both values
  (``config.training.steps: 300 in the folder, 1000 given``). Only where the runs train
  (:data:`~qpa_qiskit.train.resume.PLACEMENT`) and the package version may differ, and a
  field of :data:`TURNED_ON` may be turned on in a study under way (``study.json`` rewritten).
* ``.gitignore``: the folder's derived and transient files (the frozen body's features, locks,
  temporary files of writes in progress, files set aside), so that ``git add`` of the folder
  commits exactly what resumes the study: the study record, every run's configuration,
  metrics, checkpoint and result, and the study's own results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, StateError
from ..files import atomic_write, read_json
from ..train.resume import PLACEMENT

RESULTS_VERSION = 1
"""The version of the figures the code gives: bump it in any change that alters a run's figures
(its training, its scoring, its data, a default a run records nowhere), never otherwise.
``study.json`` records it, and a study folder made at another version is refused on resume,
naming both versions: its finished runs would not match the runs trained now. A folder from
before this field is taken as version 1 (the version counts changes from the first recorded
one)."""

STUDY = "study.json"
STUDY_LOCK = ".study.lock"
FEATURES = "features"  # the frozen body's hidden states, shared by the study's runs (qpa_qiskit.features)
GITIGNORE = ".gitignore"
BROKEN = "broken"  # the suffix of a checkpoint set aside because it cannot be used
STALE = "stale"  # the suffix of a result set aside because its run trains again
GITIGNORE_TEXT = f"""\
# Written by qpa-qiskit: what this study folder holds that is derived or transient, so that
# `git add` of the folder commits exactly what resumes the study (docs/studies.md, "A study
# that survives a stop and a fresh clone").
# The frozen body's features: computed again where a run needs them.
/{FEATURES}/
# Locks, and the temporary files of writes in progress (this file is kept).
.*
!/{GITIGNORE}
# Files set aside because they could not be used (kept on this disk, not committed).
*.{BROKEN}
*.{BROKEN}-*
*.{STALE}
*.{STALE}-*
# What resumes the study is committed even where another ignore file leaves out its kind
# (*.pt, *.jsonl, ...): checkpoints, records, metrics, job stores' arrays.
!checkpoint.pt
!*.json
!*.jsonl
!*.npz
"""
SHOWN_DIFFERENCES = 8  # fields named in a refusal; the rest counted

TURNED_ON: dict[tuple[str, ...], str] = {
    ("selection", "widen_edges"): (
        "widening only adds runs: every finished selection run stays valid, and a final run at a "
        "rate widening moves is kept in the folder, not reported"
    ),
}
"""The fields (paths in ``study.json``) a resume may turn on in a study made without them,
each with why that is safe. Each is written only when on (true), so absent is off; turning
one off again is refused like any other difference."""


def _field(record: Any, path: tuple[str, ...]) -> Any:
    """The mapping holding the last key of `path` in `record` (None where there is none)."""
    for key in path[:-1]:
        record = record.get(key) if isinstance(record, dict) else None
    return record if isinstance(record, dict) else None


def turned_on(stored: dict, wanted: dict) -> list[tuple[str, ...]]:
    """The fields of :data:`TURNED_ON` absent in the `stored` record and true in the `wanted` one."""
    found = []
    for path in TURNED_ON:
        old, new = _field(stored, path), _field(wanted, path)
        if old is not None and new is not None and path[-1] not in old and new.get(path[-1]) is True:
            found.append(path)
    return found


def with_turned_on(record: dict, paths: list[tuple[str, ...]]) -> dict:
    """`record` (a copy) with each field of `paths` set true."""
    record = json.loads(json.dumps(record))
    for path in paths:
        _field(record, path)[path[-1]] = True
    return record


def study_record(kind: str, definition: dict) -> dict:
    """What ``study.json`` holds for a study of `kind` and `definition`."""
    code = {"results_version": RESULTS_VERSION, "qpa_qiskit": __version__}
    return {"study": kind, **definition, "code": code}


def _identity(record: dict) -> dict:
    """What must match for a resume: the record less where its runs train (:data:`PLACEMENT`)
    and the package version; a record from before the results version is version 1."""
    config = record.get("config")
    if isinstance(config, dict):
        kept = {}
        for section, values in config.items():
            is_section = isinstance(values, dict)
            kept[section] = {k: v for k, v in values.items() if k not in PLACEMENT} if is_section else values
        record = {**record, "config": kept}
    code = record.get("code", {"results_version": 1})
    if isinstance(code, dict):
        code = {"results_version": code.get("results_version")}
    return {**record, "code": code}


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differences(stored: Any, given: Any, path: str = "") -> list[str]:
    """Every field that differs, as ``path: <stored> in the folder, <given> given``; mappings
    are compared field by field, anything else (lists too) whole."""
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted({*stored, *given}, key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in stored:
                out.append(f"{where}: absent in the folder, {_shown(given[key])} given")
            elif key not in given:
                out.append(f"{where}: {_shown(stored[key])} in the folder, absent in the settings given")
            else:
                out += differences(stored[key], given[key], where)
        return out
    return [] if stored == given else [f"{path}: {_shown(stored)} in the folder, {_shown(given)} given"]


def _refuse(out: Path, stored: dict, wanted: dict) -> None:
    """InputError naming every field of the study in `out` that differs from the one given."""
    found = differences(_identity(stored), _identity(wanted))
    if not found:
        return
    top = sorted({line.split(":", 1)[0].split(".", 1)[0] for line in found})
    shown = found[:SHOWN_DIFFERENCES] + (
        [f"and {len(found) - SHOWN_DIFFERENCES} more"] if len(found) > SHOWN_DIFFERENCES else []
    )
    cure = "give the same settings to resume it, or choose a new --out folder"
    if "code" in top:
        made_by = stored.get("code", {}).get("qpa_qiskit") if isinstance(stored.get("code"), dict) else None
        cure = (
            f"its runs were made by code whose figures differ from this qpa-qiskit's ({__version__}, results "
            f"version {RESULTS_VERSION}), so runs trained now would not match them: finish it with the "
            f"qpa-qiskit that made it{f' ({made_by})' if made_by else ''}, or choose a new --out folder"
        )
    raise InputError(f"{out} holds another study (different {', '.join(top)}): {'; '.join(shown)}; {cure}")


def prepare_folder(
    out: Path, kind: str, definition: dict, write: bool = True, log: Callable[[str], None] | None = None
) -> None:
    """A new study folder (``study.json`` and ``.gitignore`` written), or the folder of the same
    study (resumed; on another device too; its ``.gitignore`` written where it has none).
    Anything else is refused. With `write` False only checked (nothing is written). `log` hears
    a resume by another package version of the same results version."""
    marker = out / STUDY
    wanted = json.loads(json.dumps(study_record(kind, definition)))  # as study.json holds it
    if marker.exists():
        hint = "restore it (it records the study's settings) or choose a new --out folder"
        stored = read_json(marker, "the study record", hint)
        if not isinstance(stored, dict):
            raise StateError(f"the study record {marker} is not a mapping of settings; {hint}")
        switched = turned_on(stored, wanted)
        stored = with_turned_on(stored, switched)
        _refuse(out, stored, wanted)
        if write and switched:
            atomic_write(marker, json.dumps(stored, indent=2, sort_keys=True).encode())
            for path in switched:
                if log is not None:
                    log(f"{out}: {'.'.join(path)} turned on in the study under way, {marker} rewritten: "
                        f"{TURNED_ON[path]}")  # fmt: skip
        made_by = stored.get("code", {}).get("qpa_qiskit") if isinstance(stored.get("code"), dict) else None
        if write and log is not None and made_by not in (None, __version__):
            log(f"{out} was made by qpa-qiskit {made_by}, resumed by {__version__}: the same results version "
                f"({RESULTS_VERSION}), so its finished runs are kept")  # fmt: skip
        if write and not (out / GITIGNORE).exists():
            atomic_write(out / GITIGNORE, GITIGNORE_TEXT.encode())
        return
    if out.exists() and (not out.is_dir() or any(p.name != STUDY_LOCK for p in out.iterdir())):
        raise InputError(f"{out} exists and holds no study; choose a new --out folder")
    if write:
        atomic_write(marker, json.dumps(wanted, indent=2, sort_keys=True).encode())
        atomic_write(out / GITIGNORE, GITIGNORE_TEXT.encode())
