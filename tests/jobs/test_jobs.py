"""Planning under the runtime's execution limit, and the durable ledger."""

import os

import pytest

from qpa_qiskit import InputError
from qpa_qiskit.jobs import MAX_EXECUTIONS, Ledger, plan_jobs


def test_small_work_is_one_job():
    jobs = plan_jobs([113], shots=2560)
    assert len(jobs) == 1
    assert jobs[0].slices == ((0, 0, 113),) and jobs[0].executions == 113 * 2560


def test_split_respects_the_limit_and_covers_every_set_once():
    sets = [161, 40, 7]
    shots = 20 * 1024
    jobs = plan_jobs(sets, shots, max_executions=2_000_000)
    assert all(job.executions <= 2_000_000 for job in jobs)
    covered = {pub: [] for pub in range(len(sets))}
    for job in jobs:
        for pub, start, stop in job.slices:
            covered[pub].extend(range(start, stop))
    assert covered == {pub: list(range(n)) for pub, n in enumerate(sets)}
    # as few jobs as the limit allows: 97 sets fit per job
    assert len(jobs) == -(-sum(sets) // (2_000_000 // shots))
    assert [job.index for job in jobs] == list(range(len(jobs)))


def test_default_limit_is_ten_million():
    assert MAX_EXECUTIONS == 10_000_000
    jobs = plan_jobs([1000], shots=20_000)  # 2e7 executions: 500 sets per job
    assert [job.sets for job in jobs] == [500, 500]


def test_bad_plans():
    with pytest.raises(InputError, match="exceed the limit"):
        plan_jobs([1], shots=MAX_EXECUTIONS + 1)
    with pytest.raises(InputError, match="shots must be a positive integer"):
        plan_jobs([1], shots=0)
    with pytest.raises(InputError, match="parameter-set count must be an integer >= 0"):
        plan_jobs([-1], shots=10)


def test_ledger_replays_submissions(tmp_path):
    ledger = Ledger(tmp_path / "jobs" / "run.jsonl")
    ledger.append("intent", "run1/step3/job0", shots=100, pubs=[[0, 0, 13]])
    ledger.append("submitted", "run1/step3/job0", job_id="abc123")
    ledger.append("intent", "run1/step3/job1", shots=100)
    ledger.append("collected", "run1/step3/job0", counts_file="run1-step3-job0.npz")
    state = Ledger(tmp_path / "jobs" / "run.jsonl").state()
    assert state["run1/step3/job0"]["job_id"] == "abc123"
    assert state["run1/step3/job0"]["last"] == "collected"
    assert state["run1/step3/job0"]["history"] == ["intent", "submitted", "collected"]
    assert state["run1/step3/job1"]["last"] == "intent"  # no id: to reconcile through tags


def test_ledger_survives_a_line_cut_short(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append("intent", "k", shots=1)
    with open(path, "a") as f:
        f.write('{"kind": "submitted", "key": "k", "job_')  # a crash in the middle of a write
    assert [r["kind"] for r in ledger.records()] == ["intent"]
    ledger.append("submitted", "k", job_id="j")
    assert ledger.state()["k"]["job_id"] == "j"


def test_ledger_fsyncs_every_record(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    ledger = Ledger(tmp_path / "l.jsonl")
    ledger.append("intent", "a")
    ledger.append("intent", "b")
    assert len(synced) == 3  # two records, and the directory entry of the new file


def test_a_new_intent_starts_a_new_attempt(tmp_path):
    ledger = Ledger(tmp_path / "l.jsonl")
    ledger.append("intent", "k", attempt=1)
    ledger.append("submitted", "k", job_id="first")
    ledger.append("failed", "k", status="ERROR", error="calibration")
    ledger.append("intent", "k", attempt=2)
    state = ledger.state()["k"]
    assert "job_id" not in state and "error" not in state and state["attempt"] == 2
    assert state["earlier_job_ids"] == ["first"]
    assert state["history"] == ["intent", "submitted", "failed", "intent"]
