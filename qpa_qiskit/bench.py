"""Benchmarks, run as scripts: ``python -m qpa_qiskit.bench qnn``, ``... bench primitives`` and
``... bench train``.

``qnn`` prints a scaling table: one forward+backward training step of
:class:`QuantumProbabilities` for N qubits, exact (adjoint gradients) and shot mode
(parameter shift), with its time and peak memory, beside ONE circuit of Aer's own method
(density matrix for noisy backends) and qiskit-machine-learning's ``SamplerQNN`` +
``TorchConnector`` step on the same ISA circuit, noise model and shots; each cell runs in a
process of its own. For our noisy cells it also prints a lower bound: the bytes the engine
reads and writes per step divided by the memory bandwidth measured in the same run. A
baseline predicted to take longer than ``--baseline-limit`` is extrapolated from its
measured growth, and marked so. ``primitives`` times one qiskit-machine-learning QNN
training step (SamplerQNN and EstimatorQNN with TorchConnector) on :mod:`qpa_qiskit.primitives`
against the same QNN on Aer's V2 primitives, same ISA circuit, noise model and shots. ``train``
times optimiser steps of ``qpa-lora`` against ``lora`` on the same model, targets, data and
batch (median of several steps after a warm-up), with the frozen body's feature cache
(:mod:`qpa_qiskit.features`) off and on, then a study's evaluation of several runs, off and on.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .cli.parsing import integer
from .errors import DependencyError, QPAError

QML = "qiskit-machine-learning"


def require_qml(what: str) -> tuple[Any, Any]:
    """qiskit-machine-learning's ``connectors`` and ``neural_networks`` modules, which only the
    QNN benchmarks use; DependencyError naming the extra that installs them otherwise."""
    try:
        # lazy: optional dependency (the dev and bench extras)
        import qiskit_machine_learning.connectors as connectors
        import qiskit_machine_learning.neural_networks as neural_networks
    except ImportError as exc:
        raise DependencyError(
            f"{what} needs {QML}, an optional dependency that is not installed ({exc}); install it "
            f"with pip install 'qpa-qiskit[bench]' (or pip install {QML})"
        ) from None
    return connectors, neural_networks


def _time_steps(step: Callable[[], None], repeats: int, budget_s: float) -> tuple[float, int, float]:
    """(median seconds, samples, first-call seconds). The first call is a warm-up unless a
    single call already takes half the budget, in which case it is the only sample."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    if first > budget_s / 2:
        return first, 1, first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if sum(times) + first > budget_s and len(times) >= 1:
            break
    return statistics.median(times), len(times), first


def _peak_rss() -> int:
    """Peak resident memory of this process, bytes: VmHWM (getrusage's ru_maxrss would carry
    the parent's peak into a spawned child on Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _placed(spec: str, layout: str) -> dict[str, str]:
    """The layout option of a backend that places its circuit on a device (none for statevector)."""
    return {} if spec == "statevector" else {"layout": layout}


def _layer_step(spec: str, layout: str, circuit, init: np.ndarray, shots_factor: float | None):
    # lazy: each cell runs in a spawned process of its own and reports its peak memory
    from .backends import QPABackend
    from .qnn import QuantumProbabilities

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

    # lazy: each cell runs in a spawned process of its own and reports its peak memory
    from .backends import QPABackend, measured_qubits

    backend = QPABackend(spec, **_placed(spec, layout))
    isa = backend.isa_circuit(circuit)
    exact = isa.remove_final_measurements(inplace=False)
    exact.save_probabilities(measured_qubits(isa))
    if spec == "statevector":
        sim = AerSimulator(method="statevector")
    else:
        sim = AerSimulator(method="density_matrix", noise_model=backend.noise_model)
    bound = exact.assign_parameters(dict(zip(circuit.parameters, init, strict=True)))

    def step() -> None:
        sim.run(bound).result()

    return step


def _qml_step(spec: str, layout: str, circuit, init: np.ndarray, shots: int):
    """qiskit-machine-learning's SamplerQNN + TorchConnector (Aer SamplerV2), same ISA and noise."""
    # lazy: qiskit-aer (seconds), only where Aer itself runs
    from qiskit_aer.primitives import SamplerV2

    # lazy: each cell runs in a spawned process of its own and reports its peak memory
    from .backends import QPABackend

    connectors, neural_networks = require_qml("the SamplerQNN + TorchConnector baseline")
    TorchConnector, SamplerQNN = connectors.TorchConnector, neural_networks.SamplerQNN

    backend = QPABackend(spec, **_placed(spec, layout))
    isa = backend.isa_circuit(circuit)
    options = {} if spec == "statevector" else {"backend_options": {"noise_model": backend.noise_model}}
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
    # lazy: each cell runs in a spawned process of its own and reports its peak memory
    from .circuits import ansatz

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
    seconds, samples, first = _time_steps(step, repeats, budget)
    out.update(seconds=seconds, samples=samples, first=first, peak_rss=_peak_rss())
    if before is not None:
        out["bytes_per_step"] = (program.bytes_moved - before) / (samples + 1)
    return out


def _in_child(*args, cell: Callable[..., dict] = _cell) -> dict:
    """Run `cell` in a fresh process; an error or a kill is reported, not raised."""

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        try:
            return pool.apply(cell, args)
        except Exception as exc:  # a baseline that fails is a row that says so
            return {"error": f"{type(exc).__name__}: {exc}"}


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


def _extrapolate(history: list[tuple[int, float]], n: int, growth: float) -> float:
    """Seconds at n from the last measured points (their own growth per qubit, else `growth`)."""
    (n1, t1) = history[-1]
    if len(history) >= 2:
        n0, t0 = history[-2]
        growth = max(growth, (t1 / t0) ** (1 / (n1 - n0)))
    return t1 * growth ** (n - n1)


def bench_qnn(args: argparse.Namespace) -> None:
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
        for layout in (args.layouts if spec != "statevector" else ["-"])
    ]
    for spec, layout in cells:
        for mode in modes:
            for n in args.qubits:
                row = {"spec": spec, "layout": layout, "mode": mode, "N": n}
                row["ours"] = _in_child(
                    "ours", spec, layout, n, args.reps, mode, args.shots_factor, args.repeats, args.budget
                )
                kinds = ["aer"] + (["qml"] if mode == "shots" and not args.no_baseline else [])
                for kind in kinds:
                    if kind == "aer" and (spec, layout, n) in aer_cells:  # the same circuit in both modes
                        row[kind] = aer_cells[(spec, layout, n)]
                        continue
                    past = history.setdefault((spec, layout, mode, kind), [])
                    growth = 2.0 if spec == "statevector" else 4.0
                    guess = _extrapolate(past, n, growth) if past else 0.0
                    if guess > args.baseline_limit:
                        row[kind] = {"seconds": guess, "extrapolated": True}
                    else:
                        row[kind] = _in_child(kind, spec, layout, n, args.reps, mode, args.shots_factor,
                                              args.repeats, args.budget)  # fmt: skip
                        if "seconds" in row[kind]:
                            past.append((n, row[kind]["seconds"]))
                    if kind == "aer":
                        aer_cells[(spec, layout, n)] = row[kind]
                rows.append(row)
                print("  " + _scaling_line(row, bandwidth), flush=True)
    print()
    print(_scaling_table(rows, bandwidth))


def _seconds(cell: dict) -> str:
    if "error" in cell:
        return "failed"
    mark = "~" if cell.get("extrapolated") else ""
    tail = " (extrapolated)" if cell.get("extrapolated") else f" (n={cell['samples']})"
    return f"{mark}{cell['seconds']:.3g}{tail}"


def _memory(cell: dict) -> str:
    return f"{cell['peak_rss'] / 2**30:.2f}" if "peak_rss" in cell else "-"


def _ratio(a: float | None, b: float | None, digits: int) -> str:
    """a / b to `digits` significant digits, or "-" where either is missing."""
    return f"{a / b:.{digits}g}" if a and b else "-"


def _scaling_line(row: dict, bandwidth: float) -> str:
    return (
        " | ".join(
            f"{k}: {_seconds(row[k])} s, {_memory(row[k])} GiB" for k in ("ours", "aer", "qml") if k in row
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
            f"{_seconds(ours)} | "
            f"{_memory(ours)} | {f'{bound:.3g}' if bound else '-'} | {_ratio(t, bound, 2)} | "
            f"{_seconds(aer)} | {_memory(aer)} | {_ratio(t, aer.get('seconds'), 2)} | "
            f"{_seconds(qml) if qml else '-'} | "
            f"{_memory(qml)} | {_ratio(qml.get('seconds'), t, 2)} |"
        )
    return "\n".join(lines)


def _primitive_cell(
    kind: str, qnn_kind: str, spec: str, n: int, reps: int, c: float, repeats: int, budget: float
) -> dict:
    """One QNN training step in a process of its own, on our primitives ("ours"), on Aer's V2
    primitives ("aer"), or on our primitives over a backend with ``engine="aer"`` ("aer-engine":
    Aer's density-matrix method used as well as it can be: one exact circuit per parameter
    set, the expectation values saved on the observable's qubits only).

    All get the same ISA circuit (transpiled once by our backend) and noise model; the
    sampler takes n_shot = ceil(c 2^N) shots, the estimator is exact (precision 0).
    """

    # lazy: a qiskit submodule (import time), only on this path
    from qiskit.quantum_info import SparsePauliOp

    # lazy: each cell runs in a spawned process of its own and reports its peak memory
    from .backends import QPABackend, measured_qubits
    from .circuits import ansatz
    from .primitives import Estimator, Sampler

    connectors, neural_networks = require_qml("python -m qpa_qiskit.bench primitives")
    TorchConnector = connectors.TorchConnector
    EstimatorQNN, SamplerQNN = neural_networks.EstimatorQNN, neural_networks.SamplerQNN

    warnings.simplefilter("ignore")  # QML's and torch's notes on every call would drown the table
    backend = QPABackend(spec)
    ours = QPABackend(spec, engine="aer") if kind == "aer-engine" else backend
    circuit = ansatz(n, reps)
    isa = backend.isa_circuit(circuit)  # measured: clbit i reads virtual qubit i
    shots = int(np.ceil(c * 2**n))
    model = backend.noise_model
    aer_backend = {} if model is None else {"noise_model": model}
    if qnn_kind == "sampler":
        if kind != "aer":
            sampler = Sampler(ours, default_shots=shots, seed=1)
        else:
            # lazy: qiskit-aer (seconds), only where Aer itself runs
            from qiskit_aer.primitives import SamplerV2

            sampler = SamplerV2(default_shots=shots, seed=1, options={"backend_options": aer_backend})
        qnn = SamplerQNN(circuit=isa, sampler=sampler, weight_params=list(isa.parameters))
        outputs = 2**n
    else:
        bare = isa.remove_final_measurements(inplace=False)
        physical = measured_qubits(isa)
        observable = SparsePauliOp.from_sparse_list(
            [("Z", [physical[q]], 1.0 / n) for q in range(n)], bare.num_qubits
        )  # the mean of Z over the circuit's qubits, where they ended
        if kind != "aer":
            estimator = Estimator(ours)
        else:
            # lazy: qiskit-aer (seconds), only where Aer itself runs
            from qiskit_aer.primitives import EstimatorV2

            options = {"method": "density_matrix", **aer_backend} if model is not None else {}
            estimator = EstimatorV2(options={"backend_options": options})
        qnn = EstimatorQNN(
            circuit=bare,
            observables=observable,
            estimator=estimator,
            weight_params=list(bare.parameters),
            default_precision=0.0,
        )
        outputs = 1
    init = np.random.default_rng(0).uniform(0, 2 * np.pi, len(isa.parameters))
    net = TorchConnector(qnn, initial_weights=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=outputs)).float()
    forward: list[np.ndarray] = []

    def step() -> None:
        net.zero_grad()
        out = net(torch.empty(0)).reshape(-1)
        (out @ upstream).backward()
        forward.append(out.detach().numpy().astype(float))

    seconds, samples, first = _time_steps(step, repeats, budget)
    return {
        "P": len(isa.parameters), "shots": shots if qnn_kind == "sampler" else None,
        "seconds": seconds, "samples": samples, "first": first, "peak_rss": _peak_rss(),
        "forward": forward[0].tolist(), "gradient": net.weight.grad.numpy().astype(float).tolist(),
    }  # fmt: skip


def bench_primitives(args: argparse.Namespace) -> None:
    print(
        f"One qiskit-machine-learning training step (TorchConnector forward + backward, parameter-shift "
        f"gradients: 2P + 1 parameter sets) on qpa_qiskit.primitives and on Aer's V2 primitives, the same "
        f"ISA circuit (ansatz reps={args.reps}) and noise model; SamplerQNN with n_shot = "
        f"{args.shots_factor:g} 2^N shots, EstimatorQNN exact (precision 0, mean of Z); "
        f"torch threads={torch.get_num_threads()}; "
        f"medians over up to {args.repeats} steps after a warm-up.",
        flush=True,
    )
    rows = []
    for spec in args.backends:
        for qnn_kind in args.qnns:
            for n in args.qubits:
                row = {"spec": spec, "qnn": qnn_kind, "N": n}
                kinds = ("ours", "aer") + (
                    ("aer-engine",) if args.aer_engine and spec != "statevector" else ()
                )
                for kind in kinds:
                    row[kind] = _in_child(
                        kind, qnn_kind, spec, n, args.reps, args.shots_factor, args.repeats, args.budget,
                        cell=_primitive_cell,
                    )  # fmt: skip
                rows.append(row)
                print("  " + _primitives_line(row), flush=True)
    print()
    print(_primitives_table(rows))


def _agreement(row: dict) -> str:
    """How far apart the two first forward passes are: max |difference| (exact estimator) or
    the total variation distance of the two sampled distributions (sampler)."""
    ours, aer = row["ours"].get("forward"), row["aer"].get("forward")
    if ours is None or aer is None:
        return "-"
    ours, aer = np.asarray(ours), np.asarray(aer)
    if row["qnn"] == "sampler":
        return f"TVD {np.abs(ours - aer).sum() / 2:.3g}"
    return f"max diff {np.abs(ours - aer).max():.2g}"


def _primitives_line(row: dict) -> str:
    return (
        " | ".join(
            f"{k}: {_seconds(row[k])} s, {_memory(row[k])} GiB"
            for k in ("ours", "aer", "aer-engine")
            if k in row
        )
        + f" | {_agreement(row)}  [{row['qnn']}QNN {row['spec']} N={row['N']}]"
    )


def _primitives_table(rows: list[dict]) -> str:
    lines = [
        "| QNN | backend | N | P | shots | ours s/step | ours peak GiB | Aer s/step | Aer peak GiB | "
        "Aer / ours | first forward, ours vs Aer | engine='aer' s/step | engine='aer' / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    for row in rows:
        ours, aer, best = row["ours"], row["aer"], row.get("aer-engine")
        t = ours.get("seconds")
        shots = ours.get("shots") or aer.get("shots") or "exact"
        n_params = ours.get("P", aer.get("P", "-"))
        lines.append(
            f"| {row['qnn']}QNN | {row['spec']} | {row['N']} | {n_params} | {shots} | {_seconds(ours)} | "
            f"{_memory(ours)} | {_seconds(aer)} | {_memory(aer)} | {_ratio(aer.get('seconds'), t, 3)} | "
            f"{_agreement(row)} | {_seconds(best) if best else '-'} | "
            f"{_ratio(best.get('seconds'), t, 3) if best else '-'} |"
        )
    return "\n".join(lines)


def _train_cells(base, texts, args: argparse.Namespace, method: str) -> tuple[float, float | None, bool]:
    """(median seconds per optimiser step with the feature cache off, on (None: not measured),
    whether the cached path ran) of one method. The two runs train side by side, their steps
    interleaved, so a load that comes and goes on the machine falls on both alike. The
    training data is `--epoch-steps` steps long and the warm-up is one epoch: the timed steps
    are the steady state of a run past its first epoch (and of a study's later runs, which
    find the blocks stored)."""
    # lazy: the training stack, only when this benchmark runs
    from .config import RunConfig
    from .train import Run

    generated = method.startswith("qpa-")
    base.features.clear()
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for cache in (False, True) if args.cache else (False,):
            cfg = RunConfig().replace(
                model=args.model, data=args.data, method=method, backend=args.backend,
                chunk_size=args.chunk_size, shots_factor=args.shots_factor if generated else None,
                steps=args.epoch_steps + args.steps,
                batch_size=args.batch_size, block_size=args.block_size, save_every=10**9, feature_cache=cache,
                device=args.device, train_tokens=args.batch_size * args.block_size * args.epoch_steps,
            )  # fmt: skip
            runs.append(
                Run.create(f"{tmp}/{cache}", cfg, loaded=base.fresh_copy(), texts=texts, log=lambda m: None)
            )
        times: list[list[float]] = [[] for _ in runs]
        first: list[list[float]] = [[] for _ in runs]  # the first epoch's steps after the first one
        try:
            for step in range(args.epoch_steps + args.steps):
                for run, seconds, warm in zip(runs, times, first, strict=True):
                    record = run.train_step()  # the first epoch is the warm-up: first touches, blocks stored
                    (seconds if step >= args.epoch_steps else warm if step else []).append(record["seconds"])
        finally:
            for run in runs:
                run.close()
    medians = [statistics.median(t) for t in times]
    if args.epoch_steps > 1:
        shown = ", ".join(f"{statistics.median(w):.3f}" for w in first)
        print(f"  {method}, first epoch (blocks not yet stored), steps 2-{args.epoch_steps}: {shown} s/step "
              "(cache off, on)", flush=True)  # fmt: skip
    return (
        medians[0],
        medians[1] if len(medians) > 1 else None,
        len(runs) > 1 and runs[1].features is not None,
    )


def _eval_cells(base, texts, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Seconds of each of `--eval-runs` runs' test evaluations on one evaluation stream, with
    the feature cache off and on, one loaded model, as a study's runs are evaluated one after
    another (the first run with the cache computes and stores the body's hidden states of
    every window); run by run, off and on interleaved."""
    # lazy: the training stack, only when this benchmark runs
    from .config import RunConfig
    from .train import Run

    base.features.clear()
    seconds: tuple[list[float], list[float]] = ([], [])
    for seed in range(args.eval_runs):
        for cache, out in zip((False, True), seconds, strict=True):
            cfg = RunConfig().replace(
                model=args.model, data=args.data, method=args.eval_method, seed=seed, feature_cache=cache,
                device=args.device, block_size=args.block_size, train_tokens=args.block_size,
                eval_tokens=args.eval_tokens,
            )  # fmt: skip
            with (
                tempfile.TemporaryDirectory() as tmp,
                Run.create(
                    f"{tmp}/run", cfg, loaded=base.fresh_copy(), texts=texts, log=lambda m: None
                ) as run,
            ):
                start = time.perf_counter()
                run.evaluate()
                out.append(time.perf_counter() - start)
    return seconds


def bench_train(args: argparse.Namespace) -> None:
    """Seconds per optimiser step of each method on the same model, targets, data and batch,
    with the frozen body's feature cache off (the body runs at every step) and on; then a
    study's evaluation of several runs, cache off and on."""

    # lazy: the model and data, only when this benchmark runs
    from .data import load_wikitext
    from .models import load_model

    base = load_model(args.model)
    texts = load_wikitext(args.data, log=lambda msg: None)
    print(f"{args.model}, batch {args.batch_size}x{args.block_size}, backend {args.backend}, lm_head r=4, "
          f"torch threads={torch.get_num_threads()}; medians of {args.steps} steps after a warm-up epoch "
          f"of {args.epoch_steps} steps, cache off and on trained side by side", flush=True)  # fmt: skip
    results = {}
    for method in args.methods:
        off, on, cached = _train_cells(base, texts, args, method)
        results[method] = (off, on, cached)
        shown = "-" if on is None else f"{on:.3f}"
        print(f"  {method}: {off:.3f} s/step, cache on {shown} s/step", flush=True)
    reference = results.get("lora", (None,))[0]
    print()
    print(f"({args.model}, --device {args.device}, batch {args.batch_size}x{args.block_size}, backend "
          f"{args.backend}, lm_head r=4)")  # fmt: skip
    print("| method | s/step | vs lora | s/step, feature cache on | cache speed-up |")
    print("|---|---|---|---|---|")
    for method, (off, on, cached) in results.items():
        ratio = f"{off / reference:.2f}x" if reference else "-"
        if on is None:
            speedup = "-"
        else:
            noise = f"not cached, the adapter is in the body: the same path ({off / on:.2f}x is timing noise)"
            speedup = f"{off / on:.2f}x" if cached else noise
        print(f"| {method} | {off:.3f} | {ratio} | {'-' if on is None else f'{on:.3f}'} | {speedup} |")
    if not args.cache or args.eval_runs < 1:
        return
    print()
    print(f"A study's evaluation: {args.eval_runs} {args.eval_method} runs' test perplexity, one loaded "
          f"model, {args.eval_tokens} tokens (window 256, stride 192)", flush=True)  # fmt: skip
    off, on = _eval_cells(base, texts, args)
    rest_off = statistics.median(off[1:] or off)
    rest_on = statistics.median(on[1:] or on)
    print("| feature cache | first run s | later runs s (median) | all runs s |")
    print("|---|---|---|---|")
    print(f"| off | {off[0]:.3f} | {rest_off:.3f} | {sum(off):.3f} |")
    print(f"| on | {on[0]:.3f} | {rest_on:.3f} | {sum(on):.3f} |")
    print(f"| speed-up | {off[0] / on[0]:.2f}x | {rest_off / rest_on:.2f}x | {sum(off) / sum(on):.2f}x |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qpa_qiskit.bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("qnn", help="scaling table: our step against Aer and SamplerQNN + TorchConnector")
    p.add_argument("--qubits", type=int, nargs="+", default=list(range(4, 14)))
    p.add_argument("--backends", nargs="+", default=["aer_noisy:fake_brisbane", "statevector"])
    p.add_argument("--modes", nargs="+", choices=["exact", "shots"], default=["exact", "shots"])
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--shots-factor", type=float, default=20.0)
    p.add_argument("--repeats", type=integer(1), default=5, help="timed steps per cell (after a warm-up)")
    p.add_argument("--budget", type=float, default=240.0, help="seconds per cell before stopping early")
    p.add_argument(
        "--baseline-limit",
        type=float,
        default=600.0,
        help="a baseline predicted to take longer than this (s) is extrapolated, not run",
    )
    p.add_argument("--no-baseline", action="store_true", help="leave out SamplerQNN + TorchConnector")
    p.add_argument(
        "--layouts",
        nargs="+",
        choices=["noise_aware", "preset"],
        default=["noise_aware"],
        help="where a device backend places the circuit (rows side by side; statevector has none)",
    )
    p.set_defaults(func=bench_qnn)
    p = sub.add_parser("primitives", help="a QML QNN training step on our V2 primitives against Aer's")
    p.add_argument("--qubits", type=int, nargs="+", default=[7, 10])
    p.add_argument("--backends", nargs="+", default=["aer_noisy:fake_brisbane"])
    p.add_argument("--qnns", nargs="+", choices=["sampler", "estimator"], default=["sampler", "estimator"])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--shots-factor", type=float, default=20.0)
    p.add_argument("--repeats", type=integer(1), default=3, help="timed steps per cell (after a warm-up)")
    p.add_argument("--budget", type=float, default=240.0, help="seconds per cell before stopping early")
    p.add_argument(
        "--no-aer-engine",
        dest="aer_engine",
        action="store_false",
        help="leave out our primitives over engine='aer' (Aer's density matrix used at its best)",
    )
    p.set_defaults(func=bench_primitives)
    p = sub.add_parser("train", help="training step time of qpa-lora against lora, feature cache off and on")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="hub", help="'hub' or a WikiText-2 folder")
    p.add_argument("--methods", nargs="+", default=["lora", "qpa-lora"])
    p.add_argument("--backend", default="statevector")
    p.add_argument("--shots-factor", type=float, default=None)
    p.add_argument("--chunk-size", type=int, default=2048, help="qpa-lora's chunk size (tiny models: less)")
    p.add_argument("--steps", type=integer(1), default=10, help="timed steps after the warm-up epoch, >= 1")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="the runs' --device (auto: a CUDA device if any)")
    p.add_argument("--epoch-steps", type=int, default=2, help="steps per epoch: the warm-up, blocks stored")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="leave out the feature cache")
    p.add_argument("--eval-runs", type=int, default=4, help="runs of the study evaluation (0: leave it out)")
    p.add_argument("--eval-method", default="lora")
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.set_defaults(func=bench_train)
    args = parser.parse_args(argv)
    try:
        if args.bench == "primitives":
            require_qml("python -m qpa_qiskit.bench primitives")
        elif args.bench == "qnn" and not args.no_baseline:
            require_qml("the SamplerQNN + TorchConnector baseline of bench qnn (--no-baseline leaves it out)")
        args.func(args)
    except QPAError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
