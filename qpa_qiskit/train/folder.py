"""A run's folder on disk: created whole, opened, locked, its checkpoint and metrics.

Why apart from the trainer: what the folder guarantees (it appears whole or not at all, one
process trains it at a time, every file is replaced atomically, a killed run's tail is
dropped) does not depend on what is trained in it. The trainer hands over plain values: the
configuration's bytes, a checkpoint's state dict, a metrics record. Its old home,
``qpa_qiskit.run_folder``, re-exports its names for old imports.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, StateError
from ..files import atomic_directory, atomic_write, exclusive, read_json, remove_stale_temporaries
from .run_config import RunConfig

CONFIG = "config.json"
LAYOUT = "layout.json"  # the physical qubits the circuit runs on and their errors, at the run's start
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOCK = ".lock"


def _names_layout(data: dict) -> bool:
    """A stored configuration sets the backend's ``layout`` (in any section, or flat)."""
    return "layout" in data or any(isinstance(v, dict) and "layout" in v for v in data.values())


class RunFolder:
    """The files of one run folder; :meth:`lock` it before changing anything in it."""

    def __init__(self, run_dir: Path, log: Callable[[str], None]) -> None:
        self.dir = run_dir
        self.log = log
        self._lock = None

    @staticmethod
    def check_new(run_dir: Path) -> None:
        """`run_dir` may take a new run: absent or an empty folder."""
        if (run_dir / CONFIG).exists():
            raise InputError(
                f"{run_dir} already holds a run; continue it with 'qpa train {run_dir} --resume' "
                "or choose another folder"
            )
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"{run_dir} is a file, not a folder; choose a folder for the run")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise InputError(f"{run_dir} exists and is not a run folder; choose an empty or new one")

    @staticmethod
    def _config_bytes(cfg: RunConfig) -> bytes:
        return json.dumps(cfg.to_dict(), indent=2).encode()

    def create(self, cfg: RunConfig, records: dict[str, Any] | None = None) -> None:
        """Make the folder appear with its ``config.json`` (and `records`: file name -> a JSON
        value, what the run found at its start, such as :data:`LAYOUT`), or not at all."""
        config = self._config_bytes(cfg)
        try:
            with atomic_directory(self.dir) as tmp:
                (tmp / CONFIG).write_bytes(config)
                for name, value in (records or {}).items():
                    (tmp / name).write_bytes(json.dumps(value, indent=2).encode())
        except OSError as exc:
            raise InputError(
                f"cannot create the run folder {self.dir} ({type(exc).__name__}: {exc}); check that "
                "its parent exists, is writable and has free space, and that no other process "
                "created a run there meanwhile"
            ) from None

    @staticmethod
    def stored_config(run_dir: str | Path) -> RunConfig:
        """The configuration a run folder was created with."""
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"{run_dir} is a file, not a run folder; give the folder 'qpa train' wrote")
        if not run_dir.is_dir() or not (run_dir / CONFIG).exists():
            raise InputError(
                f"{run_dir} holds no run (no {CONFIG}); start one with 'qpa train {run_dir} [options]'"
            )
        data = read_json(
            run_dir / CONFIG, "run configuration", "restore it, or start a new run in another folder"
        )
        if isinstance(data, dict) and isinstance(data.get("task"), dict) and "dev_share" not in data["task"]:
            # created before runs held out a dev split: it trained on all of its text, and resumes so
            data = {**data, "task": {**data["task"], "dev_share": None}}
        if isinstance(data, dict) and not _names_layout(data):
            # created before the layout option: its circuit was placed by the level-1 preset's own
            # layout stage, and it resumes so
            data = {**data, "layout": "preset"}
        try:
            return RunConfig.from_dict(data, source=str(run_dir / CONFIG))
        except InputError as exc:
            raise StateError(f"{exc}; restore {run_dir / CONFIG} or start a new run") from None

    # ------------------------------------------------------------------ the lock
    @property
    def locked(self) -> bool:
        return self._lock is not None

    def lock(self) -> None:
        """Hold the folder's lock and remove the temporary files a killed process left."""
        lock = exclusive(
            self.dir / LOCK,
            f"another process is training {self.dir} right now; wait for it to finish (or stop it), "
            f"then run 'qpa train {self.dir} --resume'",
        )
        lock.__enter__()
        self._lock = lock
        for name in (CHECKPOINT, METRICS, CONFIG):
            for path in remove_stale_temporaries(self.dir, name):
                self.log(f"removed {path.name}, left behind by a process that was stopped mid-write")

    def unlock(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    # ------------------------------------------------------------------ files
    def write(self, name: str, data: bytes) -> None:
        """Replace a file of the run atomically; a full disk or a permission problem is an
        error that says the old file is intact and how to go on."""
        try:
            atomic_write(self.dir / name, data)
        except OSError as exc:
            raise StateError(
                f"cannot write {self.dir / name} ({type(exc).__name__}: {exc}); nothing is lost, the "
                f"previous {name} is intact. Free some space or fix the permissions, then run "
                f"'qpa train {self.dir} --resume'"
            ) from None

    def save_config(self, cfg: RunConfig) -> None:
        """Replace ``config.json`` (a resumed run that trains to a new length records it)."""
        self.write(CONFIG, self._config_bytes(cfg))

    @property
    def has_checkpoint(self) -> bool:
        return (self.dir / CHECKPOINT).exists()

    def save_checkpoint(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.write(CHECKPOINT, buffer.getvalue())

    def load_checkpoint(self, restore: Callable[[dict], None]) -> None:
        """Read the checkpoint and hand its state to `restore`; anything that fails on the
        way (pickle, zip, key, shape and type errors alike) is one error naming the file."""
        path = self.dir / CHECKPOINT
        hint = (
            "it is truncated or corrupt. Restore it from a backup, or delete it to restart the run "
            "from step 0"
        )
        try:
            # on the CPU whatever device saved it (a run trained on a GPU resumes on a CPU): the
            # random states must be CPU tensors, and restoring copies the rest onto the run's device
            restore(torch.load(path, weights_only=False, map_location="cpu"))
        except StateError:
            raise
        except Exception as exc:
            raise StateError(f"cannot read the checkpoint {path} ({type(exc).__name__}); {hint}") from None

    @staticmethod
    def checkpoint_step(run_dir: Path) -> tuple[int | None, str]:
        """(the step `run_dir`'s checkpoint holds, "") where it reads, else (None, why not: it
        is missing, or what reading it failed on): what a study checks before it continues a run
        or scores it from its checkpoint (a killed write, a copy or clone that lost the file)."""
        path = Path(run_dir) / CHECKPOINT
        if not path.exists():
            return None, "is missing"
        try:
            state = torch.load(path, weights_only=False, map_location="cpu")
            if not isinstance(state["trainable"], dict):
                raise TypeError("no trainable tensors")
            return int(state["step"]), ""
        except Exception as exc:  # truncated, empty, not a torch file, not a checkpoint
            return None, f"cannot be read ({type(exc).__name__})"

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines of steps after `step` (the tail of a killed run)."""
        metrics = self.dir / METRICS
        if not metrics.exists():
            return
        kept = []
        for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by the kill
        self.write(METRICS, "".join(ln + "\n" for ln in kept).encode())

    def append_metrics(self, record: dict) -> None:
        """Append a step's line to ``metrics.jsonl``; a read-only or full file is an error that
        says what is kept and how to go on."""
        path = self.dir / METRICS
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise StateError(
                f"cannot append step {record['step']} to {path} ({type(exc).__name__}: {exc}); the run "
                f"stopped. The checkpoint and the earlier metric lines are intact. Fix the permissions "
                f"or free some space, then run 'qpa train {self.dir} --resume'"
            ) from None
