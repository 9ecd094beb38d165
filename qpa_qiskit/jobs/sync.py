"""Syncing a job store with the service: submit its jobs (never one twice), refresh their
status, collect their counts (exactly once) and cancel them.

Why its own module: :mod:`.store` is the local state a store's files hold, readable with no
account; everything here talks to the service (:class:`~.service.RuntimeJobs`) and records
what it learns in the store's ledger. Each operation holds the store's lock, so one process
at a time syncs a store.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from ..credentials import redact
from ..errors import JobsError, StateError
from ..files import exclusive
from ..validate import positive_number
from .plan import PlannedJob
from .retry import with_retries
from .service import RuntimeJobs, describe_error
from .store import JobStore

Method = TypeVar("Method", bound=Callable[..., Any])


def _locked(what: str) -> Callable[[Method], Method]:
    """Run a sync operation holding the store's lock (:func:`~qpa_qiskit.files.exclusive`),
    so that two processes can never submit (or collect) the same jobs at once; the second
    gets :class:`~qpa_qiskit.errors.BusyError`."""

    def decorate(method: Method) -> Method:
        @wraps(method)
        def locked(store: JobStore, *args: Any, **kwargs: Any) -> Any:
            busy = (
                f"another process is working on {store.root} right now; {what} waits until it has "
                "finished (or is stopped): run this again then"
            )
            with ExitStack() as stack:
                try:
                    stack.enter_context(exclusive(store.root / ".lock", busy))
                except OSError as exc:
                    raise StateError(
                        f"cannot lock the job store {store.root} ({type(exc).__name__}: {exc}); it must be "
                        "a directory this user can write to"
                    ) from None
                return method(store, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate


@dataclass
class Report:
    """What one submit or collect pass did, per job key."""

    submitted: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # key -> status
    failed: dict[str, str] = field(default_factory=dict)  # key -> status and error
    unconfirmed: list[str] = field(default_factory=list)  # intents with no id and no job under their tags


@_locked("submitting")
def submit(
    store: JobStore,
    label: str,
    service: RuntimeJobs,
    *,
    resubmit_unconfirmed: bool = False,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Submit every job of `label` that has none recorded yet; never one twice.

    A job with an id in the ledger is skipped. An intent with no id is first looked up
    on the service by its tags (found: its id is recorded); if no job carries them it
    is reported in ``Report.unconfirmed`` and only submitted again with
    ``resubmit_unconfirmed``. Failed or cancelled jobs go again only with ``retry_failed``.
    """
    values = store.values(label)
    plan = store.plan_of(values)
    state = store.ledger.state()
    report = Report()
    for job in plan:
        key = store.key(label, job.index)
        tags = store.tags(label, job.index)
        s = state.get(key, {})
        last = s.get("last")
        if last in ("failed", "cancelled"):
            if not retry_failed:
                report.failed[key] = f"{s.get('status', last)}: {s.get('error', '')}".strip(": ")
                continue
        elif s.get("job_id"):
            continue  # recorded: collect it, never submit it again
        elif last is not None:  # an intent whose job id never reached the ledger
            found = with_retries(
                lambda t=tags: service.find(t), f"looking up {key} by its tags", log=log, sleep=sleep
            )
            if found:
                store.ledger.append("found", key, job_id=found[0], other_job_ids=found[1:])
                log(f"{key}: its job id was not recorded; found job {found[0]} by its tags")
                if found[1:]:
                    log(f"{key}: more jobs carry its tags: {found[1:]} (cancel them if unwanted)")
                report.found.append(key)
                continue
            if not resubmit_unconfirmed:
                report.unconfirmed.append(key)
                continue
        _submit_one(store, key, tags, job, values, s.get("attempt", 0) + 1, service, log)
        report.submitted.append(key)
    return report


def _submit_one(
    store: JobStore,
    key: str,
    tags: list[str],
    job: PlannedJob,
    values: list[Any],  # the PUB value arrays of the job's evaluation
    attempt: int,
    service: RuntimeJobs,
    log: Callable[[str], None],
) -> None:
    """Submit one job: its intent is recorded first, then its id once the service gives it,
    so a process stopped in between leaves an intent that the next pass looks up by its tags."""
    pubs = store.job_pubs(job, values)
    service.open()  # account or session trouble fails here, before an intent is recorded
    store.ledger.append(
        "intent",
        key,
        attempt=attempt,
        tags=tags,
        slices=[list(x) for x in job.slices],
        shots=job.shots,
        executions=job.executions,
        mode=service.mode,
    )
    try:
        job_id = service.submit(pubs, job.shots, tags)
    except Exception as exc:
        store.ledger.append("unconfirmed", key, error=describe_error(exc))
        raise JobsError(
            f"submitting {key} failed ({describe_error(exc)}); the service may or may not have "
            "accepted it. Run the same command again: it looks the job up by its tags "
            "before submitting anything"
        ) from None
    store.ledger.append("submitted", key, job_id=job_id, attempt=attempt)
    log(f"{key}: submitted job {job_id} ({job.sets} sets x {job.shots} shots)")


def unconfirmed_message(store: JobStore, keys: list[str], command: str) -> str:
    return (
        f"{len(keys)} job(s) of {store.root} were being submitted when the process stopped, and no "
        f"job carrying their tags exists on the service: {', '.join(keys)}. They most likely never "
        f"reached it. To submit them now, run: {command} --resubmit-unconfirmed"
    )


@_locked("refreshing the status")
def refresh(
    store: JobStore,
    service: RuntimeJobs,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Ask the service for the status of every submitted, unfinished job and record
    changes; returns key -> status. Collects nothing."""
    out = {}
    for key, s in sorted(store.ledger.state().items()):
        if not s.get("job_id") or s.get("last") in ("collected", "failed", "cancelled"):
            continue
        status = _status(service, key, s["job_id"], log, sleep)
        if status != s.get("status"):
            store.ledger.append("status", key, job_id=s["job_id"], status=status)
        out[key] = status
    return out


@_locked("collecting")
def collect(
    store: JobStore,
    label: str,
    service: RuntimeJobs,
    *,
    wait: bool = False,
    poll: float = 5.0,
    max_poll: float = 120.0,
    log: Callable[[str], None] = print,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Fetch every submitted, uncollected job of `label` by its id; idempotent.

    Counts are written (atomically) before the ``collected`` record, so a job is fetched
    again only if the process died before its counts reached the disk, or if its counts
    file no longer reads back. With `wait`, polls until every submitted job has
    finished, with a progress line.
    """
    poll = positive_number(poll, "poll (seconds)")
    max_poll = positive_number(max_poll, "max_poll (seconds)")
    plan = store.plan(label)
    bar = None
    start = time.monotonic()
    try:
        while True:
            report = _collect_pass(store, label, plan, service, log, sleep)
            if not wait or not report.pending:
                return report
            if bar is None and progress:  # a progress line only while something is waiting
                # lazy: tqdm, only when progress is shown
                from tqdm import tqdm

                bar = tqdm(
                    total=len(plan),
                    desc=f"{label} on {store.meta['backend']}",
                    unit="job",
                    file=sys.stderr,
                    leave=False,
                )
            if bar is not None:
                bar.n = len(report.collected)
                waiting = ", ".join(sorted(set(report.pending.values())))
                elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - start))
                bar.set_postfix_str(f"{waiting}, waited {elapsed}")
            sleep(poll)
            poll = min(max_poll, poll * 1.5)
    finally:
        if bar is not None:
            bar.close()


def _status(
    service: RuntimeJobs,
    key: str,
    job_id: str,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> str:
    """The job's status, retried while the failure is transient; any other failure to
    reach the job stops everything with what to check (nothing is recorded)."""
    try:
        return with_retries(lambda: service.status(job_id), f"status of {key}", log=log, sleep=sleep)
    except JobsError:
        raise
    except Exception as exc:
        raise JobsError(
            f"{key}: job {job_id} cannot be read on the service ({describe_error(exc)}). Check that "
            "the account and instance that submitted it are the active ones; the ledger is "
            "unchanged, so run the same command again once they are"
        ) from None


def _usage(service: RuntimeJobs, key: str, job_id: str, log: Callable[[str], None]) -> dict | None:
    """The usage the service reports for a finished job, for the ledger; a failure to get
    it is logged and recorded as None (it never stops a collection)."""
    try:
        return service.usage(job_id)
    except Exception as exc:
        log(f"{key}: the usage of job {job_id} is not known ({describe_error(exc)})")
        return None


def _collect_pass(
    store: JobStore,
    label: str,
    plan: list[PlannedJob],
    service: RuntimeJobs,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> Report:
    state = store.ledger.state()
    report = Report()
    for job in plan:
        key = store.key(label, job.index)
        s = state.get(key, {})
        job_id = s.get("job_id")
        have_counts = store.has_counts(key, job, log)
        if s.get("last") == "collected" and have_counts:
            report.collected.append(key)
            continue
        if s.get("last") in ("failed", "cancelled"):
            report.failed[key] = f"{s.get('status', s['last'])}: {s.get('error', '')}".strip(": ")
            continue
        if not job_id:
            if s:
                report.unconfirmed.append(key)
            else:
                report.pending[key] = "NOT SUBMITTED"
            continue
        if not have_counts:
            status = _status(service, key, job_id, log, sleep)
            if status != s.get("status"):
                store.ledger.append("status", key, job_id=job_id, status=status)
            if status in ("ERROR", "CANCELLED"):
                error = redact(
                    with_retries(lambda j=job_id: service.error(j), f"error of {key}", log=log, sleep=sleep)
                )
                usage = _usage(service, key, job_id, log)
                store.ledger.append(
                    "failed", key, job_id=job_id, status=status, error=error[:500], usage=usage
                )
                report.failed[key] = f"{status}: {error}".strip(": ")
                continue
            if status != "DONE":
                report.pending[key] = status
                continue
            result = with_retries(
                lambda j=job_id: service.result(j), f"result of {key}", log=log, sleep=sleep
            )
            store.save_counts(key, job, result)
        usage = _usage(service, key, job_id, log)  # the QPU time the job was charged
        path = store.counts_path(key)
        file = str(path.relative_to(store.root))
        store.ledger.append("collected", key, job_id=job_id, file=file, usage=usage)
        report.collected.append(key)
    return report


@_locked("cancelling")
def cancel(store: JobStore, service: RuntimeJobs, log: Callable[[str], None] = print) -> list[str]:
    """Cancel every submitted job that is not collected or failed; returns their keys."""
    cancelled = []
    for key, s in sorted(store.ledger.state().items()):
        if not s.get("job_id") or s.get("last") in ("collected", "failed", "cancelled"):
            continue
        try:
            with_retries(lambda j=s["job_id"]: service.cancel(j), f"cancelling {key}", log=log)
        except JobsError:
            raise
        except Exception as exc:  # e.g. the job finished meanwhile: collect it instead
            log(f"{key}: job {s['job_id']} not cancelled ({describe_error(exc)})")
            continue
        store.ledger.append("cancelled", key, job_id=s["job_id"], status="CANCELLED")
        log(f"{key}: cancelled job {s['job_id']}")
        cancelled.append(key)
    return cancelled
