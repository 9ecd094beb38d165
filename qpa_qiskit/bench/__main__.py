"""``python -m qpa_qiskit.bench qnn|primitives|train``: the benchmarks (:mod:`.command`)."""

from .command import main

main()
