"""``python -m qpa_qiskit.bench qnn``: the quantum layer's scaling table.

One forward+backward training step of :class:`QuantumProbabilities` for N qubits, exact
(adjoint gradients) and shot mode (parameter shift), with its time and peak memory, beside ONE
circuit of Aer's own method (density matrix for noisy backends) and qiskit-machine-learning's
``SamplerQNN`` + ``TorchConnector`` step on the same ISA circuit, noise model and shots; each
cell runs in a process of its own. For our noisy cells it also prints a lower bound: the bytes
the engine reads and writes per step divided by the memory bandwidth measured in the same run.
A baseline predicted to take longer than ``--baseline-limit`` is extrapolated from its measured
growth, and marked so.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ..backends import QPABackend, family_class, measured_qubits
from ..circuits import ansatz
from ..qnn import QuantumProbabilities
from .cells import in_child, peak_rss, ratio, require_qml, show_memory, show_seconds, time_steps


def memory_bandwidth(size_mb: int = 512, repeats: int = 7) -> float:
    """Bytes per second a tensor copy moves (read + write), median over repeats."""
    src = torch.ones(size_mb * 2**20 // 8, dtype=torch.float64)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 8 / statistics.median(times)


def _placed(spec: str, layout: str) -> dict[str, str]:
    """The layout option of a backend that places its circuit on a device (none for statevector)."""
    return {"layout": layout} if family_class(spec).needs_device else {}


def _layer_step(spec: str, layout: str, circuit, init: np.ndarray, shots_factor: float | None):
    backend = QPABackend(spec, shots_factor=shots_factor, seed=1, **_placed(spec, layout))
    layer = QuantumProbabilities(backend, circuit, init=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=layer.n_outcomes))

    def step() -> None:
        layer.zero_grad()
        (layer() @ upstream).backward()

    return step, layer.gradient, backend.program(circuit)


def _aer_circuit(spec: str, layout: str, circuit, init: np.ndarray):
    """Aer's own method on the same ISA circuit and noise model: ONE exact circuit."""
    # lazy: qiskit-aer (seconds), only where Aer itself runs
    from qiskit_aer import AerSimulator

    backend = QPABackend(spec, **_placed(spec, layout))
    isa = backend.isa_circuit(circuit)
    exact = isa.remove_final_measurements(inplace=False)
    exact.save_probabilities(measured_qubits(isa))
    if family_class(spec).has_noise_model:
        sim = AerSimulator(method="density_matrix", noise_model=backend.noise_model)
    else:
        sim = AerSimulator(method="statevector")
    bound = exact.assign_parameters(dict(zip(circuit.parameters, init, strict=True)))

    def step() -> None:
        sim.run(bound).result()

    return step


def _qml_step(spec: str, layout: str, circuit, init: np.ndarray, shots: int):
    """qiskit-machine-learning's SamplerQNN + TorchConnector (Aer SamplerV2), same ISA and noise."""
    # lazy: qiskit-aer (seconds), only where Aer itself runs
    from qiskit_aer.primitives import SamplerV2

    connectors, neural_networks = require_qml("the SamplerQNN + TorchConnector baseline")
    TorchConnector, SamplerQNN = connectors.TorchConnector, neural_networks.SamplerQNN

    backend = QPABackend(spec, **_placed(spec, layout))
    isa = backend.isa_circuit(circuit)
    noisy = family_class(spec).has_noise_model
    options = {"backend_options": {"noise_model": backend.noise_model}} if noisy else {}
    sampler = SamplerV2(default_shots=shots, seed=1, options=options)
    qnn = SamplerQNN(circuit=isa, sampler=sampler, weight_params=list(isa.parameters))
    model = TorchConnector(
        qnn, initial_weights=init[[list(circuit.parameters).index(p) for p in isa.parameters]]
    )
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=2**isa.num_clbits)).float()

    def step() -> None:
        model.zero_grad()
        (model(torch.empty(0)).reshape(-1) @ upstream).backward()

    return step


def _cell(
    kind: str, spec: str, layout: str, n: int, reps: int, mode: str, c: float, repeats: int, budget: float
) -> dict:
    """One cell of the scaling table, in a process of its own (so its peak memory is its own)."""
    circuit = ansatz(n, reps)
    init = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
    out: dict = {"P": circuit.num_parameters}
    if kind == "ours":
        step, gradient, program = _layer_step(spec, layout, circuit, init, None if mode == "exact" else c)
        out["gradient"] = gradient
    elif kind == "aer":
        step = _aer_circuit(spec, layout, circuit, init)
    else:
        step = _qml_step(spec, layout, circuit, init, int(np.ceil(c * 2**n)))
    before = None if kind != "ours" or program is None else program.bytes_moved
    seconds, samples, first = time_steps(step, repeats, budget)
    out.update(seconds=seconds, samples=samples, first=first, peak_rss=peak_rss())
    if before is not None:
        out["bytes_per_step"] = (program.bytes_moved - before) / (samples + 1)
    return out


def extrapolate(history: list[tuple[int, float]], n: int, growth: float) -> float:
    """Seconds at n from the last measured points (their own growth per qubit, else `growth`)."""
    (n1, t1) = history[-1]
    if len(history) >= 2:
        n0, t0 = history[-2]
        growth = max(growth, (t1 / t0) ** (1 / (n1 - n0)))
    return t1 * growth ** (n - n1)


def bench_qnn(args: argparse.Namespace) -> None:
    """The scaling table: each (backend, layout, mode, N) a row of our cell, Aer's circuit and
    (shot mode) the SamplerQNN baseline, each measured in a process of its own."""
    modes = args.modes
    bandwidth = memory_bandwidth()
    print(
        f"One training step (forward + backward) of QuantumProbabilities, reps={args.reps}, "
        f"c={args.shots_factor} (n_shot = c 2^N) in shot mode, torch threads={torch.get_num_threads()}; "
        f"medians over up to {args.repeats} steps after a warm-up; memory bandwidth (tensor copy) "
        f"{bandwidth / 1e9:.1f} GB/s.",
        flush=True,
    )
    rows = []
    history: dict[tuple[str, str, str, str], list[tuple[int, float]]] = {}
    aer_cells: dict[tuple[str, str, int], dict] = {}
    cells = [
        (spec, layout)
        for spec in args.backends
        for layout in (args.layouts if family_class(spec).needs_device else ["-"])
    ]
    for spec, layout in cells:
        for mode in modes:
            for n in args.qubits:
                row = {"spec": spec, "layout": layout, "mode": mode, "N": n}
                row["ours"] = in_child(_cell, "ours", spec, layout, n, args.reps, mode, args.shots_factor,
                                       args.repeats, args.budget)  # fmt: skip
                kinds = ["aer"] + (["qml"] if mode == "shots" and not args.no_baseline else [])
                for kind in kinds:
                    if kind == "aer" and (spec, layout, n) in aer_cells:  # the same circuit in both modes
                        row[kind] = aer_cells[(spec, layout, n)]
                        continue
                    past = history.setdefault((spec, layout, mode, kind), [])
                    growth = 4.0 if family_class(spec).has_noise_model else 2.0
                    guess = extrapolate(past, n, growth) if past else 0.0
                    if guess > args.baseline_limit:
                        row[kind] = {"seconds": guess, "extrapolated": True}
                    else:
                        row[kind] = in_child(_cell, kind, spec, layout, n, args.reps, mode,
                                             args.shots_factor, args.repeats, args.budget)  # fmt: skip
                        if "seconds" in row[kind]:
                            past.append((n, row[kind]["seconds"]))
                    if kind == "aer":
                        aer_cells[(spec, layout, n)] = row[kind]
                rows.append(row)
                print("  " + _scaling_line(row, bandwidth), flush=True)
    print()
    print(_scaling_table(rows, bandwidth))


def _scaling_line(row: dict, bandwidth: float) -> str:
    return (
        " | ".join(
            f"{k}: {show_seconds(row[k])} s, {show_memory(row[k])} GiB"
            for k in ("ours", "aer", "qml")
            if k in row
        )
        + f"  [{row['spec']} {row['layout']} {row['mode']} N={row['N']}]"
    )


def _scaling_table(rows: list[dict], bandwidth: float) -> str:
    lines = [
        "| backend | layout | mode | N | P | ours s/step | ours peak GiB | bound s | ours / bound | "
        "Aer one circuit s | Aer peak GiB | ours step / Aer circuit | "
        "SamplerQNN+TorchConnector s/step | its peak GiB | its step / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    for row in rows:
        ours, aer, qml = row["ours"], row["aer"], row.get("qml", {})
        bound = ours["bytes_per_step"] / bandwidth if ours.get("bytes_per_step") else None
        t = ours.get("seconds")
        lines.append(
            f"| {row['spec']} | {row['layout']} | {row['mode']} | {row['N']} | {ours.get('P', '-')} | "
            f"{show_seconds(ours)} | "
            f"{show_memory(ours)} | {f'{bound:.3g}' if bound else '-'} | {ratio(t, bound, 2)} | "
            f"{show_seconds(aer)} | {show_memory(aer)} | {ratio(t, aer.get('seconds'), 2)} | "
            f"{show_seconds(qml) if qml else '-'} | "
            f"{show_memory(qml)} | {ratio(qml.get('seconds'), t, 2)} |"
        )
    return "\n".join(lines)
