"""The benchmark script runs and prints its table (tiny sizes; the figures are not checked)."""

import re

import pytest

from qpa_qiskit import bench
from qpa_qiskit.bench.qnn import extrapolate


def test_extrapolation_uses_the_measured_growth():
    assert extrapolate([(10, 2.0)], 12, 4.0) == pytest.approx(32.0)
    assert extrapolate([(9, 1.0), (10, 8.0)], 11, 4.0) == pytest.approx(64.0)  # grew 8x a qubit
    assert extrapolate([(9, 1.0), (10, 2.0)], 11, 4.0) == pytest.approx(8.0)  # never below `growth`


@pytest.mark.slow
def test_scaling_table_runs_and_marks_extrapolated_baselines(capsys):
    bench.main(
        ["qnn", "--qubits", "3", "4", "--backends", "aer_noisy:fake_manila", "--modes", "exact", "shots",
         "--repeats", "1", "--budget", "5", "--baseline-limit", "1e-9", "--no-baseline"]
    )  # fmt: skip
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| aer_noisy:fake_manila")]
    assert len(table) == 4  # two modes x two N
    exact3, exact4 = table[0].split(" | "), table[1].split(" | ")
    assert exact3[1] == "noise_aware" and exact3[3] == "3" and exact3[4] == "24"  # layout, N, P = 8N
    assert "(n=1)" in exact3[5] and float(exact3[7]) > 0  # ours measured, with a bandwidth bound
    assert "(extrapolated)" not in exact3[9] and "(extrapolated)" in exact4[9]  # Aer beyond the limit
    assert "GB/s" in out


def test_scaling_table_puts_the_layouts_side_by_side(capsys):
    bench.main(
        ["qnn", "--qubits", "3", "--backends", "aer_noisy:fake_manila", "statevector", "--modes", "exact",
         "--layouts", "noise_aware", "preset", "--repeats", "1", "--budget", "5", "--no-baseline"]
    )  # fmt: skip
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [(r[0], r[1]) for r in rows] == [
        ("| aer_noisy:fake_manila", "noise_aware"),
        ("| aer_noisy:fake_manila", "preset"),
        ("| statevector", "-"),  # a simulator without a device: one row
    ]


@pytest.mark.slow
def test_primitives_benchmark_prints_both_qnns_side_by_side(capsys):
    bench.main(
        ["primitives", "--qubits", "2", "--backends", "aer_noisy:fake_manila",
         "--repeats", "1", "--budget", "5"]
    )  # fmt: skip
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "fake_manila" in line]
    assert len(table) == 2  # SamplerQNN and EstimatorQNN at N=2
    sampler, estimator = (line.split(" | ") for line in table)
    assert sampler[0] == "| samplerQNN" and sampler[4] == "80"  # n_shot = 20 * 2^2
    assert estimator[0] == "| estimatorQNN" and estimator[4] == "exact"
    for row in (sampler, estimator):
        assert "(n=1)" in row[5] and "(n=1)" in row[7] and float(row[9]) > 0  # both timed, a ratio
        assert "(n=1)" in row[11] and float(row[12].rstrip(" |")) > 0  # and engine='aer' beside them
    assert estimator[10].startswith("max diff") and float(estimator[10].split()[2]) < 1e-6  # same values
    assert sampler[10].startswith("TVD")


@pytest.mark.slow
def test_primitives_benchmark_on_statevector_times_aer_too(capsys):
    bench.main(["primitives", "--qubits", "2", "--backends", "statevector", "--qnns", "estimator",
                "--repeats", "1", "--budget", "5"])  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| estimatorQNN")]
    assert len(rows) == 1
    row = rows[0].split(" | ")
    assert "(n=1)" in row[5] and "(n=1)" in row[7]  # Aer's EstimatorV2 ran beside ours
    assert row[11] == "-"  # no engine='aer' column: statevector has one engine


def test_train_benchmark_puts_the_feature_cache_beside_the_full_model(capsys, corpus):
    """Both columns for an lm_head method, the body-adapting one said to be uncached, and the
    study evaluation's table (tiny model: the figures are not checked)."""
    bench.main(["train", "--model", "tiny-gpt2", "--data", str(corpus), "--methods", "lora", "ffa",
                "--steps", "1", "--epoch-steps", "1", "--block-size", "32", "--eval-runs", "2",
                "--eval-tokens", "256"])  # fmt: skip
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    assert float(rows["| lora"][3]) > 0 and rows["| lora"][4].endswith("x |")
    assert rows["| ffa"][4].startswith("not cached, the adapter is in the body")
    for mode in ("| off", "| on"):
        assert all(float(cell.rstrip(" |")) > 0 for cell in rows[mode][1:])
    assert rows["| speed-up"][2].endswith("x")


def test_train_benchmark_of_its_default_methods_on_the_tiny_model_with_the_option_its_error_names(
    capsys, corpus
):
    """Its default methods on the tiny GPT-2: the default chunk size is refused, naming the
    chunk size, which the benchmark now has an option for."""
    options = ["train", "--model", "tiny-gpt2", "--data", str(corpus), "--steps", "1", "--epoch-steps", "1",
               "--block-size", "32", "--eval-runs", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        bench.main(options)
    assert stop.value.code == 2 and "Choose a chunk size of at most 1,156" in capsys.readouterr().err
    bench.main([*options, "--chunk-size", "64"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| lora", "| qpa-lora"]


def test_eval_benchmark_puts_the_feature_cache_beside_the_full_model(capsys, corpus):
    """Each prefix on the four paths, with the load beside each, the same perplexity on every
    path (to float rounding) and the whole split extrapolated (tiny model: the seconds are not
    checked)."""
    bench.main(["eval", "--model", "tiny-gpt2", "--data", str(corpus), "--prefixes", "100", "300",
                "--block-size", "32"])  # fmt: skip
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    paths = ["full model (baseline)", "cache cold", "cache warm, memory", "cache warm, disk"]
    assert [(r[0], r[1]) for r in rows] == [(f"| {n}", p) for n in (100, 300) for p in paths]
    for prefix in (rows[:4], rows[4:]):
        assert [float(r[5]) for r in prefix] == pytest.approx([float(prefix[0][5])] * 4, rel=1e-5)
        assert all(re.fullmatch(r"[\d.]+ / [\d.]+ \|", r[6]) for r in prefix)  # the load, before / after
    assert "the whole split is 2,000 tokens" in out  # conftest's test split, tokenised
    whole = out.split("The whole test split")[1].splitlines()
    whole = [line.split(" | ") for line in whole if line.startswith("| ")]
    assert [r[0] for r in whole[1:]] == [f"| {p}" for p in paths] and all(float(r[1]) >= 0 for r in whole[1:])


def test_precision_benchmark_puts_bf16_beside_fp32(capsys, corpus):
    """Both precisions' step and scoring times with their ratio to fp32, each run's perplexities
    (bf16 near fp32's: the same run to bf16's rounding), and a profile of one step of each (tiny
    model: the seconds are not checked)."""
    bench.main(["precision", "--model", "tiny-gpt2", "--data", str(corpus), "--targets", "c_attn",
                "--steps", "2", "--warmup", "1", "--block-size", "32", "--eval-tokens", "200",
                "--eval-repeats", "1", "--profile-rows", "3"])  # fmt: skip
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| fp32", "| bf16"))]
    assert [r[0] for r in rows] == ["| fp32", "| bf16"] and rows[0][2] == "1.00x" and rows[0][4] == "1.00x"
    dev, test = ([float(r[i].strip(" |")) for r in rows] for i in (5, 6))
    assert dev[1] == pytest.approx(dev[0], rel=0.05) and test[1] == pytest.approx(test[0], rel=0.05)
    assert dev[0] != dev[1]  # bf16 autocast ran: not the fp32 figures to the bit
    assert "on c_attn" in out and out.count("Where one ") == 2
    profile = out.split("Where one bf16 step")[1].splitlines()
    assert len([line for line in profile if line.startswith("| ") and "%" in line]) == 3


TINY = {
    "qnn": ["--qubits", "2", "--backends", "statevector", "--modes", "exact", "--no-baseline"],
    "primitives": ["--qubits", "2", "--backends", "statevector", "--qnns", "estimator"],
    "train": ["--model", "tiny-gpt2", "--methods", "lora", "--epoch-steps", "1", "--block-size", "32",
              "--eval-runs", "0"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("bench_name", "option", "value"),
    [("train", "--steps", "0"), ("qnn", "--repeats", "0"), ("primitives", "--repeats", "-1")],
)
def test_a_count_below_one_is_refused_by_the_parser(capsys, corpus, bench_name, option, value):
    """--steps 0 ended in statistics' "no median for empty data" traceback after the runs had
    trained; --repeats 0 in a table of failed cells. Tiny sizes, so that without the check the
    benchmark runs (and the test fails) in seconds."""
    data = ["--data", str(corpus)] if bench_name == "train" else []
    with pytest.raises(SystemExit) as stopped:
        bench.main([bench_name, *TINY[bench_name], *data, option, value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    accepted = f"argument {option}: must be an integer >= 1, got {value}"
    assert err == f"python -m qpa_qiskit.bench {bench_name}: error: {accepted}"


def test_the_command_lists_the_benchmarks_without_importing_them():
    """``python -m qpa_qiskit.bench --help`` answers at once: no benchmark module, torch or qiskit."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "qpa_qiskit.bench", "--help"], capture_output=True, text=True, check=True
    )
    assert (
        done.stdout.startswith("usage: python -m qpa_qiskit.bench")
        and "{qnn,primitives,train,eval,precision}" in done.stdout
    )
    code = (
        "import runpy, sys\nsys.argv = ['bench', '--help']\ntry:\n"
        "    runpy.run_module('qpa_qiskit.bench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'qiskit', 'qpa_qiskit.bench.qnn', 'qpa_qiskit.bench.primitives',"
        " 'qpa_qiskit.bench.train', 'qpa_qiskit.bench.eval', 'qpa_qiskit.bench.precision')"
        " if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_documented_benchmark_command_parses():
    """Each ``python -m qpa_qiskit.bench ...`` written in the README and docs/ parses as written."""
    import re
    import shlex
    from pathlib import Path

    from qpa_qiskit.bench.command import build_parser

    repo = Path(__file__).parent.parent
    found = []
    for page in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for span in re.findall(r"`([^`]*python\s+-m\s+qpa_qiskit\.bench\b[^`]*)`", page.read_text()):
            words = shlex.split(" ".join(span.split()).split("python -m qpa_qiskit.bench", 1)[1])
            args = build_parser().parse_args(words)
            found.append((page.name, args.bench))
    benches = {"qnn", "primitives", "train", "eval", "precision"}
    assert len(found) >= 12 and {bench for _, bench in found} == benches, found
