"""Job stores on the runtime's local testing mode: Batch submission with tags, collect,
reconciliation, retries, failures, credentials, the `qpa jobs` commands, and SIGKILLs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_sampled_from

from qpa_qiskit import AccountError, InputError, JobsError, QPABackend, SpecError, ansatz
from qpa_qiskit.cli import main
from qpa_qiskit.errors import BusyError
from qpa_qiskit.jobs import JobStore, LocalTestingJobs, RuntimeJobs, sync, with_retries
from qpa_qiskit.qnn import shifted_parameter_sets

DEVICE = "ibm:fake_manila"  # 5 qubits: local jobs take a fraction of a second
KILLPOINTS = str(Path(__file__).resolve().parents[1] / "killpoints.py")


def make_store(root, qubits=3, reps=1, shots=2000, max_executions=None, steps=1, seed=0):
    backend = QPABackend(DEVICE, shots=shots)
    circuit = ansatz(qubits, reps)
    thetas = np.random.default_rng(seed).uniform(0, 2 * np.pi, (steps, circuit.num_parameters))
    pubs = [shifted_parameter_sets(t) for t in thetas]
    extra = {} if max_executions is None else {"max_executions": max_executions}
    store = JobStore.create(root, backend, circuit, evaluations={"batch": pubs}, **extra)
    return store, backend, circuit, pubs


def archived_jobs(store) -> list[dict]:
    return [json.loads(p.read_text()) for p in (store.root / "local-service").glob("*.json")]


def quiet(_message):
    pass


def test_batch_submission_split_tagged_collected_in_backend_order(tmp_path):
    store, backend, circuit, pubs = make_store(tmp_path / "b", steps=2, max_executions=2000 * 5)
    plan = store.plan("batch")
    assert [job.sets for job in plan] == [5, 5, 4]  # 2 PUBs of 7 sets, 5 sets fit a job
    service = store.service(backend)
    report = sync.submit(store, "batch", service, log=quiet)
    from qiskit_ibm_runtime import Batch

    assert isinstance(service.open(), Batch)  # Batch execution mode, one for the whole store
    service.close()
    assert report.submitted == ["batch/job-0000", "batch/job-0001", "batch/job-0002"]
    archived = sorted(archived_jobs(store), key=lambda r: r["created"])
    assert [len(r["pubs"]) for r in archived] == [1, 2, 1]  # job 1 holds the end of PUB 0 and start of PUB 1
    for index, record in enumerate(archived):
        assert record["tags"] == ["qpa", f"qpa-run:{store.id}", "qpa-step:batch", f"qpa-job:{index}"]
    intents = [r for r in store.ledger.records() if r["kind"] == "intent"]
    assert [r["tags"] for r in intents] == [r["tags"] for r in archived]

    report = sync.collect(store, "batch", store.service(), log=quiet)
    assert len(report.collected) == 3 and not report.pending
    freqs = store.probabilities("batch")
    assert freqs.shape == (14, 8)
    assert_sampled_from(
        freqs, exact_probabilities(circuit, pubs), 2000
    )  # rows in the order of the sets, outcomes as QPABackend


def test_submit_and_collect_are_idempotent(tmp_path):
    store, backend, *_ = make_store(tmp_path / "b", max_executions=2000 * 4)
    sync.submit(store, "batch", store.service(backend), log=quiet)
    again = sync.submit(store, "batch", store.service(backend), log=quiet)
    assert again.submitted == [] and len(archived_jobs(store)) == 2
    fetched = []

    class Counting(LocalTestingJobs):
        def result(self, job_id):
            fetched.append(job_id)
            return super().result(job_id)

    counting = Counting(backend, "batch", store.root / "local-service")
    sync.collect(store, "batch", counting, log=quiet)
    first = store.probabilities("batch")
    sync.collect(store, "batch", counting, log=quiet)
    assert len(fetched) == 2  # each job fetched once
    np.testing.assert_array_equal(store.probabilities("batch"), first)
    kinds = [r["kind"] for r in store.ledger.records()]
    assert kinds.count("collected") == 2 and kinds.count("submitted") == 2


def exact_probabilities(circuit, pubs) -> np.ndarray:
    """What the collected frequencies sample: the noisy device's exact probabilities."""
    return QPABackend("aer_noisy:fake_manila").probabilities(circuit, np.concatenate(pubs))


def test_intent_without_id_is_found_by_its_tags(tmp_path):
    store, backend, circuit, pubs = make_store(tmp_path / "b")
    service = store.service(backend)
    key, tags = store.key("batch", 0), store.tags("batch", 0)
    store.ledger.append("intent", key, attempt=1, tags=tags)
    # the job reached the service, then the process died before recording its id
    job_id = service.submit(store.job_pubs(store.plan("batch")[0], store.values("batch")), store.shots, tags)
    messages = []
    report = sync.submit(store, "batch", service, log=messages.append)
    assert report.found == [key] and report.submitted == []
    assert store.ledger.state()[key]["job_id"] == job_id
    assert len(archived_jobs(store)) == 1
    assert any("found job" in m for m in messages)
    sync.collect(store, "batch", service, log=quiet)
    assert_sampled_from(store.probabilities("batch"), exact_probabilities(circuit, pubs), store.shots)


def test_intent_with_no_job_is_reported_then_resubmitted_on_request(tmp_path):
    store, backend, *_ = make_store(tmp_path / "b")
    key = store.key("batch", 0)
    store.ledger.append("intent", key, attempt=1, tags=store.tags("batch", 0))
    service = store.service(backend)
    report = sync.submit(store, "batch", service, log=quiet)
    assert report.unconfirmed == [key] and not archived_jobs(store)
    message = sync.unconfirmed_message(store, report.unconfirmed, "qpa jobs submit x")
    assert "--resubmit-unconfirmed" in message and key in message
    report = sync.submit(store, "batch", service, resubmit_unconfirmed=True, log=quiet)
    assert report.submitted == [key] and len(archived_jobs(store)) == 1
    assert store.ledger.state()[key]["attempt"] == 2


def test_collect_retries_transient_errors_with_backoff(tmp_path):
    store, backend, *_ = make_store(tmp_path / "b")
    sync.submit(store, "batch", store.service(backend), log=quiet)

    class Flaky(LocalTestingJobs):
        failures = 3

        def result(self, job_id):
            if Flaky.failures:
                Flaky.failures -= 1
                raise ConnectionError("connection reset by peer")
            return super().result(job_id)

    sleeps, messages = [], []
    flaky = Flaky(backend, "batch", store.root / "local-service")
    report = sync.collect(store, "batch", flaky, log=messages.append, sleep=sleeps.append)
    assert report.collected == ["batch/job-0000"]
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]  # exponential backoff
    assert sum("retry" in m for m in messages) == 3

    calls = []

    def not_found():
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        calls.append(1)
        raise RuntimeJobNotFound("Job not found: x")

    from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

    with pytest.raises(RuntimeJobNotFound):
        with_retries(not_found, "status", sleep=sleeps.append, log=quiet)
    assert len(calls) == 1  # not transient: no retry

    def down():
        raise TimeoutError("read timed out")

    with pytest.raises(JobsError, match="still fails after 4 attempts"):
        with_retries(down, "status", attempts=4, sleep=lambda s: None, log=quiet)


def test_failed_job_is_recorded_and_only_retried_on_request(tmp_path, monkeypatch):
    store, backend, circuit, pubs = make_store(tmp_path / "b")
    sync.submit(store, "batch", store.service(backend), log=quiet)
    first = store.ledger.state()["batch/job-0000"]["job_id"]

    class Broken(LocalTestingJobs):
        def status(self, job_id):
            return "ERROR" if job_id == first else super().status(job_id)

        def error(self, job_id):
            return "Error code 1517; qubit calibration failed"

    broken = Broken(backend, "batch", store.root / "local-service")
    report = sync.collect(store, "batch", broken, log=quiet)
    assert "1517" in report.failed["batch/job-0000"]
    assert sync.submit(store, "batch", broken, log=quiet).submitted == []  # not without retry_failed
    assert sync.submit(store, "batch", broken, retry_failed=True, log=quiet).submitted == ["batch/job-0000"]
    state = store.ledger.state()["batch/job-0000"]
    assert state["earlier_job_ids"] == [first] and state["attempt"] == 2
    sync.collect(store, "batch", broken, log=quiet)
    assert_sampled_from(store.probabilities("batch"), exact_probabilities(circuit, pubs), store.shots)


def test_credentials_never_reach_ledger_logs_or_errors(tmp_path, monkeypatch, capsys):
    secret = "tok-9f8e7d6c5b4a3928"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", secret)
    store, backend, *_ = make_store(tmp_path / "b")
    sync.submit(store, "batch", store.service(backend), log=print)

    class Leaky(LocalTestingJobs):
        calls = 0

        def status(self, job_id):
            Leaky.calls += 1
            if Leaky.calls == 1:
                raise ConnectionError(f"proxy refused Authorization: Bearer {secret}")
            return "ERROR"

        def error(self, job_id):
            return f"rejected token {secret}"

    leaky = Leaky(backend, "batch", store.root / "local-service")
    report = sync.collect(store, "batch", leaky, log=print, sleep=lambda s: None)
    out = capsys.readouterr()
    assert "***" in out.out and "***" in report.failed["batch/job-0000"]
    assert secret not in out.out + out.err + report.failed["batch/job-0000"]
    for path in store.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path

    class Refusing(LocalTestingJobs):
        def submit(self, pubs, shots, tags):
            raise RuntimeError(f"401 for token {secret}")

    store2, backend2, *_ = make_store(tmp_path / "c")
    with pytest.raises(JobsError) as info:
        sync.submit(store2, "batch", Refusing(backend2, "batch", store2.root / "local-service"), log=quiet)
    assert secret not in str(info.value) and "may or may not" in str(info.value)
    assert secret not in (store2.root / "ledger.jsonl").read_text()


def test_store_errors(tmp_path, no_ibm_account):
    circuit = ansatz(3, 1)
    with pytest.raises(InputError, match="ibm:<device>"):
        JobStore.create(tmp_path / "a", QPABackend("aer_noisy:fake_manila", shots=10), circuit)
    with pytest.raises(InputError, match="7 qubits but fake_manila has 5"):
        JobStore.create(tmp_path / "a", QPABackend(DEVICE, shots=10), ansatz(7, 1))
    with pytest.raises(InputError, match="exceed the limit"):
        JobStore.create(tmp_path / "a", QPABackend(DEVICE, shots=20_000_000), circuit)
    assert not (tmp_path / "a").exists()
    with pytest.raises(SpecError, match="unknown fake device"):
        QPABackend("ibm:fake_nowhere", shots=10)
    with pytest.raises(AccountError, match="save_account"):
        QPABackend("ibm:ibm_torino", shots=10)

    class Service:  # an account that does not have the device
        def backend(self, name):
            from qiskit.providers.exceptions import QiskitBackendNotFoundError

            raise QiskitBackendNotFoundError("No backend matches the criteria.")

    with pytest.raises(SpecError, match=r"ibm_nowhere.*not available to this account"):
        QPABackend("ibm:ibm_nowhere", shots=10, service=Service())
    store, *_ = make_store(tmp_path / "b")
    with pytest.raises(JobsError, match="other parameter values"):
        store.add("batch", [np.zeros((2, circuit.num_parameters))])
    with pytest.raises(InputError, match=r"shape \(B, 3\)"):
        store.add("other", [np.zeros((2, 5))])
    with pytest.raises(InputError, match="label"):
        store.add("../escape", [np.zeros((1, 3))])
    with pytest.raises(JobsError, match="not collected yet"):
        store.probabilities("batch")
    with pytest.raises(InputError, match="not a job store"):
        JobStore(tmp_path / "nothing")
    with pytest.raises(InputError, match="not empty"):
        make_store(tmp_path / "b")


def qpa_jobs(*args) -> int:
    return main(["jobs", *args])


def test_cli_dry_run_submit_status_collect_list_cancel(tmp_path, capsys):
    store = tmp_path / "jobs" / "first"
    create = ["--backend", DEVICE, "--qubits", "3", "--reps", "1", "--shots-factor", "50"]
    assert qpa_jobs("submit", str(store), *create, "--max-executions", "2000", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "400 shots per set" in out and "(5, 3)" in out and "(2, 3)" in out
    assert "total: 2 job(s), 7 sets, 2,800 executions (limit 2,000 per job)" in out
    assert "nothing submitted" in out and not store.exists()

    assert qpa_jobs("submit", str(store), *create, "--max-executions", "2000") == 0
    assert "2 job(s) submitted" in capsys.readouterr().out
    assert qpa_jobs("submit", str(store)) == 0  # resuming: nothing to do
    assert "0 job(s) submitted" in capsys.readouterr().out
    assert qpa_jobs("submit", str(store), "--qubits", "4") == 2
    assert "already holds a job store" in capsys.readouterr().err
    assert qpa_jobs("status", str(store)) == 0
    out = capsys.readouterr().out
    assert out.count("DONE") == 2 and "batch/job-0001" in out
    assert qpa_jobs("collect", str(store)) == 0
    probs = np.load(store / "probabilities.npy")  # the collected counts, in the order of the sets
    recorded = JobStore(store)
    np.testing.assert_array_equal(probs, recorded.probabilities("batch"))
    assert_sampled_from(probs, exact_probabilities(ansatz(3, 1), recorded.values("batch")), 400)
    assert qpa_jobs("list", str(tmp_path / "jobs")) == 0
    assert "ibm:fake_manila" in capsys.readouterr().out
    assert qpa_jobs("cancel", str(store)) == 0
    assert "0 job(s) cancelled" in capsys.readouterr().out

    theta = tmp_path / "theta.txt"
    np.savetxt(theta, np.zeros((2, 4)))
    assert qpa_jobs("submit", str(tmp_path / "x"), *create, "--theta", str(theta)) == 2
    assert "--theta needs shape (3,) or (steps, 3)" in capsys.readouterr().err
    assert (
        qpa_jobs("submit", str(tmp_path / "x"), "--backend", "statevector", "--qubits", "3", "--shots", "10")
        == 2
    )
    assert "ibm:<device>" in capsys.readouterr().err
    assert qpa_jobs("submit", str(tmp_path / "x"), "--backend", DEVICE, "--qubits", "9", "--shots", "10") == 2
    assert "9 qubits but fake_manila has 5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    for command in ("submit", "status", "collect", "list", "cancel"):
        with pytest.raises(SystemExit) as info:
            qpa_jobs(command, "--help")
        assert info.value.code == 0


def test_cli_missing_account(tmp_path, no_ibm_account, capsys):
    assert (
        qpa_jobs(
            "submit",
            str(tmp_path / "j"),
            "--backend",
            "ibm:ibm_torino",
            "--qubits",
            "3",
            "--shots",
            "10",
            "--dry-run",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot open an IBM Quantum account" in err and "QISKIT_IBM_TOKEN" in err


def run_killed(point: str, nth: int, *args: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    return subprocess.run(
        [sys.executable, KILLPOINTS, point, str(nth), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def qpa(*args: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    return subprocess.run(
        [sys.executable, "-m", "qpa_qiskit.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_sigkill_during_submit_and_collect_loses_nothing_and_pays_once(tmp_path):
    # 3 qubits, 1 layer: 7 parameter sets; 3 of 500 shots fit 1,500 executions -> 3 jobs
    create = ["--backend", DEVICE, "--qubits", "3", "--reps", "1", "--shots", "500"]
    create += ["--max-executions", "1500", "--seed", "4"]
    reference = tmp_path / "reference"
    assert qpa("jobs", "submit", str(reference), *create).returncode == 0
    assert qpa("jobs", "collect", str(reference)).returncode == 0

    store = tmp_path / "killed"
    # 1. killed as the 2nd job is about to leave: job 1 recorded, job 2 an intent with no job
    assert run_killed("before-submit", 2, "jobs", "submit", str(store), *create).returncode == -9
    done = qpa("jobs", "submit", str(store))
    assert (
        done.returncode == 2 and "--resubmit-unconfirmed" in done.stderr and "batch/job-0001" in done.stderr
    )
    # 2. killed after the service accepted the 2nd job, before its id was recorded
    assert (
        run_killed("after-submit", 1, "jobs", "submit", str(store), "--resubmit-unconfirmed").returncode == -9
    )
    done = qpa("jobs", "submit", str(store))
    assert done.returncode == 0 and "found job" in done.stdout + done.stderr
    # 3. killed after the 2nd job's counts were saved, before its 'collected' record
    assert run_killed("ledger:collected", 2, "jobs", "collect", str(store)).returncode == -9
    state = JobStore(store).ledger.state()
    assert state["batch/job-0001"]["last"] != "collected"
    assert (store / "counts" / "batch.job-0001.npz").exists()  # counts saved, record not yet
    assert qpa("jobs", "collect", str(store)).returncode == 0

    jobs = JobStore(store)
    archived = archived_jobs(jobs)
    assert len(archived) == 3  # one job per planned job: nothing paid for twice
    assert sorted(r["tags"][-1] for r in archived) == ["qpa-job:0", "qpa-job:1", "qpa-job:2"]
    records = jobs.ledger.records()
    assert [r["kind"] for r in records].count("collected") == 3
    np.testing.assert_array_equal(
        np.load(store / "probabilities.npy"), np.load(reference / "probabilities.npy")
    )


def test_job_tags_reach_the_runtime_request(tmp_path):
    """What the service receives for a real device: the tags in the job's runtime options."""
    from types import SimpleNamespace

    from qiskit_ibm_runtime.options_models.converters import (
        sampler_option_to_executor_options,
        to_runtime_options,
    )

    backend = QPABackend(DEVICE, shots=10, sampler_options={"default_shots": 7})
    tags = ["qpa", "qpa-run:abc", "qpa-step:step-000004", "qpa-job:0"]
    options = RuntimeJobs(backend, "session").sampler_options(tags)
    assert options.default_shots == 7  # the user's sampler options are kept
    executor = sampler_option_to_executor_options(options)
    request = to_runtime_options(executor.environment, SimpleNamespace(name="ibm_x", _instance=None))
    assert request["job_tags"] == tags
    with pytest.raises(InputError, match="execution mode"):
        RuntimeJobs(backend, "dedicated")


def test_a_job_the_service_does_not_know_stops_collect_and_changes_nothing(tmp_path):
    store, backend, *_ = make_store(tmp_path / "b")
    store.ledger.append("intent", "batch/job-0000", attempt=1, tags=store.tags("batch", 0))
    store.ledger.append("submitted", "batch/job-0000", job_id="d4f1-unknown", attempt=1)
    before = (store.root / "ledger.jsonl").read_text()
    with pytest.raises(JobsError, match=r"d4f1-unknown cannot be read.*account and instance"):
        sync.collect(store, "batch", store.service(backend), log=quiet)
    assert (store.root / "ledger.jsonl").read_text() == before


def test_a_deferred_ibm_backend_opens_the_account_only_when_needed(no_ibm_account):
    backend = QPABackend("ibm:ibm_torino", shots=10, connect=False)
    circuit = ansatz(3, 1)
    assert backend.num_outcome_bits(circuit) == 3 and backend.device is None
    with pytest.raises(AccountError, match="save_account"):
        backend.isa_circuit(circuit)


def test_two_processes_cannot_submit_or_collect_the_same_store_at_once(tmp_path, capsys):
    import fcntl

    store, backend, *_ = make_store(tmp_path / "b")
    holder = os.open(store.root / ".lock", os.O_RDWR | os.O_CREAT)  # as another process would
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(BusyError, match="another process is working on"):
            sync.submit(store, "batch", store.service(backend), log=quiet)
        with pytest.raises(BusyError, match="another process"):
            sync.collect(store, "batch", store.service(backend), log=quiet)
        assert not store.ledger.records() and not archived_jobs(store)
        assert qpa_jobs("status", str(store.root)) == 0  # still shows what the ledger knows
        assert "not refreshed" in capsys.readouterr().out
    finally:
        os.close(holder)
    assert sync.submit(store, "batch", store.service(backend), log=quiet).submitted == ["batch/job-0000"]
