"""The run's device (--device): its forms, what a machine without it is told, the model and
batches on it, checkpoints that move between devices, the PTM engine following it. Every test
runs on the CPU; those that need a CUDA device skip with the reason where there is none."""

import json

import pytest
import torch
from conftest import tiny_config

from qpa_qiskit import InputError, SpecError
from qpa_qiskit.backends import QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.config import RESUMABLE, BackendConfig, RunConfig, TrainingConfig
from qpa_qiskit.export import export
from qpa_qiskit.studies.common import base_result
from qpa_qiskit.studies.compare import compare
from qpa_qiskit.studies.runner import Trial, check_trials, run_trial
from qpa_qiskit.train import Run, evaluate_run, run_device
from qpa_qiskit.validate import device_form

CUDA = torch.cuda.is_available() and torch.cuda.device_count() > 0
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA device here")
MPS = torch.backends.mps.is_available()


def metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def stop_after(run_dir, cfg, steps):
    """A run of `cfg` that stopped after `steps` steps, at a checkpoint (as if killed there)."""
    with Run.create(run_dir, cfg) as run:
        for _ in range(steps):
            run.train_step()
        run.save()


@pytest.mark.parametrize(
    "given, form",
    [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda:0"), ("CUDA:01", "cuda:1"),
     ("mps", "mps")],
)  # fmt: skip
def test_device_forms_are_normalised(given, form):
    assert device_form(given, "device") == form
    assert TrainingConfig(device=given).device == form


@pytest.mark.parametrize("given", ["gpu", "cuda:x", "cuda:", "cuda:-1", "cuda:1.5", "tpu", "", 3, None])
def test_an_unknown_device_lists_the_accepted_forms(given):
    with pytest.raises(InputError, match=r"device must be auto, cpu, cuda, cuda:<index> .* or mps; got"):
        TrainingConfig(device=given)


def test_the_default_is_auto_recorded_as_asked(corpus, tmp_path):
    assert RunConfig().training.device == "auto" and "device" in RESUMABLE
    with Run.create(tmp_path / "r", tiny_config(corpus, steps=1)) as run:
        run.train(progress=False)
        assert run.device == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["training"]["device"] == "auto"  # what was asked; metrics say where it ran
    assert metrics(tmp_path / "r")[0]["device"] == str(run.device)


def test_help_shows_device(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--device DEVICE" in out and "cuda:<index> or mps" in out and "--torch-device" in out


@pytest.mark.skipif(CUDA, reason="checks the message of a machine without CUDA")
def test_cuda_without_cuda_says_what_torch_sees(corpus, tmp_path, capsys):
    with pytest.raises(
        InputError, match=r"device='cuda', but torch .* sees no CUDA device here; use 'cpu' or"
    ):
        run_device(tiny_config(corpus, device="cuda"))
    args = ["--model", "tiny-gpt2", "--data", str(corpus), "--method", "lora", "--device", "cuda:1"]
    code = main(["train", str(tmp_path / "r"), *args])
    assert code == 2 and "sees no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything is written


@pytest.mark.skipif(MPS, reason="checks the message of a machine without MPS")
def test_mps_without_mps_says_what_torch_sees(corpus, tmp_path):
    with pytest.raises(InputError, match=r"device='mps', but torch .* sees no MPS device here"):
        Run.create(tmp_path / "r", tiny_config(corpus, device="mps"))
    assert not (tmp_path / "r").exists()


def test_bf16_on_the_cpu_autocasts(corpus, tmp_path):
    """Every CPU autocasts to bf16 (emulated where it lacks the instructions): not refused,
    and the loss differs from fp32's, so autocast really ran."""
    losses = {}
    for precision in ("fp32", "bf16"):
        with Run.create(
            tmp_path / precision, tiny_config(corpus, steps=1, device="cpu", precision=precision)
        ) as r:
            losses[precision] = r.train(progress=False)[0]["loss"]
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_bf16_on_a_gpu_without_it_is_refused_naming_the_gpu(monkeypatch):
    """A GPU torch says has no bfloat16 (a V100, a T4) is refused with its name and the cure,
    before anything runs; torch's answers for such a GPU stubbed here (no GPU on CI)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-16GB")
    cfg = RunConfig().replace(device="auto", precision="bf16")
    with pytest.raises(InputError, match=r"--precision bf16 on cuda:0 \(Tesla V100-SXM2-16GB\): torch says "
                       r"this GPU does not support bfloat16; use --precision fp32"):  # fmt: skip
        run_device(cfg)
    assert run_device(cfg.replace(precision="fp32")) == torch.device("cuda", 0)


def test_bf16_on_mps_before_macos_14_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: False)
    refusal = "--precision bf16 on mps needs macOS 14 or newer; use --precision fp32"
    with pytest.raises(InputError, match=refusal):
        run_device(RunConfig().replace(device="mps", precision="bf16"))


def test_checkpoints_hold_cpu_tensors_and_no_device_state_on_the_cpu(corpus, tmp_path):
    with Run.create(tmp_path / "r", tiny_config(corpus, steps=2, device="cpu")) as run:
        run.train(progress=False)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert {t.device.type for t in state["trainable"].values()} == {"cpu"}
    assert set(state["rng"]) == {"torch", "numpy", "python", "model"}


def test_a_resumed_run_may_change_its_device_and_stays_exact(corpus, tmp_path):
    """The stored 'cpu' changed to 'auto' on resume (without CUDA the same device): allowed,
    and the run ends bit for bit where an uninterrupted one does."""
    with Run.create(tmp_path / "straight", tiny_config(corpus, steps=4, device="cpu")) as run:
        run.train(progress=False)
    stop_after(tmp_path / "moved", tiny_config(corpus, steps=4, device="cpu"), 2)
    overrides = {"device": "cpu" if CUDA else "auto"}
    with Run.open(tmp_path / "moved", overrides=overrides) as run:
        run.train(progress=False)
    # config.json records where the run now trains: a plain --resume later continues there
    assert Run.stored_config(tmp_path / "moved").training.device == overrides["device"]
    a, b = metrics(tmp_path / "straight"), metrics(tmp_path / "moved")
    assert [x["loss"] for x in a] == [x["loss"] for x in b]
    assert [x["device"] for x in b] == ["cpu"] * 4
    assert evaluate_run(tmp_path / "moved")["perplexity"] == evaluate_run(tmp_path / "straight")["perplexity"]


def test_the_ptm_engine_follows_the_run_device_unless_set():
    section = BackendConfig(backend="aer_noisy:fake_brisbane")
    assert QPABackend.from_config(section, device="cpu").family.torch_device == "cpu"
    assert QPABackend.from_config(section, device="mps").family.torch_device == "cpu"  # float64: not on MPS
    pinned = BackendConfig(backend="aer_noisy:fake_brisbane", torch_device="cpu")
    assert QPABackend.from_config(pinned, device="cuda:0").family.torch_device == "cpu"
    if CUDA:
        assert QPABackend.from_config(section, device="cuda:0").family.torch_device == "cuda:0"
    else:  # it follows: to a device this machine does not have, and says so
        with pytest.raises(SpecError, match=r"torch_device='cuda:0', but torch .* sees no CUDA device here"):
            QPABackend.from_config(section, device="cuda:0")
    assert QPABackend.from_config(BackendConfig(), device="cuda:0").kind == "statevector"  # takes none


@pytest.mark.parametrize(
    "settings, match",
    [(dict(torch_device="gpu"), "torch_device must be cpu, cuda, cuda:<index>"),
     (dict(torch_device="mps", backend="aer_noisy:fake_brisbane"), "float64, which MPS does not have"),
     (dict(torch_device="cpu"), "torch_device sets where the PTM engine of an aer_noisy")],
)  # fmt: skip
def test_bad_torch_device_settings(settings, match):
    with pytest.raises(InputError, match=match):
        BackendConfig(**settings)


@needs_cuda
def test_a_run_trained_on_cuda_resumes_and_evaluates_on_the_cpu(corpus, tmp_path):
    cfg = tiny_config(corpus, steps=2, device="cuda", method="qpa-lora")
    with Run.create(tmp_path / "r", cfg) as run:
        assert run.device.type == "cuda"
        assert {p.device.type for p in run.model.peft_model.parameters()} == {"cuda"}
        assert run.model.generator.quantum.theta.device.type == "cpu"  # beside the circuit
        run.train(progress=False)
    on_cuda = evaluate_run(tmp_path / "r")
    on_cpu = evaluate_run(tmp_path / "r", overrides={"device": "cpu"})
    assert on_cpu["perplexity"] == pytest.approx(on_cuda["perplexity"], rel=1e-4)
    assert "cuda" in torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["rng"]
    with Run.open(tmp_path / "r", overrides={"steps": 4, "device": "cpu"}) as run:
        run.train(progress=False)
    with Run.open(tmp_path / "r", overrides={"steps": 6, "device": "cuda"}) as run:  # and back
        run.train(progress=False)
    assert [m["device"] for m in metrics(tmp_path / "r")] == ["cuda:0"] * 2 + ["cpu"] * 2 + ["cuda:0"] * 2
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics(tmp_path / "r"))


@needs_cuda
def test_resume_on_cuda_is_exact(corpus, tmp_path):
    """Dropout on the GPU draws from the CUDA generator, saved in the checkpoint."""
    cfg = tiny_config(corpus, steps=4, device="cuda", method="lora", dropout=0.1)
    with Run.create(tmp_path / "straight", cfg) as run:
        run.train(progress=False)
    stop_after(tmp_path / "resumed", cfg, 2)
    with Run.open(tmp_path / "resumed") as run:
        run.train(progress=False)
    torch.testing.assert_close(
        [m["loss"] for m in metrics(tmp_path / "resumed")],
        [m["loss"] for m in metrics(tmp_path / "straight")],
    )


@pytest.mark.skipif(CUDA, reason="checks the message of a machine without CUDA")
def test_a_local_study_on_a_missing_device_is_refused_before_anything_is_written(corpus, tmp_path):
    with pytest.raises(
        InputError, match=r"runs cannot run, found before any run started.*sees no CUDA device"
    ):
        compare(tiny_config(corpus, steps=1, device="cuda"), tmp_path / "c", methods=("lora",), seeds=(0,),
                log=lambda m: None)  # fmt: skip
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(CUDA, reason="checks a driver without CUDA")
def test_a_cluster_driver_without_the_gpu_checks_the_rest_and_scores_the_base_on_its_cpu(corpus, tmp_path):
    """On Ray the runs' device is the nodes': the driver checks every other setting, and scores
    the base model where it can."""
    cfg = tiny_config(corpus, steps=1, device="cuda", method="lora")
    check_trials([Trial("r", cfg)], device=False)
    with pytest.raises(InputError, match="rank must be"):
        check_trials([Trial("r", cfg.replace(rank=0))], device=False)
    assert base_result(tmp_path, cfg, lambda m: None) == base_result(
        tmp_path / "cpu", cfg.replace(device="cpu"), lambda m: None
    )


@pytest.mark.skipif(CUDA, reason="checks a machine without the run's GPU")
def test_a_gpu_run_is_evaluated_and_exported_on_a_machine_without_one(corpus, tmp_path):
    """A run whose config.json asks for cuda (as one created on a GPU machine does) opened here."""
    with Run.create(tmp_path / "r", tiny_config(corpus, steps=2, device="cpu")) as run:
        run.train(progress=False)
    path = tmp_path / "r" / "config.json"
    path.write_text(path.read_text().replace('"device": "cpu"', '"device": "cuda"'))
    assert Run.stored_config(tmp_path / "r").training.device == "cuda"  # loads on any machine
    with pytest.raises(InputError, match="sees no CUDA device here"):
        evaluate_run(tmp_path / "r")
    on_cpu = evaluate_run(tmp_path / "r", overrides={"device": "cpu"})
    assert on_cpu["perplexity"] > 1
    assert export(tmp_path / "r", tmp_path / "adapter").joinpath("adapter_model.safetensors").exists()


def test_a_study_and_its_killed_run_resume_with_another_device(corpus, tmp_path):
    """The device says where a study's runs train, not what they are: the same study in the
    same folder with another --device resumes (its finished runs read back, a killed one
    continued exactly), as a run does."""
    cfg = tiny_config(corpus, steps=2, device="cpu", method="lora", eval_tokens=300)
    straight = run_trial(tmp_path / "a", Trial("r", cfg))
    stop_after(tmp_path / "b" / "r", cfg, 1)  # killed after its first step
    moved = cfg.replace(device="cpu" if CUDA else "auto")
    resumed = run_trial(tmp_path / "b", Trial("r", moved))
    assert resumed.pop("seconds_per_step") > 0 and straight.pop("seconds_per_step") > 0
    assert resumed == straight  # the same perplexity, bit for bit
    first = compare(cfg, tmp_path / "c", methods=("lora",), seeds=(0,), log=lambda m: None)
    before = (tmp_path / "c" / "lora" / "metrics.jsonl").stat().st_mtime_ns
    assert compare(moved, tmp_path / "c", methods=("lora",), seeds=(0,), log=lambda m: None) == first
    assert (tmp_path / "c" / "lora" / "metrics.jsonl").stat().st_mtime_ns == before  # not trained again
    with pytest.raises(InputError, match="holds another study"):  # what the runs are still counts
        compare(cfg.replace(lr=0.5), tmp_path / "c", methods=("lora",), seeds=(0,), log=lambda m: None)
