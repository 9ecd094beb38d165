"""``qpa study params``: the grid over methods and sizes, the peer reading, plots, resume,
and its bad input."""

import json
import math

import pytest
from conftest import tiny_cli_args, tiny_config

from qpa_qiskit import InputError
from qpa_qiskit.cli import main
from qpa_qiskit.studies.params import params_rows, study_params
from qpa_qiskit.studies.runner import RESULT
from qpa_qiskit.train import Run, evaluate_run

QUIET = dict(log=lambda m: None)
GRID = dict(
    ranks=(1, 2),
    vera_ranks=(4,),
    prefix_tokens=(2,),
    bottlenecks=(4,),
    chunk_sizes=(32, 64, 128),
    reps=(1, 2),
    seeds=(0, 1),
    lrs="none",  # every run at the configuration's lr (test_selection.py tests the default, family)
)


def small(corpus, **overrides):
    return tiny_config(corpus, **{"steps": 2, "reps": 2, "hidden": [8], "eval_tokens": 300, **overrides})


@pytest.mark.slow
def test_params_study_grid_rows_and_plots(corpus, tmp_path):
    out = tmp_path / "s"
    rows = study_params(small(corpus), out, **GRID, **QUIET)
    names = sorted(p.parent.name for p in out.glob(f"*/{RESULT}"))
    # classical: lora x2, dora x2, prefix, ffa, vera, ia3 = 8 settings; QPA: lora 3 chunks + L=1
    # (L=2 is the config's and already there), dora 3 chunks, prefix and ffa at the middle one
    assert len(names) == (8 + 4 + 3 + 1 + 1) * 2
    assert {"lora-r2-s1", "ia3-s0", "prefix-p2-s0", "ffa-b4-s1", "vera-r4-s0", "qpa-lora-k64-L1-s0",
            "qpa-dora-k128-L2-s1", "qpa-prefix-k64-L2-s0", "qpa-ffa-k64-L2-s1"} <= set(names)  # fmt: skip
    assert "qpa-prefix-k32-L2-s0" not in names  # only --chunk-methods sweep the chunk sizes
    results = json.loads((out / "results.json").read_text())
    by_name = {t["name"]: t for t in results["trials"]}
    assert by_name["qpa-ffa-k64-L2-s0"]["perplexity"] == evaluate_run(out / "qpa-ffa-k64-L2-s0")["perplexity"]
    # QPA runs that differ in the chunk size share their data order and the seed's streams
    with Run.open(out / "qpa-lora-k32-L2-s0", for_training=False) as a:
        with Run.open(out / "qpa-lora-k64-L2-s0", for_training=False) as b:
            assert a.cfg.changes(b.cfg) == {"chunk_size": (32, 64)}
    assert len(rows) == 17
    qpa = {(r["method"], r["chunk_size"], r["reps"]): r for r in rows if r["method"].startswith("qpa-")}
    # more chunks, more qubits, fewer mapping outputs: fewer trainable parameters
    lora = [qpa[("qpa-lora", k, 2)] for k in (32, 64, 128)]
    assert [r["qubits"] for r in lora] == [5, 4, 3]  # 578 weights: 19, 10 and 5 chunks
    assert lora[0]["trainable"] < lora[1]["trainable"] < lora[2]["trainable"]
    classical = [r for r in rows if not r["method"].startswith("qpa-")]
    for r in qpa.values():  # the peer is the classical row nearest in trainable parameters (log scale)
        nearest = min(abs(math.log(c["trainable"] / r["trainable"])) for c in classical)
        assert abs(math.log(r["peer_trainable"] / r["trainable"])) == nearest
        assert r["vs_peer_pairs"] == 2
    text = (out / "results.md").read_text()
    assert "| qpa-lora k=32 L=2 |" in text and "| ia3 |" in text and "nearest classical peer" in text
    for plot in ("params.png", "qubits.png", "reps.png"):
        assert (out / plot).stat().st_size > 10_000
    # run again: every run is read back, nothing trains, the same results
    again = study_params(small(corpus), out, **GRID, **QUIET)
    assert again == rows
    assert json.loads((out / "results.json").read_text()) == results


def test_the_peer_difference_is_paired_by_seed():
    def result(method, seed, ppl, trainable, size=None, chunk=None, reps=None):
        return {"axes": {"method": method, "size": size, "chunk_size": chunk, "reps": reps, "seed": seed},
                "perplexity": ppl, "counts": {"trainable": trainable}}  # fmt: skip

    results = [
        result("lora", 0, 20.0, 1000, size=1), result("lora", 1, 22.0, 1000, size=1),
        result("lora", 0, 19.0, 100_000, size=16), result("lora", 1, 21.0, 100_000, size=16),
        result("qpa-lora", 0, 19.5, 1500, size=4, chunk=64, reps=8),
        result("qpa-lora", 1, 21.5, 1500, size=4, chunk=64, reps=8),
    ]  # fmt: skip
    rows = params_rows(results, ["lora", "qpa-lora"])
    quantum = rows[-1]
    assert quantum["peer"] == "lora r=1" and quantum["peer_trainable"] == 1000
    assert quantum["vs_peer"] == pytest.approx(-0.5) and quantum["vs_peer_std"] == pytest.approx(0.0)
    assert quantum["own"] == "lora r=1" and quantum["vs_own_pairs"] == 2
    results += [result("dora", 0, 18.0, 1400, size=1), result("dora", 1, 22.0, 1400, size=1)]
    quantum = params_rows(results, ["lora", "dora", "qpa-lora"])[-1]
    assert quantum["peer"] == "dora r=1" and quantum["vs_peer"] == pytest.approx(0.5)
    assert quantum["vs_peer_std"] == pytest.approx(2**0.5)  # the sample std of +1.5 and -0.5
    assert quantum["own"] == "lora r=1" and quantum["vs_own"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(methods=["lora", "lora"]), r"methods \(--methods\) lists 'lora' more than once"),
        (dict(methods=["lora", "qlora"]), "methods must be one of"),
        (dict(ranks=[0]), "ranks must be a positive integer"),
        (dict(chunk_sizes=[]), r"chunk_sizes \(--chunk-sizes\) must list at least one value"),
        (dict(reps_methods=["lora"]), "reps_methods must be one of qpa-dora, qpa-ffa"),
        (dict(ranks=[64]), r"rank 64 is out of range for lm_head"),
        (dict(seeds=[1, 1]), r"seeds \(--seeds\) lists 1 more than once"),
    ],
)
def test_bad_input_is_refused_before_any_run(corpus, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        study_params(small(corpus), tmp_path / "s", **{**GRID, **kwargs}, **QUIET)
    assert not (tmp_path / "s").exists() or not any(p.is_dir() for p in (tmp_path / "s").iterdir())


def test_cli(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    args = tiny_cli_args(corpus, f"--steps 1 --reps-values 1 --eval-tokens 200 --seeds 0 --out {out} "
                                 "--methods lora qpa-lora qpa-dora ia3 --ranks 1 --chunk-sizes 32 64 "
                                 "--chunk-methods qpa-dora --lrs none")  # fmt: skip
    at = args.index("--chunk-size")  # the grid sets it: here it would abbreviate --chunk-sizes
    del args[at : at + 2]
    assert main(["study", "params", *args]) == 0
    printed = capsys.readouterr().out
    assert "| qpa-lora k=64 L=8 |" in printed and "| qpa-lora k=64 L=1 |" in printed and "| ia3 |" in printed
    assert "| qpa-dora k=32 L=8 |" in printed and "| qpa-lora k=32 L=8 |" not in printed  # --chunk-methods
    assert (out / "results.md").exists() and (out / "reps.png").exists()
