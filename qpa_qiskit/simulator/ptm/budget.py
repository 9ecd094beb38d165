"""Memory budgets of the PTM engine: the error when one is too small, and sizes for people.

Why its own module: the forward walk (:mod:`.program`) and the adjoint (:mod:`.adjoint`)
both refuse a budget too small for them, with the same error and the same wording.
"""

from __future__ import annotations


def size_text(n: float) -> str:
    """Bytes for people: '512 MiB', '1.5 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


class MemoryBudgetError(ValueError):
    """A memory budget too small for even the least a computation needs (the message says how much)."""

    def __init__(self, message: str, need: int) -> None:
        super().__init__(message)
        self.need = need  # bytes: the least the computation can run in
