"""Retrying calls to IBM Quantum that fail for a moment.

Over days of queueing the network drops and the service answers 5xx or 429; such failures
are retried with exponential backoff and jitter. A job's own failure, or a job the service
does not know, is not transient: it is raised at once, for the store to record or report.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import JobsError
from .service import describe_error

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Network trouble or a server-side hiccup, worth retrying; not a job's own failure."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        import requests
        from qiskit_ibm_runtime.api.exceptions import RequestsApiError
        from qiskit_ibm_runtime.exceptions import (
            IBMRuntimeError,
            RuntimeInvalidStateError,
            RuntimeJobMaxTimeoutError,
            RuntimeJobNotFound,
        )
    except ImportError:  # pragma: no cover - qiskit-ibm-runtime is a dependency
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    if isinstance(exc, RequestsApiError):
        code = getattr(exc, "status_code", None)
        return code is None or code == 429 or code >= 500
    if isinstance(exc, (RuntimeJobNotFound, RuntimeInvalidStateError, RuntimeJobMaxTimeoutError)):
        return False
    return isinstance(exc, IBMRuntimeError)  # e.g. "Failed to retrieve job": a failed request


def with_retries(
    fn: Callable[[], T],
    what: str,
    *,
    attempts: int = 6,
    base_delay: float = 2.0,
    max_delay: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> T:
    """`fn()`, retried with exponential backoff and jitter while it fails transiently."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise JobsError(
                    f"{what} still fails after {attempts} attempts ({describe_error(exc)}). Nothing "
                    "recorded is lost: run the same command again later."
                ) from None
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log(f"{what}: {describe_error(exc)}; retry {attempt} of {attempts - 1} in {delay:.0f} s")
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
