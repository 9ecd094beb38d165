"""Gradients a QPU can afford (issue 36, section 3): the SPSA gradient, the circuit run every K
steps and a frozen circuit measured once per run, through qpa train, a resume, the hardware
loop (ibm:fake_manila, local testing mode) and the QPA model; and the settings' refusals."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_resume_is_bit_identical, tiny_cli_args
from conftest import tiny_config as config

from qpa_qiskit import InputError, QPABackend, QuantumTrain
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.export import export
from qpa_qiskit.generator import GeneratorConfig, QPAGenerator
from qpa_qiskit.hf import QPAConfig, QPAModel, get_qpa_model
from qpa_qiskit.jobs import JobStore
from qpa_qiskit.models import tiny_gpt2
from qpa_qiskit.train import Run

HARDWARE = dict(backend="ibm:fake_manila", shots_factor=8, reps=1, save_every=10, eval_tokens=400)


def record_evaluations(monkeypatch, run) -> list:
    """(the 1-based step in progress, the shape of the parameter sets) of every circuit evaluation
    the run's backend makes from now on (exact gradients included: ``vjp``)."""
    backend = run.model.generator.quantum.backend
    calls = []
    for name in ("probabilities", "vjp"):
        real = getattr(backend, name)

        def counted(circuit, values, real=real):
            calls.append((run.step + 1, np.shape(values)))
            return real(circuit, values)

        monkeypatch.setattr(backend, name, counted)
    return calls


def angles(run) -> torch.Tensor:
    return run.model.generator.quantum.theta.detach().clone()


def mapping(run) -> torch.Tensor:
    return run.model.generator.mapping[0].weight.detach().clone()


# ---------------------------------------------------------------------------- circuit_every
def test_circuit_every_3_over_7_steps_runs_the_circuit_at_steps_1_4_7_and_moves_the_angles_only_then(
    corpus, tmp_path, monkeypatch
):
    cfg = config(corpus, steps=7, circuit_every=3, shots_factor=4)
    with Run.create(tmp_path / "run", cfg) as run:
        calls = record_evaluations(monkeypatch, run)
        n = run.model.generator.quantum.theta.numel()
        thetas, maps = [angles(run)], [mapping(run)]
        for _ in range(7):
            run.train_step()
            thetas.append(angles(run))
            maps.append(mapping(run))
        assert calls == [(step, (2 * n + 1, n)) for step in (1, 4, 7)]  # forward + shift-rule sets
        moved = [s for s in range(1, 8) if not torch.equal(thetas[s], thetas[s - 1])]
        assert moved == [1, 4, 7]
        assert all(not torch.equal(maps[s], maps[s - 1]) for s in range(1, 8))  # the mapping: every step
        kept = run.model.rng_state["probabilities"]
        assert isinstance(kept, list) and len(kept) == run.model.generator.n_states
        assert math.fsum(kept) == pytest.approx(1.0)
        run.save()
        del calls[:]
        run.evaluate()  # the final weights: one fresh forward set, as always
        assert calls == [(8, (n,))]
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert saved["rng"]["model"]["probabilities"] == kept


def test_circuit_every_resumed_mid_interval_equals_the_run_never_stopped(corpus, tmp_path):
    # stopped after step 2 (the next, index 2, reuses step 1's sampled probabilities), resumed
    cfg = config(corpus, steps=6, save_every=2, circuit_every=3, shots_factor=1.0, labels="random")
    assert_resume_is_bit_identical(tmp_path, cfg)


def test_the_generator_needs_the_step_index_where_circuit_every_is_set():
    gen = QPAGenerator(
        300, QPABackend("statevector"), GeneratorConfig(chunk_size=64, reps=1, circuit_every=2)
    )
    with pytest.raises(InputError, match="circuit_every 2 runs the circuit once every 2 training steps"):
        gen()
    assert gen(step=0).shape == (300,)
    with pytest.raises(InputError, match="probabilities 'uniform' train no circuit"):
        QPAGenerator(300, None, GeneratorConfig(chunk_size=64, probabilities="uniform", circuit_every=2))
    with pytest.raises(InputError, match="QuantumTrain generates the weights at every call"):
        QuantumTrain(
            torch.nn.Linear(8, 8), QPABackend("statevector"), GeneratorConfig(chunk_size=16, circuit_every=2)
        )


# ---------------------------------------------------------------------------- SPSA
def test_an_spsa_step_is_one_submission_of_1_plus_2k_sets_and_resumes_bit_for_bit(
    corpus, tmp_path, monkeypatch
):
    cfg = config(corpus, steps=4, save_every=2, gradient="spsa", spsa_samples=2, shots_factor=2.0)
    with Run.create(tmp_path / "counted", cfg) as run:
        calls = record_evaluations(monkeypatch, run)
        n = run.model.generator.quantum.theta.numel()
        before = angles(run)
        run.train_step()
        run.train_step()
        assert calls == [(1, (5, n)), (2, (5, n))]  # forward, then θ ± εΔ_j for j = 1, 2
        assert not torch.equal(angles(run), before)
        assert "spsa" in run.model.rng_state
    assert_resume_is_bit_identical(tmp_path, cfg)


def test_spsa_on_an_exact_backend_is_a_control_with_exact_probabilities(corpus, tmp_path, monkeypatch):
    cfg = config(corpus, steps=2, gradient="spsa")
    with Run.create(tmp_path / "run", cfg) as run:
        quantum = run.model.generator.quantum
        assert quantum.gradient == "spsa" and quantum.shots is None
        calls = record_evaluations(monkeypatch, run)
        before = angles(run)
        run.train(progress=False)
        assert calls == [(1, (3, quantum.theta.numel())), (2, (3, quantum.theta.numel()))]  # no vjp
        assert not torch.equal(angles(run), before)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["generator"]["gradient"] == "spsa"


def test_qpa_train_takes_the_settings_and_refuses_bad_values_in_one_line(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    options = "--steps 3 --reps 1 --gradient spsa --spsa-samples 2 --spsa-epsilon 0.1 --circuit-every 2"
    assert main(["train", str(run), *tiny_cli_args(corpus, f"{options} --shots-factor 2")]) == 0
    recorded = json.loads((run / "config.json").read_text())["generator"]
    assert {k: recorded[k] for k in ("gradient", "spsa_samples", "spsa_epsilon", "circuit_every")} == {
        "gradient": "spsa", "spsa_samples": 2, "spsa_epsilon": 0.1, "circuit_every": 2
    }  # fmt: skip
    for bad, message in [
        ("--gradient spsa --spsa-epsilon nan", "spsa_epsilon must be a finite number > 0"),
        ("--gradient spsa --spsa-epsilon 0", "spsa_epsilon must be a finite number > 0"),
        ("--gradient spsa --spsa-epsilon 3.2", "at ε = π the circuits at θ + ε and θ - ε are the same"),
        ("--gradient spsa --spsa-samples 0", "spsa_samples must be a positive integer"),
        ("--circuit-every 0", "circuit_every must be a positive integer"),
        ("--circuit-every 4", "circuit_every 4 is larger than the run's 3 steps"),
        ("--spsa-samples 4", "Drop --spsa-samples, or add --gradient spsa"),
        ("--probabilities frozen --circuit-every 2", "probabilities 'frozen' train no circuit"),
    ]:
        capsys.readouterr()
        assert main(["train", str(tmp_path / "bad"), *tiny_cli_args(corpus, f"--steps 3 {bad}")]) == 2, bad
        err = capsys.readouterr().err
        assert message in err and err.startswith("qpa: error: ") and err.count("\n") == 1, (bad, err)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match=r"'lora' has no circuit\. Drop --gradient"):
        RunConfig().replace(method="lora", gradient="spsa")


# ---------------------------------------------------------------------------- frozen, measured once
def test_a_frozen_circuit_with_shots_is_measured_once_per_run(corpus, tmp_path, monkeypatch):
    cfg = config(corpus, steps=4, probabilities="frozen", shots_factor=2.0, eval_every=2)
    with Run.create(tmp_path / "run", cfg) as run:
        calls = record_evaluations(monkeypatch, run)
        n = run.model.generator.quantum.theta.numel()
        records = run.train(progress=False)
        run.evaluate()
        assert [r["step"] for r in records if "dev_perplexity" in r] == [2, 4]
        assert calls == [(1, (n,))]  # the forward set at the first step; dev and final reuse it
        sample = run.model.rng_state["probabilities"]
    with Run.open(tmp_path / "run", for_training=False) as again:  # qpa eval, another process
        calls = record_evaluations(monkeypatch, again)
        again.evaluate()
        assert calls == [] and again.model.rng_state["probabilities"] == sample
    exact = config(corpus, steps=2, probabilities="frozen")  # deterministic: unchanged, no sample kept
    with Run.create(tmp_path / "exact", exact) as run:
        calls = record_evaluations(monkeypatch, run)
        run.train(progress=False)
        assert len(calls) == 2 and "probabilities" not in run.model.rng_state


def test_a_frozen_circuit_with_shots_resumes_bit_for_bit(corpus, tmp_path):
    cfg = config(corpus, steps=4, save_every=2, probabilities="frozen", shots_factor=1.0, completion="gi")
    assert_resume_is_bit_identical(tmp_path, cfg)


# ---------------------------------------------------------------------------- hardware in the loop
def test_on_ibm_a_frozen_circuit_is_one_recorded_job_for_training_and_final_weights(corpus, tmp_path):
    with Run.create(tmp_path / "run", config(corpus, steps=3, probabilities="frozen", **HARDWARE)) as run:
        run.train(progress=False)
        expected = run.evaluate()["perplexity"]
    export(tmp_path / "run", tmp_path / "adapter")
    store = JobStore(tmp_path / "run" / "jobs")
    assert store.labels() == ["step-000001"]  # no weights-000003 job: the one sample is reused
    assert len(store.values("step-000001")[0]) == 1
    with Run.open(tmp_path / "run", for_training=False) as again:
        assert again.evaluate()["perplexity"] == pytest.approx(expected)
    assert JobStore(tmp_path / "run" / "jobs").labels() == ["step-000001"]


def test_on_ibm_spsa_every_2_steps_records_one_job_of_3_sets_per_circuit_step(corpus, tmp_path):
    cfg = config(corpus, steps=3, gradient="spsa", circuit_every=2, **HARDWARE)
    with Run.create(tmp_path / "run", cfg) as run:
        run.train(progress=False)
        run.evaluate()
    store = JobStore(tmp_path / "run" / "jobs")
    assert store.labels() == ["step-000001", "step-000003", "weights-000003"]
    assert [len(store.values(label)[0]) for label in store.labels()] == [3, 3, 1]


# ---------------------------------------------------------------------------- the QPA model
SMALL = dict(method="qpa-lora", rank=4, chunk_size=64, reps=2, hidden=[16])
IDS = torch.arange(40).reshape(2, 20) % 250


def test_the_qpa_model_refuses_circuit_every_for_training_and_loads_a_run_trained_with_it(corpus, tmp_path):
    model = get_qpa_model(tiny_gpt2(), QPAConfig(**SMALL, circuit_every=40))  # beyond the default 30 steps
    model.eval()
    with torch.no_grad():
        model(input_ids=IDS)  # evaluation: the trained adapter, one fresh evaluation
    model.train()
    with pytest.raises(InputError, match=r"qpa train \.\.\. --circuit-every 40"):
        model(input_ids=IDS, labels=IDS)
    with Run.create(tmp_path / "run", config(corpus, steps=3, circuit_every=2)) as run:
        run.train(progress=False)
        expected = run.evaluate()["perplexity"]
    loaded = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "run")
    assert loaded.qpa_config.circuit_every == 2 and expected > 1


def test_the_qpa_model_trains_with_spsa_and_measures_a_frozen_sampled_circuit_once(tmp_path, monkeypatch):
    spsa = get_qpa_model(
        tiny_gpt2(), QPAConfig(**SMALL, gradient="spsa"), QPABackend("statevector", shots_factor=2)
    )
    spsa.train()
    spsa(input_ids=IDS, labels=IDS).loss.backward()
    assert spsa.generator.quantum.theta.grad.abs().sum() > 0 and "spsa" in spsa.rng_state

    backend = QPABackend("statevector", shots_factor=2, seed=4)
    frozen = get_qpa_model(tiny_gpt2(), QPAConfig(**SMALL, probabilities="frozen"), backend)
    calls = []
    real = backend.probabilities
    monkeypatch.setattr(backend, "probabilities", lambda c, v: calls.append(1) or real(c, v))
    optimizer = torch.optim.AdamW([p for p in frozen.parameters() if p.requires_grad], lr=1e-2)
    frozen.train()
    for _ in range(3):
        frozen(input_ids=IDS, labels=IDS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    frozen.eval()
    with torch.no_grad():
        out = frozen(input_ids=IDS).logits
    assert len(calls) == 1
    frozen.save_pretrained(tmp_path / "saved")
    loaded = QPAModel.from_pretrained(tiny_gpt2().model, tmp_path / "saved")
    assert loaded.rng_state["probabilities"] == frozen.rng_state["probabilities"]
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=IDS).logits, out)
