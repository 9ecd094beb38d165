"""Training with the hardware in the loop (ibm:fake_<device>, local testing mode): every step
a recorded job (job mode by default), resume after SIGKILL at chosen points with no job paid
twice."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_sampled_from, make_corpus, tiny_cli_args, tiny_config

from qpa_qiskit import AccountError, InputError, JobsError, QPABackend, ansatz
from qpa_qiskit.config import RunConfig
from qpa_qiskit.export import export
from qpa_qiskit.jobs import HardwareLoop, JobStore, LocalTestingJobs, RuntimeJobs
from qpa_qiskit.train import Run

KILLPOINTS = str(Path(__file__).resolve().parents[1] / "killpoints.py")
DEVICE = "ibm:fake_manila"


def config(corpus, **overrides) -> RunConfig:
    settings = dict(reps=1, steps=3, save_every=10, eval_tokens=400, backend=DEVICE, shots_factor=8)
    return tiny_config(corpus, **{**settings, **overrides})


def test_each_step_is_a_recorded_job_in_job_mode(corpus, tmp_path, monkeypatch):
    import qiskit_ibm_runtime

    sessions = []

    class CountingSession(qiskit_ibm_runtime.Session):
        def __init__(self, *args, **kwargs):
            sessions.append(1)
            super().__init__(*args, **kwargs)

    class CountingBatch(qiskit_ibm_runtime.Batch):
        def __init__(self, *args, **kwargs):
            sessions.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(qiskit_ibm_runtime, "Session", CountingSession)
    monkeypatch.setattr(qiskit_ibm_runtime, "Batch", CountingBatch)
    saves = []
    monkeypatch.setattr(Run, "save", lambda self, real=Run.save: saves.append(self.step) or real(self))
    run = Run.create(tmp_path / "run", config(corpus))
    run.train(progress=False)
    run.close()
    assert saves == [1, 2, 3]  # on hardware the checkpoint follows every step
    assert sessions == []  # job mode: no Session (Open Plan may not open one), no Batch
    store = JobStore(tmp_path / "run" / "jobs")
    assert store.meta["mode"] == "job" and store.meta["kind"] == "training"
    assert {r["mode"] for r in store.ledger.records() if r["kind"] == "intent"} == {"job"}
    assert store.labels() == ["step-000001", "step-000002", "step-000003"]
    intents = [r for r in store.ledger.records() if r["kind"] == "intent"]
    assert [r["tags"] for r in intents] == [
        ["qpa", f"qpa-run:{store.id}", f"qpa-step:step-00000{n}", "qpa-job:0"] for n in (1, 2, 3)
    ]
    n_params = run.model.generator.quantum.theta.numel()
    assert all(len(store.values(label)[0]) == 2 * n_params + 1 for label in store.labels())

    before = run.evaluate()["perplexity"]
    assert "weights-000003" in store.labels()

    def no_service(*args, **kwargs):
        raise AssertionError("export must not submit anything")

    monkeypatch.setattr(RuntimeJobs, "submit", no_service)
    monkeypatch.setattr(LocalTestingJobs, "submit", no_service)
    out = export(tmp_path / "run", tmp_path / "adapter")  # the recorded weights job is read back
    assert (out / "adapter_config.json").exists()
    again = Run.open(tmp_path / "run", for_training=False)
    assert again.evaluate()["perplexity"] == pytest.approx(before)


def test_the_backend_runs_its_evaluations_through_the_hardware_loop(tmp_path, monkeypatch):
    loop = HardwareLoop(tmp_path / "jobs", log=lambda m: None, poll=0.01)
    backend = QPABackend(DEVICE, shots=1000, hardware_loop=loop)
    circuit = ansatz(3, 1)
    values = np.random.default_rng(5).uniform(0, 2 * np.pi, (4, circuit.num_parameters))
    with pytest.raises(InputError, match="needs a label"):
        backend.probabilities(circuit, values)
    loop.label = "step-000001"
    freqs = backend.probabilities(circuit, values)
    store = JobStore(tmp_path / "jobs")
    assert store.meta["kind"] == "training" and store.meta["backend"] == DEVICE
    np.testing.assert_array_equal(store.values("step-000001")[0], values)
    np.testing.assert_array_equal(freqs, store.probabilities("step-000001"))
    assert_sampled_from(freqs, QPABackend("aer_noisy:fake_manila").probabilities(circuit, values), 1000)

    def no_service(*args, **kwargs):
        raise AssertionError("a replayed evaluation must not submit anything")

    monkeypatch.setattr(LocalTestingJobs, "submit", no_service)
    np.testing.assert_array_equal(backend.probabilities(circuit, values), freqs)  # collected, not paid again
    loop.close()
    other = QPABackend(DEVICE, shots=999, hardware_loop=HardwareLoop(tmp_path / "jobs"))
    other.options["hardware_loop"].label = "step-000002"
    with pytest.raises(InputError, match="with 1000 shots, not ibm:fake_manila with 999"):
        other.probabilities(circuit, values)


def test_a_replayed_step_with_other_values_is_refused(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=1)) as run:
        run.train(progress=False)
    store = JobStore(tmp_path / "run" / "jobs")
    with pytest.raises(JobsError, match="other parameter values"):
        store.add("step-000001", [store.values("step-000001")[0] + 0.1])


def train_args(corpus, run_dir) -> list[str]:
    options = f"--steps 4 --reps 1 --hidden 16 --rank 2 --lr 0.01 --backend {DEVICE} --shots-factor 8"
    return ["train", str(run_dir), *tiny_cli_args(corpus, options)]


def run(args, point=None, nth=0) -> subprocess.CompletedProcess:
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    head = [KILLPOINTS, point, str(nth)] if point else ["-m", "qpa_qiskit.cli"]
    return subprocess.run(
        [sys.executable, *head, *args], env=env, capture_output=True, text=True, timeout=600
    )


def final_state(run_dir):
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    losses = [json.loads(x)["loss"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return checkpoint, losses


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run, never stopped."""
    root = tmp_path_factory.mktemp("reference")
    corpus = make_corpus(root / "wikitext")
    done = run(train_args(corpus, root / "run"))
    assert done.returncode == 0, done.stderr
    return corpus, final_state(root / "run")


@pytest.mark.slow
@pytest.mark.xdist_group("hardware-loop")  # on one worker: `reference` (a whole `qpa train`) built once
@pytest.mark.parametrize(
    "point, nth",
    [
        ("after-submit", 2),  # step 2's job accepted, its id not recorded: found by its tags
        ("ledger:collected", 2),  # step 2's counts saved, not yet recorded as collected
        ("checkpoint", 2),  # step 2 collected, its checkpoint not written: step 2 is replayed
        ("before-submit", 3),  # step 3's request never left: reported, then resubmitted on request
    ],
)
def test_sigkill_in_training_loses_nothing_and_pays_once(reference, tmp_path, point, nth):
    corpus, (expected, expected_losses) = reference
    run_dir = tmp_path / "run"
    args = train_args(corpus, run_dir)
    killed = run(args, point, nth)
    assert killed.returncode == -9, killed.stderr
    resumed = run([*args, "--resume"])
    if point == "before-submit":
        assert resumed.returncode == 2
        assert "--resubmit-unconfirmed" in resumed.stderr and "step-000003/job-0000" in resumed.stderr
        resumed = run([*args, "--resume", "--resubmit-unconfirmed"])
    assert resumed.returncode == 0, resumed.stderr

    store = JobStore(run_dir / "jobs")
    archived = [json.loads(p.read_text()) for p in (store.root / "local-service").glob("*.json")]
    steps = sorted(next(t for t in r["tags"] if t.startswith("qpa-step:")) for r in archived)
    assert steps == [f"qpa-step:step-00000{n}" for n in (1, 2, 3, 4)]  # one job per step, none twice
    state = store.ledger.state()
    assert all(state[f"step-00000{n}/job-0000"]["last"] == "collected" for n in (1, 2, 3, 4))
    checkpoint, losses = final_state(run_dir)
    assert checkpoint["step"] == 4 and losses == expected_losses
    for name, tensor in expected["trainable"].items():
        assert torch.equal(tensor, checkpoint["trainable"][name]), name


def test_a_failed_step_stops_training_until_retried(corpus, tmp_path, monkeypatch):
    real_status = LocalTestingJobs.status
    device_down = [True]
    monkeypatch.setattr(
        LocalTestingJobs, "status", lambda self, j: "ERROR" if device_down[0] else real_status(self, j)
    )
    monkeypatch.setattr(LocalTestingJobs, "error", lambda self, j: "Error code 8041: device offline")
    with (
        pytest.raises(JobsError, match=r"8041.*--retry-failed"),
        Run.create(tmp_path / "run", config(corpus, steps=2)) as first,
    ):
        first.train(progress=False)
    device_down[0] = False
    with pytest.raises(JobsError, match="8041"), Run.open(tmp_path / "run") as second:
        second.train(progress=False)  # recorded as failed: not resubmitted silently
    with Run.open(tmp_path / "run", hardware_options={"retry_failed": True}) as run:
        run.train(progress=False)
    assert run.step == 2
    state = JobStore(tmp_path / "run" / "jobs").ledger.state()["step-000001/job-0000"]
    assert state["attempt"] == 2 and len(state["earlier_job_ids"]) == 1


def test_a_finished_run_reads_its_recorded_results_with_no_account(corpus, tmp_path, request):
    """eval and export of a hardware run use the ledger; the account opens only for a new job."""
    with Run.create(tmp_path / "run", config(corpus, steps=1)) as run:
        run.train(progress=False)
        expected = run.evaluate()["perplexity"]  # records the weights-000001 job
    recorded = JobStore(tmp_path / "run" / "jobs").probabilities("weights-000001")
    # make it a run on a real device, then take every credential away
    for name in ("config.json", "jobs/store.json"):
        path = tmp_path / "run" / name
        path.write_text(path.read_text().replace(DEVICE, "ibm:ibm_far_away"))
    request.getfixturevalue("no_ibm_account")
    again = Run.open(tmp_path / "run", for_training=False)
    assert again.evaluate()["perplexity"] == pytest.approx(expected)
    assert (export(tmp_path / "run", tmp_path / "adapter") / "adapter_config.json").exists()
    np.testing.assert_array_equal(
        JobStore(tmp_path / "run" / "jobs").probabilities("weights-000001"), recorded
    )
    again.close()
    with (
        pytest.raises(AccountError, match="save_account"),
        Run.open(tmp_path / "run", overrides={"steps": 2, "backend": "ibm:ibm_far_away"}) as more,
    ):
        more.train(progress=False)  # a new step needs the service
    assert "step-000002/job-0000" not in JobStore(tmp_path / "run" / "jobs").ledger.state()  # no intent


def test_a_new_hardware_run_fails_before_writing_anything(corpus, tmp_path, no_ibm_account):
    with pytest.raises(AccountError):
        Run.create(tmp_path / "run", config(corpus, backend="ibm:ibm_torino"))
    with pytest.raises(InputError, match="which need 10 qubits; ibm:fake_athens has 5"):
        Run.create(tmp_path / "run", config(corpus, backend="ibm:fake_athens", chunk_size=1))
    assert not (tmp_path / "run").exists()


def test_a_mitigated_hardware_run_records_its_calibration_once(corpus, tmp_path, monkeypatch):
    """--mitigation m3 on IBM Quantum: the calibration circuits are one recorded job of their own
    store, submitted before the first step; eval and export read it back and submit nothing."""
    with Run.create(tmp_path / "run", config(corpus, steps=2, mitigation="m3")) as run:
        run.train(progress=False)
        expected = run.evaluate()["perplexity"]
    calibration = JobStore(tmp_path / "run" / "jobs-m3-calibration")
    assert calibration.labels() == ["m3-calibration"]
    assert [r["key"] for r in calibration.ledger.records() if r["kind"] == "intent"] == [
        "m3-calibration/job-0000"
    ]
    assert len(calibration.values("m3-calibration")[0]) == 8  # mthree's balanced strings for 5 qubits
    assert Run.stored_config(tmp_path / "run").backend.mitigation == "m3"

    def no_service(*args, **kwargs):
        raise AssertionError("a finished run must not submit anything")

    monkeypatch.setattr(RuntimeJobs, "submit", no_service)
    monkeypatch.setattr(LocalTestingJobs, "submit", no_service)
    again = Run.open(tmp_path / "run", for_training=False)
    assert again.evaluate()["perplexity"] == pytest.approx(expected)
    assert (export(tmp_path / "run", tmp_path / "adapter") / "adapter_config.json").exists()
    again.close()
