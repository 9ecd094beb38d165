"""The benchmark script runs and prints its table (tiny sizes; the figures are not checked)."""

import pytest

from qpa_qiskit import bench


def test_extrapolation_uses_the_measured_growth():
    assert bench._extrapolate([(10, 2.0)], 12, 4.0) == pytest.approx(32.0)
    assert bench._extrapolate([(9, 1.0), (10, 8.0)], 11, 4.0) == pytest.approx(64.0)  # grew 8x a qubit
    assert bench._extrapolate([(9, 1.0), (10, 2.0)], 11, 4.0) == pytest.approx(8.0)  # never below `growth`


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
    assert exact3[2] == "3" and exact3[3] == "24"  # N, P = 8N
    assert "(n=1)" in exact3[4] and float(exact3[6]) > 0  # ours measured, with a bandwidth bound
    assert "(extrapolated)" not in exact3[8] and "(extrapolated)" in exact4[8]  # Aer beyond the limit
    assert "GB/s" in out
