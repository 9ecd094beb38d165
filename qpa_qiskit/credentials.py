"""The credentials rule, at the bottom of the layers: :func:`redact` removes every IBM Quantum
token it knows of (the environment's and every saved account's) from a text.

Every error that echoes user text (a spec, a device name, an exception message) goes through
it, so a token typed by mistake as ``ibm:<token>`` is never printed. It lives here, below the
backends, because the facade (:mod:`.backends.core`), the device tables
(:mod:`.backends.devices`) and the ``ibm:`` family (:mod:`.backends.ibm`, which re-exports
these names) all need it, and the family imports the other two. This module imports nothing
of qpa_qiskit; qiskit-ibm-runtime only when a text is redacted.
"""

from __future__ import annotations

import os

TOKEN_VARIABLE = "QISKIT_IBM_TOKEN"


def _saved_accounts() -> dict | None:
    """The saved accounts (name -> settings), None if the account file cannot be read."""
    try:
        from qiskit_ibm_runtime import QiskitRuntimeService  # heavy (seconds): only to redact

        return dict(QiskitRuntimeService.saved_accounts())
    except Exception:
        return None


def secrets() -> list[str]:
    """Credentials that must never be written anywhere: the token of the environment and of
    every saved account (texts of 8 characters or more)."""
    found = [os.environ.get(TOKEN_VARIABLE, "")]
    found += [str(a.get("token") or "") for a in (_saved_accounts() or {}).values()]
    return [s for s in found if len(s) >= 8]


def redact(text: str) -> str:
    """`text` with every credential replaced by ***."""
    for secret in secrets():
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` of an exception, credentials redacted, at most `limit` characters."""
    return redact(f"{type(exc).__name__}: {exc}")[:limit]
