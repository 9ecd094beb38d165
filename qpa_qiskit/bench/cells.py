"""What every benchmark shares: a cell (one measurement) run in a process of its own, its timing
and peak memory, the optional qiskit-machine-learning it may need, and how a cell is shown in a
table. Standard library only, so that the command line imports it without torch or qiskit."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from ..errors import DependencyError

QML = "qiskit-machine-learning"


def require_qml(what: str) -> tuple[Any, Any]:
    """qiskit-machine-learning's ``connectors`` and ``neural_networks`` modules, which only the
    QNN benchmarks use; DependencyError naming the extra that installs them otherwise."""
    try:
        # lazy: optional dependency (the dev and bench extras)
        import qiskit_machine_learning.connectors as connectors
        import qiskit_machine_learning.neural_networks as neural_networks
    except ImportError as exc:
        raise DependencyError(
            f"{what} needs {QML}, an optional dependency that is not installed ({exc}); install it "
            f"with pip install 'qpa-qiskit[bench]' (or pip install {QML})"
        ) from None
    return connectors, neural_networks


def time_steps(step: Callable[[], None], repeats: int, budget_s: float) -> tuple[float, int, float]:
    """(median seconds, samples, first-call seconds). The first call is a warm-up unless a
    single call already takes half the budget, in which case it is the only sample."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    if first > budget_s / 2:
        return first, 1, first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if sum(times) + first > budget_s and len(times) >= 1:
            break
    return statistics.median(times), len(times), first


def peak_rss() -> int:
    """Peak resident memory of this process, bytes: VmHWM (getrusage's ru_maxrss would carry
    the parent's peak into a spawned child on Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_child(cell: Callable[..., dict], *args) -> dict:
    """Run ``cell(*args)`` in a fresh (spawned) process, so that its peak memory is its own; an
    error or a kill is reported, not raised. `cell` is a module-level function of a benchmark
    module, which the child imports to find it."""

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        try:
            return pool.apply(cell, args)
        except Exception as exc:  # a baseline that fails is a row that says so
            return {"error": f"{type(exc).__name__}: {exc}"}


def show_seconds(cell: dict) -> str:
    """A cell's seconds in a table: its median and samples, "~" and "(extrapolated)" where it
    was predicted rather than run, "failed" where it failed."""
    if "error" in cell:
        return "failed"
    mark = "~" if cell.get("extrapolated") else ""
    tail = " (extrapolated)" if cell.get("extrapolated") else f" (n={cell['samples']})"
    return f"{mark}{cell['seconds']:.3g}{tail}"


def show_memory(cell: dict) -> str:
    """A cell's peak memory in GiB, "-" where it has none."""
    return f"{cell['peak_rss'] / 2**30:.2f}" if "peak_rss" in cell else "-"


def ratio(a: float | None, b: float | None, digits: int) -> str:
    """a / b to `digits` significant digits, or "-" where either is missing."""
    return f"{a / b:.{digits}g}" if a and b else "-"
