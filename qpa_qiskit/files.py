"""Files and directories that appear whole or not at all, and are on disk when written.

Checkpoints, run configs, job stores, collected counts and exported adapters all go
through these helpers, so a crash at any moment never leaves half a file behind; the lock
keeps two processes out of one run folder or job store, and `read_json` turns any broken
file into an error that names it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import BusyError, InputError, StateError


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """The file appears whole or not at all, and is on disk when this returns. Its mode is
    that of any new file (0666 less the umask), not the 0600 of a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_directory(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to fill; on success it becomes `out` (which must be
    absent or an empty directory), on any error it is removed. Its mode is that of any new
    directory (0777 less the umask), not the 0700 of a temporary one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def exclusive(path: Path, busy_message: str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if absent) for the block.

    Two processes can never hold it at once: the second gets :class:`~qpa_qiskit.errors.BusyError`
    with `busy_message`. The kernel drops the lock when the process dies, even by SIGKILL,
    so a crash never leaves it held. (No lock on systems without fcntl, such as Windows.)
    """

    try:
        # lazy: POSIX only, for the lock
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(busy_message) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete the temporary siblings (``.<name>.*``) that `atomic_write` or
    `atomic_directory` leave when a process is killed mid-write; returns what was removed.
    Call it only while holding the folder's lock."""
    removed = []
    for tmp in folder.glob(f".{name}.*"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def set_aside(path: Path, suffix: str) -> Path:
    """Rename `path` to ``<name>.<suffix>`` beside it (``<name>.<suffix>-2``, ... where that is
    taken), never over another file: a file that cannot be used is kept, not deleted. Returns
    the new path."""
    target = path.with_name(f"{path.name}.{suffix}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{suffix}-{n}")
    os.replace(path, target)
    fsync_dir(path.parent)
    return target


def read_json(path: Path, what: str, hint: str) -> Any:
    """The JSON content of `path`; any OS or JSON error becomes a
    :class:`~qpa_qiskit.errors.StateError` that names the file, `what` it is, and `hint`."""

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"{what} {path} is missing; {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"cannot read {what} {path} ({type(exc).__name__}: {exc}); {hint}") from None


def _non_finite(data: Any, where: str = "") -> list[str]:
    """The paths (``rows[2].tvd``) of every NaN or infinite number in `data`."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [f"{where or 'the value'} = {data!r}"]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(data, (list, tuple)):
        return [p for i, v in enumerate(data) for p in _non_finite(v, f"{where}[{i}]")]
    return []


def json_bytes(data: Any, what: str, **options: Any) -> bytes:
    """`data` as strict JSON (UTF-8): a NaN or infinite number is refused, naming where it is,
    instead of being written as ``NaN``, which JSON readers reject."""

    bad = _non_finite(data)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InputError(
            f"{what} would hold numbers that are not finite ({', '.join(bad[:3])}{more}); JSON has no "
            "NaN or infinity, so nothing was written"
        )
    return json.dumps(data, allow_nan=False, **options).encode()
