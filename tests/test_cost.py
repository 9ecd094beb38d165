"""A run's QPU cost before it is spent (qpa_qiskit.train.cost, qpa_qiskit.studies.cost):
what it evaluates counted from its configuration, priced by the device model; the dry runs of
``qpa train`` and ``qpa study`` print it and write nothing; bad budgets and devices are one-line
errors that leave no folder behind."""

import math
import shlex

import numpy as np
import pytest
from conftest import tiny_cli_args, tiny_config
from pages import code_blocks, page

from qpa_qiskit import InputError, SpecError
from qpa_qiskit.backends.cost import JOB_OVERHEAD_SECONDS, ShotTiming
from qpa_qiskit.cli import main
from qpa_qiskit.models import tiny_gpt2
from qpa_qiskit.studies.compare import CompareStudy
from qpa_qiskit.studies.cost import planned_trials
from qpa_qiskit.train.cost import Projector, RunCost, Submission, project, run_circuit

DEVICE = "ibm:fake_manila"


def config(corpus, **overrides):
    settings = dict(reps=1, steps=4, backend=DEVICE, shots_factor=8)
    return tiny_config(corpus, **{**settings, **overrides})


@pytest.fixture(scope="module")
def circuit(tmp_path_factory):
    from conftest import make_corpus

    cfg = config(make_corpus(tmp_path_factory.mktemp("c") / "wikitext"))
    return run_circuit(cfg, tiny_gpt2())


def test_a_shift_run_is_2p_plus_1_sets_a_step_and_the_final_weights(corpus, circuit):
    cfg = config(corpus)
    cost = project(cfg, circuit)
    p, n = circuit.num_parameters, circuit.num_qubits
    shots = math.ceil(8 * 2**n)
    assert cost.costs_qpu_time and cost.device == DEVICE and not cost.what_if
    assert cost.step.sets == 2 * p + 1 and cost.step.shots == shots and cost.step.jobs == 1
    assert cost.circuit_steps() == [0, 1, 2, 3] and cost.final.sets == 1 and cost.dev is None
    per_shot = cost.step.timing.per_shot
    expected = (
        4 * ((2 * p + 1) * shots * per_shot + JOB_OVERHEAD_SECONDS) + shots * per_shot + JOB_OVERHEAD_SECONDS
    )
    assert cost.total_seconds() == pytest.approx(expected)
    assert cost.total_shots() == (4 * (2 * p + 1) + 1) * shots and cost.total_jobs() == 5
    assert cost.step_seconds(1) == pytest.approx(cost.step.seconds)
    assert cost.steps_within(cost.total_seconds(2)) == 2
    overhead = cost.total_jobs() * JOB_OVERHEAD_SECONDS  # fewer shots leave it
    budget = overhead + (cost.total_seconds() - overhead) / 3
    factor = cost.shots_factor_within(budget, 8)
    assert 0 < factor < 8 / 2
    assert project(config(corpus, shots_factor=factor), circuit).total_seconds() <= budget
    text = "\n".join(cost.table())
    for words in ("forward", "gradient: parameter shift (2P)", "final weights", "job overhead", "Open Plan"):
        assert words in text


def test_spsa_circuit_every_dev_evaluations_and_m3_are_counted(corpus, circuit):
    cfg = config(corpus, gradient="spsa", spsa_samples=2, circuit_every=3, steps=7, eval_every=3,
                 mitigation="m3")  # fmt: skip
    cost = project(cfg, circuit)
    assert cost.step.sets == 1 + 4 and cost.circuit_steps() == [0, 3, 6]
    assert cost.dev_steps() == [2, 5, 6]  # after steps 3 and 6, and after the last
    (calibration,) = cost.before
    assert calibration.sets == 8 and calibration.shots == cost.step.shots  # 8 strings for 4 qubits
    assert cost.step_seconds(1) == 0  # the mapping alone trains: no circuit
    assert cost.step_seconds(0) == pytest.approx(calibration.seconds + cost.step.seconds)
    assert cost.step_seconds(6) == pytest.approx(cost.step.seconds + cost.dev.seconds)
    assert cost.total_seconds() == pytest.approx(
        calibration.seconds + 3 * cost.step.seconds + 3 * cost.dev.seconds + cost.final.seconds
    )


def test_frozen_probabilities_are_measured_once_and_nothing_else(corpus, circuit):
    cost = project(config(corpus, probabilities="frozen"), circuit)
    assert [s.sets for s in cost.before] == [1] and cost.step is None and cost.final is None
    assert cost.total_jobs() == 1 and cost.step_seconds(0) > 0 and cost.step_seconds(1) == 0


@pytest.mark.parametrize(
    "overrides, reason",
    [
        (dict(backend="statevector", shots_factor=None), "runs here, on no QPU"),
        (dict(method="lora", backend="statevector", shots_factor=None, reps=8), "lora evaluates no circuit"),
        (dict(probabilities="softmax", shots_factor=None), "probabilities 'softmax' evaluate no circuit"),
        (dict(backend="aer_noisy:fake_manila", shots_factor=None, cost_as=DEVICE), "exact probabilities"),
    ],
)
def test_a_run_without_qpu_time_says_why(corpus, overrides, reason):
    cost = Projector().cost(config(corpus, **overrides))
    assert not cost.costs_qpu_time and reason in cost.reason and cost.total_seconds() == 0
    assert reason in cost.table()[0]


def test_cost_as_projects_a_simulator_run_as_if_on_the_device(corpus, circuit):
    on_device = project(config(corpus), circuit)
    what_if = project(config(corpus, backend="aer_noisy:fake_manila", cost_as=DEVICE), circuit)
    assert what_if.what_if and what_if.device == DEVICE
    assert what_if.total_seconds() == pytest.approx(on_device.total_seconds())
    assert "what-if" in what_if.table()[0]


def test_cost_as_an_unknown_device_names_the_known_ones(corpus, circuit):
    cfg = config(corpus, backend="aer_noisy:fake_manila", cost_as="ibm:fake_nowhere")
    with pytest.raises(
        (InputError, SpecError), match=r"cost_as 'ibm:fake_nowhere'.*Known devices: .*fake_torino"
    ):
        project(cfg, circuit)


# ---------------------------------------------------------------------- the command line
def train_args(corpus, run_dir, options: str) -> list[str]:
    return ["train", str(run_dir), *tiny_cli_args(corpus, f"--reps 1 --hidden 16 --rank 2 {options}")]


def test_qpa_train_dry_run_prints_the_projection_and_writes_nothing(corpus, tmp_path, capsys):
    before = sorted(tmp_path.rglob("*"))
    words = train_args(corpus, tmp_path / "run", f"--backend {DEVICE} --shots-factor 8 --steps 4 --dry-run")
    assert main(words) == 0
    out = capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before  # no run folder, no job store
    for words in (
        "QPU cost projection on ibm:fake_manila",
        "per circuit step: 9 sets (1 forward + 8 gradient)",
        "of the Open Plan's 10 minutes",
        "one circuit step: ours",
        "usage estimate: none",
        "not checked against a live job",
        "dry run: nothing submitted, nothing written",
    ):
        assert words in out, words


def test_a_budget_the_projection_exceeds_is_refused_before_anything_is_written(corpus, tmp_path, capsys):
    words = train_args(
        corpus, tmp_path / "run", f"--backend {DEVICE} --shots-factor 8 --steps 4 --max-qpu-seconds 5"
    )
    assert main(words) == 2
    err = capsys.readouterr().err
    assert "exceeds --max-qpu-seconds 5; nothing was written" in err and "Settings that would fit" in err
    assert "--gradient spsa" in err and not (tmp_path / "run").exists()
    assert main([*words, "--dry-run"]) == 0
    assert "budget: the run would be refused" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "lots"])
def test_a_budget_that_is_not_a_positive_number_is_one_line(corpus, tmp_path, capsys, value):
    words = train_args(
        corpus, tmp_path / "run", f"--backend {DEVICE} --shots-factor 8 --max-qpu-seconds {value}"
    )
    try:
        code = main(words)
    except SystemExit as exc:  # argparse: not a number at all
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "max_qpu_seconds must be a finite number > 0" in err or "invalid float value: 'lots'" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_dry_run_with_an_unknown_cost_as_device_is_one_line(corpus, tmp_path, capsys):
    words = train_args(corpus, tmp_path / "run", "--backend aer_noisy:fake_manila --shots-factor 8 "
                       "--cost-as ibm:fake_nowhere --dry-run")  # fmt: skip
    assert main(words) == 2
    err = capsys.readouterr().err
    assert "cost_as 'ibm:fake_nowhere'" in err and "Known devices:" in err and "fake_torino" in err
    assert not (tmp_path / "run").exists()


def test_a_budget_on_a_simulator_is_a_note_with_the_what_if(corpus, tmp_path, capsys):
    words = train_args(corpus, tmp_path / "run", "--backend aer_noisy:fake_manila --shots-factor 8 --steps 1 "
                       f"--max-qpu-seconds 1 --cost-as {DEVICE} --eval-tokens 200")  # fmt: skip
    assert main(words) == 0
    err = capsys.readouterr().err
    assert "note: --max-qpu-seconds 1 is not enforced: backend aer_noisy:fake_manila runs here" in err
    assert f"(the what-if on {DEVICE}" in err and "is over it)" in err
    assert f"what-if (--cost-as {DEVICE}): this run would take" in err
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_qpa_study_dry_run_sums_its_runs_and_writes_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "study"
    words = ["compare", "--methods", "lora", "qpa-lora", "--seeds", "0", "1", "--out", str(out),
             *tiny_cli_args(corpus, f"--reps 1 --hidden 16 --rank 2 --steps 2 --backend {DEVICE} "
                            "--shots-factor 8 --max-qpu-seconds 5 --dry-run")]  # fmt: skip
    assert main(words) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "lora-s0" in text and "none: lora evaluates no circuit" in text and "qpa-lora-s1" in text
    assert "study: 4 runs" in text and "budget: the study would be refused" in text
    assert "dry run: nothing trained, nothing written" in text


def test_a_studys_final_runs_are_counted_once_beside_its_selection(corpus):
    cfg = config(corpus)
    spec = CompareStudy(methods=("qpa-lora",), seeds=(0, 1, 2), lrs=(0.001, 0.01))
    names = [t.name for t in planned_trials(spec, cfg)]
    assert len(names) == len(set(names)) == 2 + 2  # two rates on seed 0, then seeds 1 and 2


def test_a_dry_run_says_how_many_runs_widening_may_add(corpus, tmp_path, capsys):
    out = tmp_path / "study"
    words = ["compare", "--methods", "lora", "qpa-lora", "--seeds", "0", "1", "--lrs", "1e-3", "3e-3",
             "--widen-edges", "--out", str(out), *tiny_cli_args(corpus, "--steps 2 --dry-run")]  # fmt: skip
    assert main(words) == 0
    text = capsys.readouterr().out
    assert not out.exists() and "study: 6 runs" in text
    assert "--widen-edges: up to 2 more runs may be added" in text and "known only after the" in text
    assert main(words[:words.index("--widen-edges")] + words[words.index("--widen-edges") + 1:]) == 0
    assert "--widen-edges" not in capsys.readouterr().out


def test_a_study_over_its_budget_is_refused_before_its_folder(corpus, tmp_path):
    cfg = config(corpus, max_qpu_seconds=5, steps=2)
    with pytest.raises(InputError, match="over --max-qpu-seconds 5; nothing was written"):
        CompareStudy(methods=("qpa-lora",)).run(cfg, tmp_path / "study", log=lambda m: None)
    assert not (tmp_path / "study").exists()


def documented(command: str) -> tuple[list[str], list[str]]:
    """The words of the console block of docs/ibm.md that runs `command`, and the lines it shows."""
    for block in code_blocks(page("docs/ibm.md"), "console"):
        first, *shown = block.code.rstrip("\n").splitlines()
        if first.startswith(f"$ {command}"):
            return shlex.split(first.removeprefix("$ "))[1:], shown
    raise AssertionError(f"docs/ibm.md shows no '{command}'")


@pytest.mark.slow  # loads the embedded model (its adapter's weights set the qubits)
def test_the_dry_run_docs_ibm_shows_is_what_it_prints(tmp_path, monkeypatch, capsys):
    words, shown = documented("qpa train runs/hw --backend ibm:fake_torino")
    assert "--dry-run" in words
    monkeypatch.chdir(tmp_path)
    assert main(words) == 0
    assert capsys.readouterr().out.splitlines() == shown
    assert list(tmp_path.iterdir()) == []  # nothing written
    text = "\n".join(shown)
    for figure in ("7 qubits x 8 layers, P = 56 angles", "rep_delay 250.0 us",
                   "113 sets (1 forward + 112 gradient), 289,280 shots", "30 circuit steps",
                   "31 jobs x 2 s", "of the Open Plan's 10 minutes per 28 days; 7 steps fit"):  # fmt: skip
        assert figure in text, figure


def test_the_jobs_dry_run_docs_ibm_shows_is_what_it_prints(tmp_path, monkeypatch, capsys):
    words, shown = documented("qpa jobs submit jobs/first")
    monkeypatch.chdir(tmp_path)
    np.save("theta.npy", np.random.default_rng(0).uniform(0, 2 * np.pi, (3, 56)))
    assert main(words) == 0
    assert capsys.readouterr().out.splitlines() == shown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theta.npy"]


def test_a_study_budget_that_is_not_a_positive_number_is_one_line(corpus, tmp_path, capsys):
    out = tmp_path / "study"
    words = ["compare", "--methods", "qpa-lora", "--out", str(out),
             *tiny_cli_args(corpus, f"--backend {DEVICE} --shots-factor 8 --max-qpu-seconds 0")]  # fmt: skip
    assert main(words) == 2
    assert "max_qpu_seconds must be a finite number > 0, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_what_was_assumed_is_printed_with_the_projection():
    timing = ShotTiming(250e-6, 0.0, 100e-6, ("bare states no default_rep_delay: assumed 250 us",))
    step = Submission("circuit step", (("forward", 1), ("gradient: parameter shift (2P)", 8)), 64, timing)
    cost = RunCost(3, device="ibm:bare", circuit="4 qubits", step=step, assumed=timing.assumed)
    assert "assumed: bare states no default_rep_delay: assumed 250 us" in cost.table()
