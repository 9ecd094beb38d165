"""Bad input and faults of studies: the whole grid is checked before any run trains, every grid
option names itself, a Ray cluster that cannot be reached is refused quickly, one study process
per folder, strict JSON, and run files that cannot be written."""

import builtins
import json
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config

from qpa_qiskit import InputError
from qpa_qiskit.cli import main
from qpa_qiskit.errors import BusyError, StateError
from qpa_qiskit.files import exclusive, json_bytes
from qpa_qiskit.studies.ablation import study_ablation
from qpa_qiskit.studies.common import grid_values, parameter_list, parameter_mapping, write_results
from qpa_qiskit.studies.compare import compare
from qpa_qiskit.studies.executors import LocalExecutor, RayExecutor
from qpa_qiskit.studies.noise import study_noise
from qpa_qiskit.studies.params import study_params
from qpa_qiskit.studies.runner import ERROR, RESULT, STUDY, STUDY_LOCK
from qpa_qiskit.studies.shots import study_shots
from qpa_qiskit.train import Run

QUIET = dict(log=lambda m: None)
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "ideal_vs_noisy.ipynb"


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 1, "reps": 1, "hidden": [8], "eval_tokens": 200, **overrides})


def noise(corpus, out, base=None, **kwargs):
    grid = dict(backends=["statevector"], rotations=["ry"], shots_factors=[None], tvd_samples=1)
    return study_noise(base or small(corpus), out, **{**grid, **kwargs}, **QUIET)


# ------------------------------------------------------------------ the whole grid, first
@pytest.mark.parametrize(
    "study, match",
    [
        (
            lambda c, out: noise(
                c, out, backends=["statevector", "aer_noisy:fake_manila"], noise_scales=[1, 1000]
            ),
            r"1 of the study's 4 runs cannot run.*fake_manila-ry-x1000: noise_scale=1000 makes a probability "
            r"invalid .*allow noise_scale <= ",
        ),
        (
            lambda c, out: noise(
                c,
                out,
                base=small(c, layout="preset", chunk_size=8),
                backends=["statevector", "aer_noisy:brisbane"],
                noise_scales=[1, 3],
                mitigations=["m3"],
            ),
            r"1 of the study's 4 runs cannot run.*brisbane-ry-x3-m3: bit 5 reads 0 as often from 1 as from 0 "
            r".*readout carries no information",
        ),
        (
            lambda c, out: noise(c, out, chunk_sizes=[64, 10**7]),
            r"ideal-ry-k10000000: chunk_size 10,000,000 is larger than the 578 weights",
        ),
        (
            lambda c, out: study_params(
                small(c),
                out,
                methods=["lora", "prefix"],
                ranks=[1],
                prefix_tokens=[2, 5000],
                chunk_sizes=[64],
                lrs="none",
                target_sets=["lm_head"],
                **QUIET,
            ),
            r"1 of the study's 3 runs cannot run.*prefix-p5000: block_size 32 and eval_window 64 with the "
            r"5000 prefix tokens .*use --prefix-tokens at most 192",
        ),
        (
            lambda c, out: study_params(
                small(c),
                out,
                methods=["lora", "qpa-lora", "ia3"],
                ranks=[1],
                chunk_sizes=[64],
                reps_methods=[],
                target_sets=["lm_head", "c_attn,q_proj"],  # tiny-gpt2 has no q_proj
                lrs="none",
                **QUIET,
            ),
            r"2 of the study's 5 runs cannot run.*lora-r1-c_attn\+q_proj, qpa-lora-k64-L1-c_attn\+q_proj: "
            r"target module\(s\) \['q_proj'\] not found in the model; candidates: c_attn, c_fc, c_proj, "
            r"lm_head, wpe, wte\. The study's targets are --target-sets \(now lm_head c_attn,q_proj\)",
        ),
        (
            lambda c, out: compare(small(c, prefix_tokens=250), out, methods=["lora", "prefix"], **QUIET),
            r"1 of the study's 2 runs .*prefix: .*--prefix-tokens at most 192",
        ),
        (
            lambda c, out: study_shots(
                small(c, chunk_size=10**7), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET
            ),
            r"2 of the study's 2 runs cannot run.*exact, c2-none: chunk_size 10,000,000",
        ),
        (
            lambda c, out: study_ablation(
                small(c, chunk_size=10**7),
                out,
                regimes=["fixed:mlp"],
                controls=["circuit"],
                lora_ranks=[1],
                counterfactuals=[],
                **QUIET,
            ),
            r"1 of the study's 2 runs cannot run.*fixed-mlp-circuit: chunk_size 10,000,000",
        ),
    ],
    ids=[
        "noise-scale",
        "m3-faulty-qubit",
        "chunk-size",
        "params-prefix",
        "params-targets",
        "compare-prefix",
        "shots-chunk",
        "ablation-chunk",
    ],
)
def test_the_whole_grid_is_checked_before_any_run_trains(corpus, tmp_path, study, match):
    out = tmp_path / "s"
    with pytest.raises(InputError, match=match):
        study(corpus, out)
    assert not out.exists()  # nothing trained, not even a study.json


def test_a_grid_checked_once_per_setting_not_per_seed(corpus, tmp_path, monkeypatch):
    import qpa_qiskit.train as train

    calls = []
    real = train.check_config
    monkeypatch.setattr(train, "check_config", lambda cfg, *a, **k: (calls.append(cfg), real(cfg, *a, **k)))
    noise(corpus, tmp_path / "s", seeds=[0, 1, 2])
    assert len(calls) == 2  # LoRA and the ideal run, each for three seeds


# ------------------------------------------------------------------ TVD samples, strict JSON
@pytest.mark.parametrize("samples", [0, -3, 1.5, True])
def test_tvd_samples_must_be_positive(corpus, tmp_path, samples):
    with pytest.raises(InputError, match=r"tvd_samples \(--tvd-samples\) must be a positive integer"):
        study_shots(
            small(corpus), tmp_path / "a", shots_factors=[2], modes=["none"], tvd_samples=samples, **QUIET
        )
    with pytest.raises(InputError, match=r"tvd_samples \(--tvd-samples\) must be a positive integer"):
        noise(corpus, tmp_path / "b", tvd_samples=samples)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_results_are_strict_json(corpus, tmp_path):
    with pytest.raises(InputError, match=r"rows\[0\]\.tvd = nan.*nothing was written"):
        write_results(tmp_path, small(corpus), [0], [{"tvd": float("nan")}], [], {})
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(InputError, match=r"a\.b\[1\] = inf"):
        json_bytes({"a": {"b": [1.0, float("inf")]}}, "x")
    assert json.loads(json_bytes({"a": [1.5, None]}, "x")) == {"a": [1.5, None]}


# ------------------------------------------------------------------ grid options
@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda c, o: compare(c, o, methods=["lora", "lora"], **QUIET),
            r"methods \(--methods\) lists 'lora'",
        ),
        (lambda c, o: study_shots(c, o, shots_factors=[2, 2], **QUIET), r"shots_factors \(--shots-factors\)"),
        (lambda c, o: study_shots(c, o, modes=["gi", "gi"], **QUIET), r"modes \(--modes\) lists 'gi'"),
        (lambda c, o: study_shots(c, o, seeds=[1, 1], **QUIET), r"seeds \(--seeds\) lists 1 more than once"),
        (lambda c, o: noise(c, o, noise_scales=[1, 1.0]), r"noise_scales \(--noise-scales\) lists 1\.0"),
        (
            lambda c, o: noise(c, o, backends=["statevector"] * 2),
            r"backends \(--backends\) lists 'statevector'",
        ),
        (lambda c, o: noise(c, o, chunk_sizes=[64, 64]), r"chunk_sizes \(--chunk-sizes\)"),
        (lambda c, o: noise(c, o, mitigations=["m3", "m3"]), r"mitigations \(--mitigations\) lists 'm3'"),
        (lambda c, o: noise(c, o, mitigations=["zne"]), r"mitigations.*none, m3"),
        (lambda c, o: noise(c, o, margin=0), r"margin must be a finite number > 0"),
        (
            lambda c, o: study_noise(
                small(c, backend="aer_noisy:fake_manila", readout_error=False),
                o,
                backends=["aer_noisy:fake_manila"],
                mitigations=["none", "m3"],
                **QUIET,
            ),
            r"--no-readout-error simulates none",
        ),
        (lambda c, o: study_shots(c, o, margin=float("nan"), **QUIET), r"margin must be a finite number > 0"),
        (
            lambda c, o: study_params(c, o, prefix_tokens=[2, 2], **QUIET),
            r"\(--prefix-token-counts\) lists 2",
        ),
        (lambda c, o: study_params(c, o, reps=[1, 1], **QUIET), r"reps \(--reps-values\) lists 1"),
        (lambda c, o: study_ablation(c, o, regimes=["fixed:mlp"] * 2, **QUIET), r"regimes \(--regimes\)"),
        (
            lambda c, o: study_ablation(c, o, lora_ranks=[1, 1], **QUIET),
            r"lora_ranks \(--lora-ranks\) lists 1",
        ),
        # a string is one value, never its characters
        (
            lambda c, o: noise(c, o, backends="statevector"),
            r"backends \(--backends\) must be a list.*\['statev",
        ),
        (lambda c, o: noise(c, o, rotations="ry"), r"rotations \(--rotations\) must be a list of values"),
        (lambda c, o: study_shots(c, o, seeds="01", **QUIET), r"seeds \(--seeds\) must be a list of values"),
        (lambda c, o: compare(c, o, methods="lora", **QUIET), r"methods \(--methods\) must be a list"),
    ],
)
def test_grid_options_name_themselves(corpus, tmp_path, call, match):
    with pytest.raises(InputError, match=match):
        call(small(corpus), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_duplicates_on_the_command_line_name_the_option(capsys):
    assert main(["compare", "--methods", "lora", "lora"]) == 2
    assert "methods (--methods) lists 'lora' more than once" in capsys.readouterr().err
    assert main(["study", "shots", "--shots-factors", "2", "2"]) == 2
    assert "(--shots-factors) lists 2.0 more than once" in capsys.readouterr().err


def test_grid_values():
    assert grid_values((3, 1), "ranks") == [3, 1]
    assert grid_values([], "lora_ranks", allow_empty=True) == []
    with pytest.raises(InputError, match=r"lora_ranks \(--lora-ranks\) must list at least one value"):
        grid_values([], "lora_ranks")


def test_notebook_parameters_given_as_strings():
    assert parameter_list("aer_noisy:brisbane", "devices") == ["aer_noisy:brisbane"]
    assert parameter_list("aer_noisy:brisbane, aer_noisy:torino", "devices") == [
        "aer_noisy:brisbane", "aer_noisy:torino"
    ]  # fmt: skip
    assert parameter_list(0, "seeds", int) == [0]
    assert parameter_list("0 1 2", "seeds", int) == [0, 1, 2]
    assert parameter_list(("ry",), "rotations") == ["ry"]
    with pytest.raises(InputError, match="seeds must be a list of int values"):
        parameter_list("zero", "seeds", int)
    assert parameter_mapping('{"chunk_size": 64}', "settings") == {"chunk_size": 64}
    assert parameter_mapping("", "settings") == {}
    with pytest.raises(InputError, match="settings must be a mapping of settings"):
        parameter_mapping("[1, 2]", "settings")
    # the notebook reads every list parameter through them, before its first use
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = "".join(cells[2]["source"])
    lines = [
        'devices = parameter_list(devices, "devices")',
        "rotations = parameter_list(rotations, ",
        'seeds = parameter_list(seeds, "seeds", int)',
        "settings = parameter_mapping(settings,",
    ]
    for line in lines:
        assert line in code
    assert code.index("parameter_list(devices") < code.index("RunConfig().replace")


# ------------------------------------------------------------------ Ray
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_ray_cluster_is_refused_quickly_and_leaves_nothing(corpus, tmp_path, scheme):
    pytest.importorskip("ray")
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(InputError, match=f"cannot reach the Ray cluster at {address} .*ray start --head"):
        study_shots(
            small(corpus),
            tmp_path / "s",
            shots_factors=[2],
            modes=["none"],
            tvd_samples=1,
            executor=RayExecutor(address),
            **QUIET,
        )
    assert time.monotonic() - start < 30
    assert not (tmp_path / "s").exists()  # no study.json


def test_ray_client_without_its_extra_is_refused_by_name(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setitem(sys.modules, "grpc", None)  # ray[client] not installed
    with pytest.raises(InputError, match=r"needs ray\[client\]: pip install 'qpa-qiskit\[ray\]'"):
        RayExecutor("ray://127.0.0.1:10001").prepare()


def test_ray_addresses_are_checked():
    for address in ("127.0.0.1", "host:port", "ray://:10001", "127.0.0.1:0"):
        with pytest.raises(InputError, match="--address must be 'auto', host:port"):
            RayExecutor(address)._reachable()


def test_the_ray_extra_installs_what_ray_client_needs():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert any(r.startswith("ray[client]") for r in pyproject["project"]["optional-dependencies"]["ray"])


# ------------------------------------------------------------------ one study per folder
def test_a_second_study_process_on_a_folder_is_refused(corpus, tmp_path):
    out = tmp_path / "s"
    study_shots(small(corpus), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET)
    (out / "c2-none" / RESULT).unlink()  # a run left to do
    busy = f"another process is running the study in {out}"
    with exclusive(out / STUDY_LOCK, "held"), pytest.raises(BusyError, match=busy):
        study_shots(small(corpus), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET)
    assert not (out / "c2-none" / ERROR).exists()  # no false failure recorded
    study_shots(small(corpus), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET)
    assert json.loads((out / "results.json").read_text())["failed"] == []


def test_a_trial_is_never_both_failed_and_finished(corpus, tmp_path, monkeypatch):
    out = tmp_path / "s"
    real = LocalExecutor._run

    def finished_elsewhere(self, study_dir, trials, progress):
        real(self, study_dir, trials, progress)
        return {trials[0].name: "busy"}  # as if another writer finished it meanwhile

    monkeypatch.setattr(LocalExecutor, "_run", finished_elsewhere)
    study_shots(small(corpus), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET)
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == [] and len(results["trials"]) == 2


def test_a_folder_with_only_a_lock_is_a_new_study(corpus, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / STUDY_LOCK).touch()
    study_shots(small(corpus), out, shots_factors=[2], modes=["none"], tvd_samples=1, **QUIET)
    assert (out / STUDY).exists()


# ------------------------------------------------------------------ options that do not apply
@pytest.mark.parametrize(
    "method, option, takes",
    [
        ("ia3", "--rank", "--targets"),
        ("prefix", "--rank", "--prefix-tokens"),
        ("lora", "--bottleneck", "--dropout, --lora-alpha, --rank, --targets"),
        ("ffa", "--prefix-tokens", "--bottleneck"),
    ],
)
def test_an_option_the_method_ignores_is_refused(corpus, tmp_path, capsys, method, option, takes):
    args = ["train", str(tmp_path / "r"), "--model", "tiny-gpt2", "--data", str(corpus), "--method", method,
            option, "8"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{option} does not apply to {method}" in err and f"{method} take(s) {takes}" in err
    assert not (tmp_path / "r").exists()


def test_options_of_a_study_apply_to_any_of_its_methods(corpus, capsys):
    assert main(["compare", "--methods", "ia3", "prefix", "--rank", "8"]) == 2
    assert "--rank does not apply to ia3, prefix" in capsys.readouterr().err
    assert main(["compare", "--methods", "lora", "ia3", "--chunk-size", "64"]) == 2
    assert "--chunk-size sets the generator of the qpa-* and lowrank-* methods" in capsys.readouterr().err
    assert main(["study", "shots", "--prefix-tokens", "4"]) == 2
    assert "--prefix-tokens does not apply to qpa-lora" in capsys.readouterr().err


def test_the_eval_window_hint_names_its_option(corpus, tmp_path):
    match = r"eval_window 250 with the 8 prefix tokens .*use --eval-window at most 248"
    with pytest.raises(InputError, match=match):
        Run.create(tmp_path / "r", small(corpus, method="prefix", prefix_tokens=8, eval_window=250))
    with pytest.raises(InputError, match=r"use --prefix-tokens at most 192$"):
        Run.create(tmp_path / "r", small(corpus, method="prefix", prefix_tokens=5000))
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ run files that cannot be written
def test_a_read_only_metrics_file_mid_run_is_a_clear_error(corpus, tmp_path, monkeypatch):
    import qpa_qiskit.train.folder as run_folder

    with Run.create(tmp_path / "r", small(corpus, steps=4, save_every=1)) as run:
        run.train_step()
        run.save()
        kept = (tmp_path / "r" / "metrics.jsonl").read_text()

        def read_only(path, mode="r", *args, **kwargs):
            if str(path).endswith("metrics.jsonl") and mode != "r":
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, mode, *args, **kwargs)

        monkeypatch.setattr(run_folder, "open", read_only, raising=False)
        with pytest.raises(StateError, match=r"cannot append step 2 to .*metrics.jsonl \(PermissionError.*"
                                             r"earlier metric lines are intact.*--resume"):  # fmt: skip
            run.train(progress=False)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == kept
    monkeypatch.undo()
    with Run.open(tmp_path / "r") as run:
        assert run.step == 1
        run.train(progress=False)
        assert run.step == 4


def test_data_too_short_for_a_block_is_found_before_any_run(corpus, tmp_path):
    match = r"2 of the study's 2 runs .*10 tokens are fewer than one block of 32"
    with pytest.raises(InputError, match=match):
        study_shots(
            small(corpus, train_tokens=10),
            tmp_path / "s",
            shots_factors=[2],
            modes=["none"],
            tvd_samples=1,
            **QUIET,
        )
    assert not (tmp_path / "s").exists()
