"""Options a run would accept and never read (issue 35): each is refused in one line that names
it, why it is meaningless there and what to do, before anything is written; a default that is
legitimately present (a preset's, a configuration file's) is not refused."""

import re
import warnings

import pytest
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError, QPABackend
from qpa_qiskit.cli import main
from qpa_qiskit.config import GeneratorConfig, RunConfig, check_given
from qpa_qiskit.generator import LowRankGenerator
from qpa_qiskit.studies.ablation import AblationStudy
from qpa_qiskit.studies.compare import CompareStudy, compare
from qpa_qiskit.train import Run


def refused(tmp_path, capsys, corpus, options: str) -> str:
    """`qpa train` with `options` on the tiny model: refused with status 2, no run folder; the
    one-line message."""
    assert main(["train", str(tmp_path / "r"), *tiny_cli_args(corpus, options)]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert err.startswith("qpa: error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------ --activation
@pytest.mark.parametrize(
    "options, fragment",
    [
        ("--mapping linear --activation relu",
         "mapping 'linear' is a chain of Linear layers with none between them. Drop --activation, or use "
         "--mapping mlp"),
        ("--preset paper --activation relu",
         "mapping 'linear' (set by --preset paper) is a chain of Linear layers with none between them. Drop "
         "--activation, or drop --preset and use --mapping mlp"),
        ("--method lowrank-lora --activation tanh",
         "lowrank-lora have no mapping network. Drop --activation, or use a qpa-* method"),
    ],
)  # fmt: skip
def test_activation_without_an_mlp_mapping_is_refused(corpus, tmp_path, capsys, options, fragment):
    err = refused(tmp_path, capsys, corpus, options)
    assert "--activation sets the activation between the layers of the qpa-* methods' mlp mapping" in err
    assert fragment in err


def test_the_default_activation_of_a_linear_mapping_is_not_refused():
    paper = RunConfig().replace(preset="paper")  # its activation is the default, gelu, unread
    check_given({"preset": "paper"}, ["qpa-lora"], paper)
    check_given({"activation": "relu"}, ["qpa-lora"], RunConfig())  # mlp: read
    linear = {"mapping": "linear", "activation": "relu"}
    with pytest.raises(InputError, match="--activation sets"):
        CompareStudy(methods=("lora", "qpa-lora")).configuration(None, linear)
    # the ablation's regimes set the mapping per run (mlp among them): its activation is read
    AblationStudy().configuration(None, {"activation": "relu"})


# ------------------------------------------------------------------ backend and noise options
@pytest.mark.parametrize(
    "options, fragment",
    [
        ("--probabilities uniform --backend aer_noisy:fake_athens --noise-scale 0.5",
         "--backend, --noise-scale set(s) the backend that evaluates the qpa-* methods' circuit (its noise, "
         "shots, device); probabilities 'uniform' evaluate no circuit (only circuit or frozen do). Drop "
         "--backend, --noise-scale, or use --probabilities circuit or frozen"),
        ("--probabilities softmax --backend aer_noisy:fake_athens --no-readout-error --engine aer",
         "--backend, --engine, --readout-error set(s) the backend"),
        ("--method lowrank-lora --backend aer_noisy:fake_athens --no-gate-error",
         "lowrank-lora evaluate(s) no circuit (H @ C, both trained). Drop --backend, --gate-error, or use a "
         "qpa-* method"),
    ],
)  # fmt: skip
def test_backend_options_of_a_run_that_evaluates_no_circuit_are_refused(corpus, tmp_path, capsys, options,
                                                                        fragment):  # fmt: skip
    assert fragment in refused(tmp_path, capsys, corpus, options)


def test_backend_options_of_a_run_that_evaluates_its_circuit_are_not_refused():
    noisy = {"backend": "aer_noisy:fake_athens", "noise_scale": 0.5}
    frozen = RunConfig().replace(probabilities="frozen", **noisy)
    check_given({"probabilities": "frozen", **noisy}, ["qpa-lora"], frozen)
    both = CompareStudy(methods=("lowrank-lora", "qpa-lora"))
    with pytest.raises(InputError, match="probabilities 'none' evaluate no circuit"):
        both.configuration(None, {**noisy, "probabilities": "none"})
    both.configuration(None, noisy)  # qpa-lora reads it
    # the ablation's controls set the probabilities per run (circuit among them): its backend is read
    AblationStudy().configuration(None, noisy)


# ------------------------------------------------------------------ --padded-block
def test_padded_block_without_padded_lines_is_refused(corpus, tmp_path, capsys):
    fragment = (
        "--padded-block sets the line length of the padded-lines protocol; eval_protocol 'windows' scores no "
        "padded lines. Drop --padded-block, or add --eval-protocol padded-lines"
    )
    assert fragment in refused(tmp_path, capsys, corpus, "--padded-block 256")
    with pytest.raises(InputError, match="--padded-block sets"):
        CompareStudy().configuration(None, {"padded_block": 256})
    CompareStudy().configuration(None, {"padded_block": 256, "eval_protocol": "padded-lines"})


def test_padded_block_of_a_stored_windows_run_is_refused_on_eval_and_resume(corpus, tmp_path, capsys):
    run = str(tmp_path / "run")
    small = "--steps 1 --reps 1 --hidden 8 --eval-window 64 --eval-stride 48 --eval-tokens 200"
    assert main(["train", run, *tiny_cli_args(corpus, small)]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    capsys.readouterr()
    for command in ("eval", run), ("train", run, "--resume"):
        assert main([*command, "--padded-block", "64"]) == 2
        err = capsys.readouterr().err
        assert "eval_protocol 'windows' scores no padded lines" in err and err.count("\n") == 1, err
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing lost


# ------------------------------------------------------------------ default_shots of the sampler options
def test_default_shots_of_the_sampler_options_are_refused_on_the_command_line(corpus, tmp_path, capsys):
    options = '--backend ibm:fake_athens --shots-factor 2 --sampler-options {"default_shots":7}'
    fragment = (
        "--sampler-options sets default_shots 7, which no job reads: every job of a run asks for the run's "
        "own shots (n_shot = ceil(c 2^N), --shots-factor c). Drop default_shots from --sampler-options, and "
        "set the shots with --shots-factor"
    )
    assert fragment in refused(tmp_path, capsys, corpus, options)
    twirled = '{"twirling": {"enable_gates": true}}'
    cfg = RunConfig().replace(backend="ibm:fake_athens", shots_factor=2, sampler_options=twirled)
    check_given({"sampler_options": twirled}, ["qpa-lora"], cfg)  # other options: read


def test_default_shots_of_the_sampler_options_are_noted_once_where_not_refused():
    with pytest.warns(UserWarning, match=r"default_shots 7 is not used: every job asks for the backend's own "
                                         r"shots \(shots 10 per parameter set\)"):  # fmt: skip
        QPABackend("ibm:fake_athens", shots=10, sampler_options={"default_shots": 7}, connect=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no default_shots: no note
        QPABackend("ibm:fake_athens", shots_factor=2, sampler_options={"max_execution_time": 9})


# ------------------------------------------------------------------ --lr beside --lrs
@pytest.mark.parametrize(
    "command, fragment",
    [
        ("compare --methods lora --lrs 1e-3 3e-3 --lr 0.5",
         "--lr 0.5 is never used: --lrs 1e-03 3e-03 trains every setting at each rate of the grid and keeps "
         "the rate of lowest dev perplexity. Drop --lr, or give --lrs none (every run at --lr)"),
        ("study params --methods lora --lr 0.01",
         "--lr 0.01 is never used: --lrs family trains every setting at each method family's standard grid"),
        ("compare --methods qpa-lora --circuit-lrs 0.01 0.05 --circuit-lr 0.1",
         "--circuit-lr 0.1 is never used: --circuit-lrs 1e-02 5e-02 trains every setting at each rate of the "
         "grid and keeps the rate of lowest dev perplexity. Drop --circuit-lr, or give --circuit-lrs none"),
    ],
)  # fmt: skip
def test_a_rate_beside_its_selection_grid_is_refused(corpus, tmp_path, capsys, command, fragment):
    out = tmp_path / "s"
    assert main([*command.split(), "--model", "tiny-gpt2", "--data", str(corpus), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_rate_without_a_selection_grid_is_taken():
    CompareStudy().configuration(None, {"lr": 0.5})  # --lrs none: every run at --lr
    CompareStudy(lrs=(1e-3,), circuit_lrs="none").configuration(None, {"circuit_lr": 0.1})


# ------------------------------------------------------------------ job recovery on a simulator
@pytest.mark.parametrize(
    "options, fragment",
    [
        ("--resubmit-unconfirmed",
         "--resubmit-unconfirmed recover(s) the IBM Quantum jobs of a run whose circuit runs on an "
         "ibm:<device> backend; qpa-lora on backend 'statevector' runs its circuit here and submits none. "
         "Drop --resubmit-unconfirmed, or train a qpa-* method on an ibm: backend"),
        ("--backend aer_noisy:fake_athens --resubmit-unconfirmed --retry-failed",
         "--resubmit-unconfirmed, --retry-failed recover(s) the IBM Quantum jobs"),
    ],
)  # fmt: skip
def test_job_recovery_options_on_a_run_without_jobs_are_refused(corpus, tmp_path, capsys, options, fragment):
    assert fragment in refused(tmp_path, capsys, corpus, options)


def test_job_recovery_options_are_refused_in_python_and_on_resume(corpus, tmp_path, capsys):
    for changes, fragment in (
        ({"probabilities": "uniform"}, "qpa-lora evaluates no circuit (probabilities 'uniform') and submits"),
        ({"method": "lora"}, "lora evaluates no circuit and submits none"),
    ):
        with pytest.raises(InputError, match=re.escape(fragment)):
            Run.create(
                tmp_path / "u", tiny_config(corpus, **changes), hardware_options={"retry_failed": True}
            )
        assert not (tmp_path / "u").exists()
    run = str(tmp_path / "run")
    small = "--steps 1 --reps 1 --hidden 8 --eval-tokens 200"
    assert main(["train", run, *tiny_cli_args(corpus, small)]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", run, "--resume", "--steps", "2", "--resubmit-unconfirmed"]) == 2
    assert "runs its circuit here and submits none" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing lost


# ------------------------------------------------------------------ --lowrank-k beyond the rank
def test_a_lowrank_k_beyond_the_rank_of_the_generated_weights_is_refused(corpus, tmp_path, capsys):
    # tiny-gpt2's lm_head at rank 4: 1,156 weights in chunks of 64 are 19 chunks, so k <= min(19, 64)
    fragment = (
        "lowrank_k 20 is larger than the rank the generated weights can have: 1,156 weights in chunks of 64 "
        "are H (19 x k) @ C (k x 64), of rank at most min(19, 64) = 19; a larger k adds 83 trainable "
        "parameters and no freedom. Give --lowrank-k at most 19, or leave it out (k matched to the QPA "
        "generator's trainable count)"
    )
    assert fragment in refused(tmp_path, capsys, corpus, "--method lowrank-lora --lowrank-k 20")
    with pytest.raises(InputError, match="lowrank_k 500 is larger than the rank"):  # a study: before any run
        compare(
            tiny_config(corpus, method="lowrank-lora", lowrank_k=500),
            tmp_path / "s",
            methods=["lowrank-lora"],
        )
    assert not (tmp_path / "s").exists()
    cfg = RunConfig.from_dict({"method": "lowrank-lora", "chunk_size": 64, "lowrank_k": 500})
    with pytest.raises(InputError, match="at most min\\(32, 64\\) = 32"):
        LowRankGenerator(2000, cfg.generator)  # a configuration file or Python: the same refusal
    assert LowRankGenerator(2000, GeneratorConfig(chunk_size=64, lowrank_k=32)).k == 32  # the bound
    assert LowRankGenerator(2000, GeneratorConfig(chunk_size=1000)).k > 2  # the default k: never refused
