"""Run folders as a user drives them: one configuration, resume as printed, whole creation,
one process per folder, clean errors, and the training semantics that comparisons rely on."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import assert_resume_is_bit_identical, tiny_cli_args
from conftest import tiny_config as config

from qpa_qiskit import BusyError, InputError
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.train import Run, evaluate_run


def quoted_command(text: str) -> list[str]:
    """The `qpa ...` command a message prints between quotes, as arguments for main()."""
    match = re.search(r"'(qpa [^']+)'", text)
    assert match, text
    return shlex.split(match.group(1))[1:]


# ---------------------------------------------------------------------------- configuration
def test_config_json_records_every_field_and_starts_a_run(corpus, tmp_path):
    cfg = config(corpus, steps=1, entanglement="circular", activation="tanh", gamma=0.2, dropout=0.1)
    with Run.create(tmp_path / "a", cfg):
        pass
    stored = json.loads((tmp_path / "a" / "config.json").read_text())
    flat = {k: v for section in stored.values() for k, v in section.items()}
    assert set(flat) == set(RunConfig().flat())
    assert flat["entanglement"] == "circular" and flat["activation"] == "tanh" and flat["gamma"] == 0.2
    # the stored file starts a new run with the same settings
    assert main(["train", str(tmp_path / "b"), "--config", str(tmp_path / "a" / "config.json")]) == 0
    assert RunConfig.from_file(tmp_path / "b" / "config.json") == cfg


def test_yaml_config_then_command_line_wins(corpus, tmp_path):
    (tmp_path / "run.yaml").write_text(
        f"task: {{model: tiny-gpt2, data: {corpus}, train_tokens: 0}}\n"
        "adapter: {rank: 2}\n"
        "generator: {chunk_size: 64, reps: 1, hidden: [8]}\n"
        "training: {steps: 1, block_size: 32}\n"
        "eval: {eval_tokens: 300, eval_window: 64, eval_stride: 48}\n"
    )
    assert main(["train", str(tmp_path / "r"), "--config", str(tmp_path / "run.yaml"), "--reps", "2"]) == 0
    cfg = Run.stored_config(tmp_path / "r")
    assert cfg.generator.reps == 2 and cfg.generator.hidden == [8] and cfg.adapter.rank == 2


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "is not valid JSON"),
        ('{"adapter": {"rank": 2, "colour": 1}}', "unknown setting adapter.colour"),
        ('{"speed": 3}', "unknown setting 'speed'"),
        ("[1, 2]", "must be a mapping of settings"),
        ('{"rank": "four"}', "rank must be a positive integer"),
    ],
)
def test_bad_config_files(tmp_path, capsys, content, match):
    (tmp_path / "c.json").write_text(content)
    assert main(["train", str(tmp_path / "r"), "--config", str(tmp_path / "c.json")]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_generator_settings_reach_the_generator(corpus, tmp_path):
    cfg = config(corpus, steps=1, entanglement="circular", activation="silu", completion="gi",
                 completion_hidden=[5], shots_factor=2.0, gamma=0.3, beta=0.5, alpha=0.2)  # fmt: skip
    with Run.create(tmp_path / "r", cfg) as run:
        gen = run.model.generator
        assert isinstance(gen.mapping[1], torch.nn.SiLU)
        assert (gen.gamma, gen.beta, gen.alpha) == (0.3, 0.5, 0.2)
        assert gen.quantum.completion.net[0].out_features == 5
        cx = [tuple(gen.circuit.find_bit(q).index for q in i.qubits) for i in gen.circuit.data
              if i.operation.name == "cx"]  # fmt: skip
        assert (gen.n_qubits - 1, 0) in cx  # circular: the ladder closes


# ---------------------------------------------------------------------------- resume
def test_readme_resume_commands_work_as_printed(corpus, tmp_path, monkeypatch, capsys):
    """The issue's repro: a run made with options, resumed with --steps only."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    head = ["train", "runs/a", *tiny_cli_args(corpus, "--steps 2")]
    assert main(head) == 0
    assert main(["train", "runs/a", "--steps", "3", "--resume"]) == 0
    assert len((tmp_path / "runs" / "a" / "metrics.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["eval", "runs/a", "--eval-tokens", "300"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["step"] == 3 and report["tokens"] == 299
    # the hint printed for an existing run is the command that continues it
    assert main(head) == 2
    hint = quoted_command(capsys.readouterr().err)
    assert hint == ["train", "runs/a", "--resume"]
    capsys.readouterr()
    assert main(hint) == 0  # nothing to do: already at step 3, the length it was resumed to
    assert "is at step 3 of 3" in capsys.readouterr().out
    assert json.loads((tmp_path / "runs" / "a" / "config.json").read_text())["training"]["steps"] == 3


def test_resume_refuses_other_settings_with_both_values(corpus, tmp_path, capsys):
    args = tiny_cli_args(corpus, "--steps 1")
    assert main(["train", str(tmp_path / "a"), *args]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "a"), "--resume", "--rank", "8", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "rank: stored 4, given 8" in err and "lr: stored 0.001, given 0.5" in err
    assert main(["train", str(tmp_path / "a"), "--resume", "--config", "x.json"]) == 2
    assert "--config starts a new run" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run_is_an_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


@pytest.mark.slow
def test_ctrl_c_hint_is_a_working_command(corpus, tmp_path):
    """SIGINT a training run, then run exactly the command its message prints."""
    env = os.environ.copy()  # offline: tests/offline.py set it for every test
    run_dir = tmp_path / "r"
    args = tiny_cli_args(corpus, "--steps 20000 --save-every 1")  # cannot finish before the signal
    # a shell that runs the test-suite in the background starts it with SIGINT ignored, and the
    # child would inherit that: give it the default disposition, as a terminal would
    victim = subprocess.Popen([sys.executable, "-m", "qpa_qiskit.cli", "train", str(run_dir), *args],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.05)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    command = quoted_command(err[err.index("stopped at step") :])
    assert command == ["train", str(run_dir), "--resume"]
    reached = len(metrics.read_text().splitlines())  # steps are milliseconds: SIGINT lands when it lands
    assert main([*command, "--steps", str(reached + 2)]) == 0
    assert len(metrics.read_text().splitlines()) == reached + 2


# ---------------------------------------------------------------------------- whole creation, locks
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda c, t: config(c, data=str(t / "empty")), "fewer than one block|fewer than 2 tokens"),
        (lambda c, t: config(c, shots_factor=1e300), "shots"),
    ],
)
def test_failures_after_validation_leave_nothing_behind(corpus, tmp_path, make, match):
    (tmp_path / "empty").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "empty" / f"{split}.txt").write_text("")
    with pytest.raises(InputError, match=match):
        Run.create(tmp_path / "run", make(corpus, tmp_path))
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_a_run_folder_that_is_a_file(corpus, tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        Run.create(tmp_path / "run", config(corpus))


def test_two_processes_never_train_one_folder(corpus, tmp_path):
    with Run.create(tmp_path / "r", config(corpus, steps=2)) as first:
        with pytest.raises(BusyError, match="another process is training"):
            Run.open(tmp_path / "r")
        first.train(progress=False)
    with Run.open(tmp_path / "r", overrides={"steps": 3}) as again:  # released on close
        again.train(progress=False)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]


def test_stale_temporary_checkpoint_is_removed(corpus, tmp_path):
    with Run.create(tmp_path / "r", config(corpus, steps=2)) as run:
        run.train(progress=False)
    stale = tmp_path / "r" / ".checkpoint.pt.k1ll3d"
    stale.write_bytes(b"half a checkpoint")
    with Run.open(tmp_path / "r"):
        assert not stale.exists()


# ---------------------------------------------------------------------------- broken files
@pytest.mark.parametrize(
    "name, content, match",
    [
        ("checkpoint.pt", b"", "cannot read the checkpoint"),
        ("checkpoint.pt", b"PK\x03\x04 truncated", "cannot read the checkpoint"),
        ("config.json", b'{"task": ', "cannot read run configuration"),
        ("config.json", b"\xff\xfe\x00binary", "cannot read run configuration"),
        ("config.json", b'{"adapter": {"rank": -1}}', "rank must be a positive integer"),
    ],
)
def test_broken_run_files_are_named(corpus, tmp_path, capsys, name, content, match):
    with Run.create(tmp_path / "r", config(corpus, steps=1)) as run:
        run.train(progress=False)
    (tmp_path / "r" / name).write_bytes(content)
    for command in (["eval", str(tmp_path / "r")], ["train", str(tmp_path / "r"), "--resume"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert re.search(match, err) and str(tmp_path / "r" / name) in err and "Traceback" not in err


def test_eval_and_export_need_a_checkpoint(corpus, tmp_path, capsys):
    run = Run.create(tmp_path / "r", config(corpus, steps=5, save_every=5))
    run.train_step()  # trained one step, never saved
    run.close()
    for command in (["eval", str(tmp_path / "r")], ["export", str(tmp_path / "r"), str(tmp_path / "x")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "has no checkpoint yet" in err
    assert not (tmp_path / "x").exists()
    assert main(quoted_command(err)) == 0  # the printed hint trains it
    assert main(["export", str(tmp_path / "r"), str(tmp_path / "x")]) == 0


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    import errno

    import qpa_qiskit.train.folder as run_folder

    assert main(["train", str(tmp_path / "r"), *tiny_cli_args(corpus, "--steps 2 --save-every 1")]) == 0
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder, "atomic_write", full)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "r"), "--resume", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing is lost" in err
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    monkeypatch.undo()
    assert main(quoted_command(err[err.index("Free some space") :])) == 0


def test_data_is_stored_resolved_and_eval_takes_data(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(corpus.parent)
    assert main(["train", str(tmp_path / "r"), *tiny_cli_args("wikitext", "--steps 1")]) == 0
    assert Run.stored_config(tmp_path / "r").task.data == str(corpus)
    monkeypatch.chdir(tmp_path / "r")  # another folder: the stored path still works
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r")]) == 0
    first = json.loads(capsys.readouterr().out)
    moved = corpus.rename(tmp_path / "moved")
    assert main(["eval", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "r"), "--data", str(moved)]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"] == first["perplexity"]
    assert main(["eval", str(tmp_path / "r"), "--eval-tokens", "-5"]) == 2
    assert "eval_tokens must be an integer >= 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------- training semantics
def test_gradient_accumulation_generates_once_and_equals_one_batch(corpus, tmp_path, monkeypatch):
    one = Run.create(tmp_path / "one", config(corpus, batch_size=4, grad_accum=1))
    many = Run.create(tmp_path / "many", config(corpus, batch_size=2, grad_accum=2))
    calls = []
    backend = many.model.generator.quantum.backend
    for name in ("probabilities", "vjp"):  # shift rule: one batch; adjoint: one forward pass
        real = getattr(backend, name)
        monkeypatch.setattr(
            backend, name, lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k)
        )
    loss_many = many.accumulate_gradients()
    assert calls == ["vjp"]  # one circuit evaluation per optimiser step, its gradient exact
    loss_one = one.accumulate_gradients()
    assert loss_many == pytest.approx(loss_one, rel=1e-6)
    for name, p in one.params.items():
        # equal up to float32 summation order: a few ulp of the tensor's largest entries
        scale = float(p.grad.abs().max())
        assert torch.allclose(p.grad, many.params[name].grad, rtol=1e-5, atol=1e-6 * scale), name
    assert one.model.generator.quantum.theta.grad.abs().sum() > 0
    one.close()
    many.close()


@pytest.mark.parametrize("mode", ["none", "gi", "uniform", "random"])
def test_resume_is_bit_identical_for_every_completion_mode(corpus, tmp_path, mode):
    cfg = config(corpus, steps=4, save_every=2, shots_factor=1.0, completion=mode)
    assert_resume_is_bit_identical(tmp_path, cfg)


def test_runs_that_differ_in_one_setting_share_every_other_initial_value(corpus, tmp_path):
    runs = {}
    for mode in ("none", "gi", "random"):
        cfg = config(corpus, shots_factor=2.0, completion=mode)
        runs[mode] = Run.create(tmp_path / mode, cfg)
    start = {mode: run.params for mode, run in runs.items()}
    for name in start["none"]:
        for mode in ("gi", "random"):
            assert torch.equal(start["none"][name], start[mode][name]), (mode, name)
    assert any(n.startswith("generator.quantum.completion") for n in start["gi"])
    other_seed = Run.create(tmp_path / "seed1", config(corpus, seed=1))
    theta = "generator.quantum.theta"
    assert not torch.equal(other_seed.params[theta], start["none"][theta])
    for run in [*runs.values(), other_seed]:
        run.close()


def test_study_reports_what_qpa_eval_reports(tmp_path, corpus):
    from qpa_qiskit.studies.shots import study_shots

    cfg = config(corpus, steps=2, reps=1, hidden=[8], eval_tokens=300)
    rows = study_shots(cfg, tmp_path / "s", shots_factors=(2,), modes=("random",), tvd_samples=2,
                       log=lambda m: None)  # fmt: skip
    for row, name in zip(rows, ("exact", "c2-random"), strict=True):
        assert row["perplexity"] == evaluate_run(tmp_path / "s" / name)["perplexity"]


def test_an_old_config_json_with_the_backend_under_generator_still_loads():
    """config.json files written before the backend section hold its fields under "generator"."""
    old = {
        "adapter": {"method": "qpa-lora"},
        "generator": {"backend": "aer_noisy:fake_brisbane", "shots_factor": 2.0, "engine": "ptm",
                      "noise_scale": 0.5, "readout_error": False, "chunk_size": 64, "reps": 2},
        "training": {"seed": 3},
    }  # fmt: skip
    cfg = RunConfig.from_dict(old)
    assert cfg.backend.backend == "aer_noisy:fake_brisbane" and cfg.backend.shots_factor == 2.0
    assert (cfg.backend.engine, cfg.backend.noise_scale, cfg.backend.readout_error) == ("ptm", 0.5, False)
    assert (cfg.generator.chunk_size, cfg.generator.reps, cfg.training.seed) == (64, 2, 3)
    assert cfg.to_dict()["backend"]["backend"] == "aer_noisy:fake_brisbane"
    assert "backend" not in cfg.to_dict()["generator"]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "options, message",
    [
        ("--backend aer_noisy:brisbane --layout 1,2,3,4,5 --mitigation m3 --noise-scale 3",
         "bit 4 reads 0 as often from 1 as from 0"),  # Brisbane's qubit 5 misreads 18.6% at scale 1
        ("--dev-tokens 1 --eval-every 1", "dev_tokens must be 0 (the whole split) or at least 2"),
        ("--eval-tokens 1", "eval_tokens must be 0 (the whole split) or at least 2"),
    ],
    ids=["m3-on-a-qubit-without-information", "one-dev-token", "one-test-token"],
)  # fmt: skip
def test_what_the_first_step_would_refuse_is_refused_before_the_folder_is_written(
    corpus, tmp_path, capsys, options, message
):
    run = tmp_path / "run"
    assert main(["train", str(run), *tiny_cli_args(corpus, f"--steps 2 {options}")]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()
    assert main(["train", str(run), *tiny_cli_args(corpus, "--steps 1")]) == 0  # the folder is free


def test_qpa_eval_takes_the_device_the_docs_give_it_and_a_file_is_not_a_run(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(run), *tiny_cli_args(corpus, "--steps 1")]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--eval-tokens", "200"]) == 0  # docs/training.md
    assert json.loads(capsys.readouterr().out)["perplexity"] > 1
    assert main(["eval", str(run / "config.json")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a run folder" in err and f"qpa train {run / 'config.json'}" not in err
