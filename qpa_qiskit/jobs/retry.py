"""Retrying calls to IBM Quantum that fail for a moment.

Over days of queueing the network drops and the service answers 5xx or 429; such failures
are retried with exponential backoff and jitter (on top of the runtime's own few quick
retries of a request). A job's own failure, a job the service does not know, and a refusal
(401, 403: the account, its token or its plan) are not transient: they are raised at once,
for the store to record or report.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from ..backends.ibm import http_status
from ..errors import JobsError
from .service import describe_error

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Network trouble or a server-side hiccup, worth retrying: a dropped connection, a
    timeout, an answer 429 (too many requests) or 5xx. Not a job's own failure, and not a
    refusal that the same request meets again: an authentication or permission failure
    (401, 403), a bad request (other 4xx), a job the service does not know. The runtime's
    wrapped errors (``IBMRuntimeError("Failed to ...: 403 Client Error ...")``) are judged
    by the HTTP status their message keeps; one with no status and no sign of a network
    failure is not retried."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        # lazy: qiskit-ibm-runtime (seconds), only for IBM Quantum work
        import requests
        from qiskit_ibm_runtime.api.exceptions import RequestsApiError
        from qiskit_ibm_runtime.exceptions import (
            IBMNotAuthorizedError,
            IBMRuntimeError,
            RuntimeInvalidStateError,
            RuntimeJobMaxTimeoutError,
            RuntimeJobNotFound,
        )
    except ImportError:  # pragma: no cover - qiskit-ibm-runtime is a dependency
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return True
    refused = (IBMNotAuthorizedError, RuntimeJobNotFound, RuntimeInvalidStateError, RuntimeJobMaxTimeoutError)
    if isinstance(exc, refused):
        return False
    if not isinstance(exc, (RequestsApiError, IBMRuntimeError)):
        return False
    code = http_status(exc)
    if code is not None:
        return code == 429 or code >= 500
    # no status: the runtime's own retries gave up on the connection, or the service is in
    # maintenance (a 503 raised without its code); anything else is not a network failure
    return _NETWORK.search(str(exc)) is not None


_NETWORK = re.compile(
    r"max retries exceeded|connection (?:aborted|reset|refused|error)|timed? ?out|maintenance mode|"
    r"temporarily unavailable|bad gateway|service unavailable",
    re.IGNORECASE,
)


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
