"""A QPU-time budget that is kept (ibm:fake_<device>, local testing mode): a run stops cleanly
before the step that would pass it, with the command that resumes it, nothing paid for lost or
submitted twice; the QPU time a job store used is read from its ledger; ``qpa jobs submit
--max-qpu-seconds`` refuses a batch over it before anything is written."""

import re

import numpy as np
import pytest
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError, QPABackend, ansatz
from qpa_qiskit.cli import build_parser, main
from qpa_qiskit.cli.runs import BUDGET_REACHED
from qpa_qiskit.jobs import JobStore, sync
from qpa_qiskit.jobs.usage import reported_seconds, store_timing, store_usage
from qpa_qiskit.qnn import shifted_parameter_sets
from qpa_qiskit.train.cost import Projector

DEVICE = "ibm:fake_manila"


def quiet(_message):
    pass


def test_a_run_stops_before_the_step_past_its_budget_and_a_larger_one_resumes_it(corpus, tmp_path, capsys):
    run_dir = tmp_path / "run"
    options = f"--reps 1 --hidden 16 --rank 2 --lr 0.01 --backend {DEVICE} --shots-factor 8 --eval-tokens 200"
    words = ["train", str(run_dir), *tiny_cli_args(corpus, options)]
    cost = Projector().cost(tiny_config(corpus, reps=1, steps=4, backend=DEVICE, shots_factor=8))
    assert main([*words, "--steps", "1", "--max-qpu-seconds", "1000"]) == 0
    budget = 2.1 * cost.step.seconds + cost.final.seconds  # steps 1-2 and the final weights fit, not 3
    resume = [*words[:2], "--resume", "--steps", "3", "--max-qpu-seconds", f"{budget:.3f}"]
    capsys.readouterr()
    assert main(resume) == BUDGET_REACHED == 4
    err = capsys.readouterr().err
    assert "stopped before step 3 of 3: the run has used" in err
    assert "2 job(s) as projected, the service reporting no usage" in err
    assert "nothing paid for is lost or submitted again" in err
    larger = re.search(r"'qpa train \S+ --resume --max-qpu-seconds (\d+)'", err)
    assert larger and float(larger.group(1)) >= 3 * cost.step.seconds
    store = JobStore(run_dir / "jobs")
    assert store.labels() == ["step-000001", "step-000002"]
    assert main([*words[:2], "--resume", "--max-qpu-seconds", larger.group(1)]) == 0
    assert store.labels() == ["step-000001", "step-000002", "step-000003"]
    intents = [r["key"] for r in store.ledger.records() if r["kind"] == "intent"]
    assert len(intents) == len(set(intents)) == 3  # each step's job submitted once


@pytest.fixture
def collected(tmp_path):
    """A store with one collected batch (7 sets of 100 shots) and one planned, unsubmitted."""
    circuit = ansatz(3, 1)
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
    store = JobStore.create(tmp_path / "store", QPABackend(DEVICE, shots=100), circuit,
                            evaluations={"batch": [shifted_parameter_sets(theta)]})  # fmt: skip
    sync.submit(store, "batch", store.service(), log=quiet)
    sync.collect(store, "batch", store.service(), log=quiet)
    store.add("later", [theta[None, :]])
    return store


def test_a_stores_qpu_time_is_the_reported_usage_where_final_else_the_projection(collected):
    timing = store_timing(collected, collected.backend().connect())
    local = store_usage(collected, timing, reported=False)  # local testing reports 0: projected
    assert local.recorded == pytest.approx(timing.seconds(700, 1)) and local.projected_jobs == 1
    assert local.planned == pytest.approx(timing.seconds(100, 1))
    reported = store_usage(collected, timing)  # the service's figure, 0 here
    assert reported.recorded == 0 and reported.reported_jobs == 1
    assert reported_seconds({"qpu_charge_time_seconds": 4, "status": "complete"}) == 4
    assert reported_seconds({"qpu_charge_time_seconds": 1, "status": "pending"}) is None
    assert reported_seconds({"qpu_charge_time_seconds": "x"}) is None and reported_seconds(None) is None


def jobs(*args: str) -> int:
    """A `qpa jobs` command without main's error handler, so the error itself is seen."""
    parsed = build_parser().parse_args(["jobs", *args])
    return parsed.func(parsed)


CREATE = ["--backend", DEVICE, "--qubits", "3", "--reps", "1", "--shots", "100"]


def test_qpa_jobs_submit_refuses_a_batch_over_its_budget_before_writing(tmp_path, capsys):
    root = tmp_path / "store"
    assert jobs("submit", str(root), *CREATE, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "QPU time projected (the cost model, docs/ibm.md#what-a-run-costs):" in out
    with pytest.raises(InputError, match="exceeds --max-qpu-seconds 1; nothing was submitted or written"):
        jobs("submit", str(root), *CREATE, "--max-qpu-seconds", "1")
    assert not root.exists()
    for bad in ("0", "-3", "nan"):
        with pytest.raises(InputError, match=r"--max-qpu-seconds \(the QPU-time budget\) must be a finite"):
            jobs("submit", str(root), *CREATE, "--max-qpu-seconds", bad)
    assert main(["jobs", "submit", str(root), *CREATE, "--max-qpu-seconds", "nan"]) == 2
    assert not root.exists()


def test_qpa_jobs_submit_on_a_store_counts_what_is_left_to_submit(tmp_path, capsys):
    circuit = ansatz(3, 1)
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
    store = JobStore.create(tmp_path / "store", QPABackend(DEVICE, shots=100), circuit,
                            evaluations={"batch": [shifted_parameter_sets(theta)]})  # fmt: skip
    with pytest.raises(InputError, match="over --max-qpu-seconds 1; nothing was submitted"):
        jobs("submit", str(store.root), "--max-qpu-seconds", "1")
    assert "0.0 s recorded" in capsys.readouterr().out and store.ledger.records() == []
    assert jobs("submit", str(store.root), "--max-qpu-seconds", "100") == 0
    assert [r["kind"] for r in store.ledger.records()][:2] == ["intent", "submitted"]
