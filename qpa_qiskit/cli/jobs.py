"""``qpa jobs submit|status|collect|list|cancel``: IBM Quantum job stores."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from ..errors import BusyError, InputError, JobsError, QPAError
from ..files import atomic_write
from ..validate import positive_int, positive_number
from .parsing import summary

_CREATE_OPTIONS = (
    "backend",
    "qubits",
    "reps",
    "rotation",
    "shots_factor",
    "shots",
    "theta",
    "parameters",
    "max_executions",
    "sampler_options",
    "max_execution_time",
)


def _print_table(columns: list[tuple[str, str]], rows: list[list]) -> None:
    """Columns are (title, spec): spec starts with '<' (left) or '>' (right), the rest is a
    format spec for the cells (',' groups thousands). Widths fit the cells; None is '-'."""
    cells = [
        ["-" if v is None else format(v, spec[1:]) for v, (_, spec) in zip(row, columns, strict=True)]
        for row in rows
    ]
    widths = [max([len(title), *(len(row[i]) for row in cells)]) for i, (title, _) in enumerate(columns)]
    for line in [[title for title, _ in columns], *cells]:
        print(
            " ".join(
                f"{c:{spec[0]}{w}}" for c, (_, spec), w in zip(line, columns, widths, strict=True)
            ).rstrip()
        )


def _print_job_rows(store) -> None:
    columns = [
        ("job", "<"),
        ("state", "<"),
        ("status", "<"),
        ("job id", "<"),
        ("sets", ">"),
        ("executions", ">,"),
    ]
    _print_table(
        columns,
        [[r["key"], r["last"], r["status"], r["job_id"], r["sets"], r["executions"]] for r in store.rows()],
    )


def _print_plan(plan, pubs_shapes, shots: int, max_executions: int) -> None:
    columns = [
        ("job", "<"),
        ("PUBs (sets x parameters)", "<"),
        ("sets", ">"),
        ("shots", ">"),
        ("executions", ">,"),
    ]
    rows = [
        [
            f"job-{job.index:04d}",
            " ".join(f"({stop - start}, {pubs_shapes[pub][1]})" for pub, start, stop in job.slices),
            job.sets,
            shots,
            job.executions,
        ]
        for job in plan
    ]
    _print_table(columns, rows)
    total = sum(job.executions for job in plan)
    sets = sum(job.sets for job in plan)
    print(f"total: {len(plan)} job(s), {sets} sets, {total:,} executions (limit {max_executions:,} per job)")


def _runtime_options(args: argparse.Namespace) -> dict | None:
    """The runtime Sampler's options of --sampler-options and --max-execution-time, checked by
    the runtime's own options model (one-line InputError otherwise)."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends.ibm import sampler_options

    options = sampler_options(args.sampler_options, "--sampler-options")
    dumped = {} if options is None else options.model_dump(mode="json", exclude_unset=True)
    if args.max_execution_time is not None:
        limit = positive_int(args.max_execution_time, "--max-execution-time (QPU seconds per job)")
        if dumped.get("max_execution_time") not in (None, limit):
            raise InputError(
                f"--max-execution-time {limit} contradicts max_execution_time "
                f"{dumped['max_execution_time']} of --sampler-options; give one of them"
            )
        dumped["max_execution_time"] = limit
    return dumped or None


def _print_batch(batch, options: dict | None) -> None:
    """What a new batch runs, before it is written."""
    backend = batch.backend
    print(
        f"backend {backend.name} ({backend.num_qubits} qubits), {batch.mode} mode, "
        f"{batch.shots} shots per set"
    )
    print(
        f"circuit: {batch.qubits} qubits x {batch.reps} layers ({batch.rotation}), "
        f"{batch.circuit.num_parameters} angles; "
        f"ISA depth {batch.isa.depth()}, {batch.two_qubit_gates} two-qubit gates"
    )
    print(f"work: {batch.what}")
    _print_plan(batch.plan, [p.shape for p in batch.pubs], batch.shots, batch.max_executions)
    if options:
        print(f"sampler options: {json.dumps(options, sort_keys=True)}")


def _budget(value: float | None) -> float | None:
    """--max-qpu-seconds: a finite number > 0 (InputError otherwise), or None."""
    return None if value is None else positive_number(value, "--max-qpu-seconds (the QPU-time budget)")


def _check_batch_budget(batch, budget: float | None) -> None:
    """Print the cost model's projection of a new batch; refuse it (nothing written) over `budget`."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends.cost import USAGE_GUIDE, open_plan_share

    budget = _budget(budget)
    seconds, timing = batch.qpu_seconds()
    print(
        f"QPU time projected (the cost model, docs/ibm.md#what-a-run-costs): {seconds:,.1f} s, "
        f"{open_plan_share(seconds):.0%} of the Open Plan's 10 minutes ({timing.describe()}, + 2 s per job; "
        f"{USAGE_GUIDE}; not checked against a live job)"
    )
    for assumption in timing.assumed:
        print(f"assumed: {assumption}")
    if budget is not None and seconds > budget:
        raise InputError(
            f"the batch's projected QPU time, {seconds:,.1f} s, exceeds --max-qpu-seconds {budget:g}; "
            "nothing was submitted or written. Give fewer steps (--theta) or sets (--parameters), fewer "
            "shots, or a larger budget"
        )


def _check_store_budget(store, budget: float) -> None:
    """An existing store: its recorded QPU time (the service's usage where final, else the
    projection) and the projection of the jobs still to submit, refused over `budget`."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs.usage import store_timing, store_usage

    budget = _budget(budget)
    backend = store.backend()
    usage = store_usage(store, store_timing(store, backend.connect()), reported=not backend.is_local_testing)
    total = usage.recorded + usage.planned
    print(
        f"QPU time: {usage.recorded:,.1f} s recorded ({usage.reported_jobs} job(s) as reported, "
        f"{usage.projected_jobs} projected), {usage.planned:,.1f} s projected for the jobs still to submit"
    )
    if usage.planned and total > budget:
        raise InputError(
            f"{store.root}: its recorded and remaining jobs are projected at {total:,.1f} QPU s, over "
            f"--max-qpu-seconds {budget:g}; nothing was submitted. Give a larger budget to submit the rest"
        )


def cmd_jobs_submit(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs.batch import submit_batch

    root = Path(args.store)
    if (root / "store.json").exists():
        store, backend = _resume_store(args, root), None
    else:
        store, backend = _create_store(args, root)
    if store is None:  # a dry run: it printed what it would submit
        return 0
    report = submit_batch(
        store,
        backend,
        mode=args.mode,
        resubmit_unconfirmed=args.resubmit_unconfirmed,
        retry_failed=args.retry_failed,
        command=f"qpa jobs submit {root}",
    )
    for key, why in report.failed.items():
        print(f"{key}: failed ({why}); 'qpa jobs submit {root} --retry-failed' submits it again")
    print(
        f"{len(report.submitted)} job(s) submitted, {len(report.found)} found by tags; "
        f"'qpa jobs status {root}' shows them, 'qpa jobs collect {root}' fetches the results"
    )
    return 0


def _resume_store(args: argparse.Namespace, root: Path):
    """The job store at `root`, to finish submitting (its circuit and sets are its own: options
    that would create one are refused); None after a dry run has printed its jobs."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs import JobStore

    given = [name for name in _CREATE_OPTIONS if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise InputError(
            f"{root} already holds a job store, created with its circuit and parameter sets; run "
            f"'qpa jobs submit {root}' without {flags} to finish submitting it, or choose a new directory"
        )
    store = JobStore(root)
    if args.max_qpu_seconds is not None:
        _check_store_budget(store, args.max_qpu_seconds)
    if args.dry_run:
        print(
            f"dry run, nothing submitted: {root} ({store.meta['backend']}, {store.shots} shots per set, "
            f"{args.mode or store.meta['mode']} mode)"
        )
        _print_job_rows(store)
        return None
    print(f"resuming {root}: jobs with a recorded id are not submitted again")
    return store


def _create_store(args: argparse.Namespace, root: Path):
    """(a new job store at `root` from the options, its backend); (None, None) after a dry run
    has printed the plan and its usage estimate."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends import QPABackend, family_class
    from ..jobs import MAX_EXECUTIONS
    from ..jobs.batch import plan_batch

    if args.backend is None or args.qubits is None:
        raise InputError("a new job store needs --backend ibm:<device> and --qubits N")
    if args.shots_factor is None and args.shots is None:
        raise InputError("give --shots-factor c (n_shot = ceil(c 2^N)) or --shots n")
    if not family_class(args.backend).runs_remotely:
        raise InputError(f"qpa jobs runs on IBM Quantum: --backend ibm:<device>, not {args.backend!r}")
    options = _runtime_options(args)
    backend = QPABackend(
        args.backend, shots_factor=args.shots_factor, shots=args.shots, sampler_options=options
    )
    batch = plan_batch(
        backend,
        args.qubits,
        reps=args.reps or 8,
        rotation=args.rotation or "ry",
        theta=args.theta,
        parameters=args.parameters,
        seed=args.seed,
        max_executions=MAX_EXECUTIONS if args.max_executions is None else args.max_executions,
        mode=args.mode or "batch",
    )
    _print_batch(batch, options)
    _check_batch_budget(batch, args.max_qpu_seconds)
    if args.dry_run:
        print(batch.usage_estimate())
        print("dry run: nothing submitted, nothing written")
        return None, None
    store = batch.create(root)
    print(f"job store {root} (run tag qpa-run:{store.id})")
    return store, backend


def cmd_jobs_status(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs import JobStore, sync

    store = JobStore(args.store)
    if not args.offline:
        try:
            sync.refresh(store, store.service())
        except (BusyError, JobsError) as exc:  # a `collect --wait` holds the store, or the service
            # cannot be reached: show what the ledger knows
            print(f"(not refreshed: {exc})")
    meta = store.meta
    print(
        f"{store.root}: {meta['kind']} on {meta['backend']}, {meta['shots']} shots per set, "
        f"run tag qpa-run:{store.id}, created {meta['created']}"
    )
    _print_job_rows(store)
    return 0


def cmd_jobs_collect(args: argparse.Namespace) -> int:

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs import JobStore, sync

    store = JobStore(args.store)
    service = store.service()
    incomplete = 0
    for label in store.labels():
        report = sync.collect(store, label, service, wait=args.wait, poll=args.poll)
        for key, status in report.pending.items():
            print(f"{key}: {status}")
        for key, why in report.failed.items():
            print(f"{key}: failed ({why})")
        for key in report.unconfirmed:
            print(f"{key}: submission unconfirmed; run 'qpa jobs submit {store.root}' to reconcile it")
        incomplete += len(report.pending) + len(report.failed) + len(report.unconfirmed)
        print(f"{label}: {len(report.collected)} job(s) collected")
    if incomplete:
        print(f"{incomplete} job(s) not collected; run this again later (or with --wait)")
        return 3
    if "batch" in store.labels():
        probs = store.probabilities("batch")
        out = store.root / "probabilities.npy"
        buffer = io.BytesIO()
        np.save(buffer, probs)
        atomic_write(out, buffer.getvalue())
        print(f"probabilities {probs.shape} (sets x 2^N, in the order of the parameter sets) in {out}")
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """One row per job store under the root; a store that cannot be read is listed with its
    error after the table, and makes the exit status 2 (the others are still listed)."""

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs import JobStore

    root = Path(args.root)
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise InputError(
            f"{root} {what}; give the directory that holds the job stores (default: jobs, the one "
            "'qpa jobs submit jobs/<name>' fills)"
        )
    found = sorted(p.parent for p in root.rglob("store.json"))
    # .<name>.* folders are temporaries of a store being created (or killed while created)
    stores = [p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not stores:
        print(f"no job stores under {root}")
        return 0
    table, broken = [], []
    for path in stores:
        try:
            store = JobStore(path)
            rows = store.rows()
        except QPAError as exc:
            broken.append(f"{path}: cannot be read: {exc}")
            continue
        submitted = sum(1 for r in rows if r["job_id"])
        collected = sum(1 for r in rows if r["last"] == "collected")
        failed = sum(1 for r in rows if r["last"] in ("failed", "cancelled"))
        table.append(
            [str(path), store.meta["kind"], store.meta["backend"], len(rows), submitted, collected, failed]
        )
    columns = [
        ("store", "<"),
        ("kind", "<"),
        ("backend", "<"),
        ("jobs", ">"),
        ("submitted", ">"),
        ("collected", ">"),
        ("failed", ">"),
    ]
    if table:
        _print_table(columns, table)
    for line in broken:
        print(line)
    if broken:
        print(f"{len(broken)} of {len(stores)} job store(s) cannot be read; see above")
        return 2
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..jobs import JobStore, sync

    store = JobStore(args.store)
    cancelled = sync.cancel(store, store.service())
    print(f"{len(cancelled)} job(s) cancelled")
    return 0


def add_recovery_options(p: argparse.ArgumentParser, what: str) -> None:
    """The two ways a recorded submission may go again, both only when asked for."""
    p.add_argument(
        "--resubmit-unconfirmed",
        action="store_true",
        help=f"{what}: submit again if its submission was cut off and no job carries its tags",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help=f"{what}: submit again if it failed or was cancelled"
    )


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    """--mode, --sampler-options and --max-execution-time of ``qpa jobs submit``: how IBM Quantum
    runs the jobs (``qpa train`` has them as run-configuration fields)."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends.ibm import EXECUTION_MODES

    p.add_argument(
        "--mode",
        choices=EXECUTION_MODES,
        help="execution mode on IBM Quantum (default batch: the store's jobs are independent); Open Plan "
        "instances may run job and batch mode only. On an existing store: the mode of the jobs still "
        "to submit (default: the store's)",
    )
    p.add_argument(
        "--sampler-options",
        help="the runtime Sampler's options as JSON text or a JSON file, checked by "
        "qiskit_ibm_runtime.options_models.SamplerOptions; recorded in the store",
    )
    p.add_argument(
        "--max-execution-time", type=int, help="QPU seconds a job may use before the service cancels it"
    )


def add_commands(sub) -> None:
    p = sub.add_parser("jobs", help=summary("jobs"))
    jobs = p.add_subparsers(dest="jobs_command", required=True)
    q = jobs.add_parser(
        "submit", help="submit a batch of QNN evaluations (Batch mode unless --mode), or resume submitting"
    )
    q.add_argument(
        "store", help="job store directory, e.g. jobs/first-batch (created; an existing one resumes)"
    )
    q.add_argument("--backend", help="ibm:<device> (ibm:fake_<device> runs locally)")
    q.add_argument("--qubits", type=int, help="N: the ansatz measures 2^N outcomes")
    q.add_argument("--reps", type=int, help="ansatz layers (default 8)")
    q.add_argument("--rotation", choices=["ry", "rx"], help="default ry")
    q.add_argument("--shots-factor", type=float, help="c: n_shot = ceil(c 2^N)")
    q.add_argument("--shots", type=int, help="shots per parameter set instead of --shots-factor")
    q.add_argument("--theta", help="angles (P,) or (steps, P), .npy or text: forward + parameter-shift sets")
    q.add_argument("--parameters", help="parameter sets (B, P), .npy or text, evaluated as they are")
    q.add_argument("--seed", type=int, default=0, help="seed (>= 0) of random angles if no file")
    q.add_argument("--max-executions", type=int, help="per job, >= 1 (default: the runtime's 10,000,000)")
    q.add_argument("--dry-run", action="store_true", help="print the plan and cost; submit and write nothing")
    q.add_argument(
        "--max-qpu-seconds",
        type=float,
        help="QPU-time budget in seconds: a batch (or the rest of a store) projected over it is refused "
        "before anything is submitted or written (docs/ibm.md#what-a-run-costs)",
    )
    add_runtime_options(q)
    add_recovery_options(q, "a job")
    q.set_defaults(func=cmd_jobs_submit)
    q = jobs.add_parser("status", help="status of every job of a store (asks the service)")
    q.add_argument("store")
    q.add_argument("--offline", action="store_true", help="only what the ledger knows; no service call")
    q.set_defaults(func=cmd_jobs_status)
    q = jobs.add_parser("collect", help="fetch finished jobs by id (idempotent); exit 3 while any is pending")
    q.add_argument("store")
    q.add_argument("--wait", action="store_true", help="poll until every submitted job has finished")
    q.add_argument(
        "--poll", type=float, default=10.0, help="first polling interval in seconds, > 0 (grows to 120)"
    )
    q.set_defaults(func=cmd_jobs_collect)
    q = jobs.add_parser(
        "list",
        help="job stores under a directory; one that cannot be read is listed with its error "
        "and makes the exit status 2",
    )
    q.add_argument("root", nargs="?", default="jobs")
    q.set_defaults(func=cmd_jobs_list)
    q = jobs.add_parser("cancel", help="cancel every submitted job not yet finished")
    q.add_argument("store")
    q.set_defaults(func=cmd_jobs_cancel)
