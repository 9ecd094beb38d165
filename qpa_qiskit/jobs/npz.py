"""numpy archives of a job store: parameter sets, counts, and the local stand-in's bit arrays.

Each is written in one piece (through :func:`~qpa_qiskit.files.atomic_write`) and read back
through :func:`read_npz`, so a truncated or corrupt file becomes a
:class:`~qpa_qiskit.errors.StateError` naming it and saying what to do, never a traceback
from deep inside numpy or zipfile.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import StateError


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """The content of an uncompressed ``.npz`` file holding `arrays`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_npz(path: Path, what: str, hint: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file `path`; a missing, unreadable or corrupt file is a
    StateError naming the file, `what` it is, and `hint` (what to do)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not a .npz archive")
        with data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise StateError(f"{what} {path} is missing; {hint}") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise StateError(f"cannot read {what} {path} ({type(exc).__name__}: {exc}); {hint}") from None
