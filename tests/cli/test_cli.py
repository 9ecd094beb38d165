"""The command line itself: start-up, spellings, contradictions, exit statuses of studies."""

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import tiny_cli_args

import qpa_qiskit
from qpa_qiskit.cli import build_parser, main
from qpa_qiskit.cli.parsing import COMMANDS, given

HEAVY = ("torch", "transformers", "peft", "qiskit", "qiskit_aer", "qiskit_ibm_runtime", "numpy")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(option):
    code = (
        "import sys\nfrom qpa_qiskit.cli import main\n"
        f"try:\n    main([{option!r}])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_help_is_fast_and_python_m_works():
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "qpa_qiskit", "--help"], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        seconds.append(time.perf_counter() - start)
        assert done.returncode == 0 and "usage: qpa" in done.stdout
    assert sorted(seconds)[1] < 3.0, seconds  # about 0.1 s; torch alone takes over 1 s
    done = subprocess.run([sys.executable, "-m", "qpa_qiskit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"qpa-qiskit {qpa_qiskit.__version__}"


def test_the_package_exports_on_first_use():
    done = run_python(
        "import sys, qpa_qiskit\nassert 'torch' not in sys.modules\n"
        "from qpa_qiskit import QPABackend, RunConfig\nprint(QPABackend.__module__, RunConfig.__module__)\n"
        "assert set(qpa_qiskit.__all__) <= set(dir(qpa_qiskit))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["qpa_qiskit.backends.core", "qpa_qiskit.train.run_config"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        qpa_qiskit.nothing  # noqa: B018


def _helps(parser):
    """The help of `parser` and of every sub-parser below it."""
    yield parser.format_help()
    for action in parser._actions:
        for sub in getattr(action, "_name_parser_map", {}).values():
            yield from _helps(sub)


def test_help_shows_one_spelling_and_both_are_accepted():
    texts = list(_helps(build_parser()))
    assert len(texts) > 20
    for text in texts:
        assert not re.findall(r"--[a-z0-9-]*_[a-z0-9_]*", text), text
    assert any("--train-tokens" in t for t in texts) and any("--no-gate-error" in t for t in texts)
    parser = build_parser(["train"])
    for spelling in ("--train_tokens", "--train-tokens"):
        args = parser.parse_args(["train", "run", spelling, "5", "--no_gate_error"])
        assert args.train_tokens == 5 and args.gate_error is False


def test_every_command_is_listed_and_parses_with_its_own_module_only():
    listed = build_parser([]).format_help()
    for name, (_, text) in COMMANDS.items():
        assert name in listed and text.split()[0] in listed
    # a command's parser is the same whether built alone or with all the others
    for name in COMMANDS:
        alone = build_parser([name])._subparsers._group_actions[0].choices[name].format_help()
        everything = build_parser()._subparsers._group_actions[0].choices[name].format_help()
        assert alone == everything


def test_given_options_are_told_from_defaults_in_one_parse():
    args = build_parser(["train"]).parse_args(["train", "r", "--steps", "7", "--gate-error", "true"])
    assert {"steps", "gate_error"} <= given(args) and "lr" not in given(args)
    assert args.lr == 1e-3  # defaults are still filled in
    args = build_parser(["study"]).parse_args(["study", "shots"])
    assert args.steps == 20 and not given(args) & {"steps", "eval_tokens"}


@pytest.mark.parametrize(
    "options, first, second",
    [
        (["--gate-error", "true", "--no-gate-error"], "--gate-error", "--no-gate-error"),
        (["--no_readout_error", "--readout-error"], "--no_readout_error", "--readout-error"),  # as given
        (["--steps", "3", "--steps", "5"], "--steps 3", "--steps"),
        (["--method", "lora", "--method", "dora"], "--method lora", "--method"),
    ],
)
def test_contradictory_options_are_refused_naming_both(tmp_path, capsys, options, first, second):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "r"), *options])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {second}: contradicts {first}" in err and "give only one" in err
    assert not (tmp_path / "r").exists()


def test_the_same_value_twice_is_not_a_contradiction():
    options = ["--steps", "3", "--steps", "3", "--no-gate-error", "--gate-error", "false"]
    args = build_parser(["train"]).parse_args(["train", "r", *options])
    assert args.steps == 3 and args.gate_error is False


@pytest.mark.parametrize(
    "options, match",
    [
        (["--show", "-1"], "argument --show: must be an integer >= 1, got -1"),
        (["--show", "0"], "argument --show: must be an integer >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["--show", "two"], "argument --show: must be an integer >= 1, got 'two'"),
    ],
)
def test_demo_refuses_numbers_out_of_range(capsys, options, match):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *options])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(match)


# --------------------------------------------------------------------------- studies' exit statuses
def compare_args(corpus, out, *methods):
    options = "--steps 1 --rank 2 --eval-tokens 200 --eval-window 64 --eval-stride 48"
    args = tiny_cli_args(corpus, options)
    if any(m.startswith(("qpa-", "lowrank-")) for m in methods):
        args += ["--reps", "1", "--hidden", "8"]
    else:  # generator options are refused where no method has a generator
        at = args.index("--chunk-size")
        del args[at : at + 2]
    return ["compare", *args, "--methods", *methods, "--out", str(out)]


def error_lines(err: str) -> list[str]:
    """The lines of stderr from qpa itself (not the progress bar, nor the runs' progress log)."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("qpa:")]


def test_failed_runs_make_compare_exit_non_zero_and_say_which(corpus, tmp_path, monkeypatch, capsys):
    import qpa_qiskit.studies.executors as executors
    from qpa_qiskit.errors import InputError
    from qpa_qiskit.studies.runner import RESULT

    real = executors.run_trial

    def failing(study_dir, trial, **kwargs):
        if trial.name == "dora":  # refused before its folder exists: deterministic
            raise InputError("rank 2 does not suit this made-up check; accepted: rank 1")
        if trial.name == "qpa-lora":  # a crash once the run was trained: worth retrying
            real(study_dir, trial, **kwargs)
            (study_dir / trial.name / RESULT).unlink()
            raise RuntimeError("the device caught fire")
        return real(study_dir, trial, **kwargs)

    monkeypatch.setattr(executors, "run_trial", failing)
    out = tmp_path / "c"
    assert main(compare_args(corpus, out, "lora", "dora", "qpa-lora")) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    dora = next(line for line in lines if line.startswith("failed: dora"))
    assert "made-up check" in dora and "error.txt" not in dora.replace("no error.txt", "")
    assert "never created" in dora and "deterministic" in dora and "retries" not in dora
    qpa = next(line for line in lines if line.startswith("failed: qpa-lora"))
    assert "caught fire" in qpa and str(out / "qpa-lora" / "error.txt") in qpa and "retries" in qpa
    assert (out / "qpa-lora" / "error.txt").exists() and not (out / "dora").exists()
    err = error_lines(captured.err)
    assert len(err) == 1 and err[0].startswith("qpa: error: 2 of 3 runs failed")
    assert "change the settings that dora refused" in err[0] and "retry qpa-lora" in err[0]
    assert json.loads((out / "results.json").read_text())["failed"] == ["dora", "qpa-lora"]

    monkeypatch.undo()  # the same command again: qpa-lora is evaluated, dora (refused only here) trained
    assert main(compare_args(corpus, out, "lora", "dora", "qpa-lora")) == 0
    assert json.loads((out / "results.json").read_text())["failed"] == []


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_a_corrupt_study_record_is_one_line_naming_it(corpus, tmp_path, capsys, content):
    out = tmp_path / "c"
    out.mkdir()
    (out / "study.json").write_text(content)
    assert main(compare_args(corpus, out, "lora")) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert err[0].startswith("qpa: error:") and str(out / "study.json") in err[0] and "--out" in err[0]


def test_a_corrupt_base_result_is_one_line_naming_it(corpus, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(compare_args(corpus, out, "lora")) == 0
    (out / "base.json").write_text("{")
    capsys.readouterr()
    assert main(compare_args(corpus, out, "lora")) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and str(out / "base.json") in err[0] and "delete it" in err[0]


def test_main_builds_the_run_options_once(monkeypatch, tmp_path):
    import qpa_qiskit.cli.runs as runs

    calls = []
    real = runs.config_options
    monkeypatch.setattr(runs, "config_options", lambda **kw: calls.append(kw) or real(**kw))
    build_parser(["train"])
    once = len(calls)
    calls.clear()
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "r"), "--steps", "x"])  # refused by the parse: nothing trains
    assert len(calls) == once > 0
