"""Exceptions raised by qpa-qiskit. Each message names the problem and what is accepted."""

from __future__ import annotations


class QPAError(Exception):
    """Base class of every error qpa-qiskit raises on purpose."""


class SpecError(QPAError, ValueError):
    """An unknown backend spec, device name or backend option."""


class InputError(QPAError, ValueError):
    """A circuit, parameter array or number that the call cannot accept."""


class CapacityError(QPAError, MemoryError):
    """A simulation that would need more memory than the machine has."""


class AccountError(QPAError, RuntimeError):
    """No usable IBM Quantum account. The message never contains credentials."""


class JobsError(QPAError):
    """An IBM Quantum job that cannot be submitted, found or collected; says what to do."""


class BusyError(QPAError):
    """Another process holds the run folder or job store; says what to do."""


class StateError(QPAError):
    """A file of a run or job store (config, checkpoint, ledger, counts) that cannot be read:
    missing, truncated, corrupt or unreadable. Names the file and what to do."""


class BudgetReached(QPAError):
    """A run stopped before the step that would take its QPU time past its budget
    (``max_qpu_seconds``); says what was used and the command that continues it."""


class DependencyError(QPAError, ImportError):
    """An optional dependency that is not installed; names the extra that installs it."""


class TrialsFailed(QPAError):
    """Runs of a study (or of ``qpa compare``) that failed, after the finished ones were
    aggregated and written. `failures` maps each failed run's name to its one-line reason;
    `result` is what the study returns when every run finishes (its rows or tables, from
    the finished runs only)."""

    def __init__(self, message: str, failures: dict[str, str], result: object = None) -> None:
        super().__init__(message)
        self.failures = failures
        self.result = result
