"""IBM Quantum jobs that survive days in a queue: planned under the runtime's limits,
recorded in a durable ledger, collected exactly once.

Hardware time is paid for and a queue may hold a job for days, while the process that
submitted it may die at any moment. So everything about a job lives in a *job store*, a
directory (``jobs/<name>`` for ``qpa jobs``, ``<run>/jobs`` for training in the loop)::

    store.json          what runs: backend, shots, store id (the run tag); written once
    circuit.qpy         the ISA circuit, transpiled once; every job of the store runs it
    values/<label>.npz  the parameter sets of one evaluation, written before any submission
    ledger.jsonl        append-only, fsynced: intent, submitted (job id), status, collected
    counts/<key>.npz    the counts of one job, written atomically before its 'collected' record
    local-service/      ibm:fake_<device> only: the stand-in for the service's own job store
    .lock               held by the one process working on the store

An *evaluation* (label ``batch``, ``step-000012``, ...) is one or more PUBs, each one
circuit with an array of parameter sets; it is split into jobs (keys ``<label>/job-0000``)
of at most :data:`MAX_EXECUTIONS` executions. The ledger decides everything: a job whose id
is recorded is never submitted again, and an intent with no id (the process died during the
call) is looked up on the service by its job tags before anything is resubmitted.

Modules: :mod:`.plan` (jobs under the limit), :mod:`.ledger`, :mod:`.store` (the job store's
local state), :mod:`.sync` (syncing it with the service: submit, refresh, collect, cancel),
:mod:`.batch` (the ``qpa jobs submit`` workflow), :mod:`.service` (the real runtime,
credential redaction), :mod:`.local` (the local-testing stand-in), :mod:`.retry` (transient
failures), :mod:`.loop` (training with the hardware in the loop), :mod:`.npz` (the store's
numpy files).

The names below are imported on first use (PEP 562 ``__getattr__``, :mod:`qpa_qiskit.lazy`).
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    "..credentials": "redact",
    ".ledger": "Ledger",
    ".local": "LocalTestingJobs",
    ".loop": "HardwareLoop",
    ".plan": "MAX_EXECUTIONS PlannedJob plan_jobs",
    ".retry": "is_transient with_retries",
    ".service": "MODES RuntimeJobs",
    ".store": "KINDS JobStore",
    ".sync": "Report",
})  # fmt: skip
