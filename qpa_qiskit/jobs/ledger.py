"""The ledger: an append-only, fsynced record of every submission of a job store.

It is the one source of truth about what was paid for. Each record is on disk before the
call that follows it (a submission, a counts file, ...), so whatever moment a process dies
at, replaying the ledger says which jobs exist and which must be looked up by their tags.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import StateError
from ..files import fsync_dir


class Ledger:
    """Append-only, fsynced JSON Lines record of submissions, keyed by a job key."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, kind: str, key: str, **fields: Any) -> dict:
        """Write one record durably: it is on disk when this returns."""
        record = {"kind": kind, "key": key, "time": time.time(), **fields}
        line = json.dumps(record, sort_keys=True) + "\n"
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not new and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a crash cut the last record short: start afresh
                    line = "\n" + line
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:  # the directory entry of a new file must reach the disk too
            fsync_dir(self.path.parent)
        return record

    def records(self) -> list[dict]:
        """Every complete record in order; a line cut short by a crash (or otherwise not a
        record) is skipped. A ledger that cannot be read at all is a StateError."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(
                f"cannot read the ledger {self.path} ({type(exc).__name__}: {exc}); it records every "
                "job submitted: make it a readable file again (restore it from a backup if need be)"
            ) from None
        out = []
        for line in data.splitlines():
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(record, dict) and "kind" in record and "key" in record:
                out.append(record)
        return out

    def state(self) -> dict[str, dict]:
        """Replay: per key, the merged fields of its records and the last kind seen.

        An ``intent`` starts a new attempt: fields of earlier attempts are dropped (their job
        ids stay listed under ``earlier_job_ids``, their kinds in ``history``).
        """
        states: dict[str, dict] = {}
        for record in self.records():
            merged = states.setdefault(record["key"], {"history": [], "earlier_job_ids": []})
            if record["kind"] == "intent":
                if merged.get("job_id"):
                    merged["earlier_job_ids"].append(merged["job_id"])
                keep = ("history", "earlier_job_ids")
                for name in [k for k in merged if k not in keep]:
                    del merged[name]
            merged.update({k: v for k, v in record.items() if k not in ("kind", "time")})
            merged["last"] = record["kind"]
            merged["history"].append(record["kind"])
        return states
