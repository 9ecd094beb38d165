"""Benchmarks, run as scripts: ``python -m qpa_qiskit.bench qnn`` and ``... bench train``.

``qnn`` times one forward+backward training step of :class:`QuantumProbabilities` against
qiskit-machine-learning's ``SamplerQNN`` + ``TorchConnector`` on the same circuit, the same
ISA transpilation, the same shots and the same noise model, side by side in one run, and
prints medians and ratios. ``train`` times optimiser steps of ``qpa-lora`` against ``lora``
on the same model, targets, data and batch (median of several steps after a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


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


def _ours(spec: str, circuit, init: np.ndarray, shots_factor: float):
    from .backends import QPABackend
    from .qnn import QuantumProbabilities

    layer = QuantumProbabilities(QPABackend(spec, shots_factor=shots_factor, seed=1), circuit, init=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=layer.n_outcomes))

    def step() -> None:
        layer.zero_grad()
        (layer() @ upstream).backward()

    return step


def _baseline(spec: str, circuit, init: np.ndarray, shots: int):
    from qiskit_aer.primitives import SamplerV2
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import SamplerQNN

    from .backends import fake_device, noise_model

    if spec == "statevector":
        sampler = SamplerV2(default_shots=shots, seed=1)
        pass_manager = None
    else:
        from qiskit.transpiler import generate_preset_pass_manager

        device_name = spec.split(":", 1)[1]
        sampler = SamplerV2(
            default_shots=shots,
            seed=1,
            options={"backend_options": {"noise_model": noise_model(device_name)}},
        )
        pass_manager = generate_preset_pass_manager(
            optimization_level=1, backend=fake_device(device_name), seed_transpiler=0
        )
    qnn = SamplerQNN(
        circuit=circuit, sampler=sampler, weight_params=list(circuit.parameters), pass_manager=pass_manager
    )
    model = TorchConnector(qnn, initial_weights=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=2**circuit.num_clbits)).float()

    def step() -> None:
        model.zero_grad()
        (model(torch.empty(0)).reshape(-1) @ upstream).backward()

    return step


def bench_qnn(args: argparse.Namespace) -> None:
    from .backends import QPABackend
    from .circuits import ansatz

    specs = ["statevector", f"aer_noisy:{args.device}"]
    rows = []
    print(
        f"One training step (forward + parameter-shift backward), reps={args.reps}, "
        f"shots = ceil({args.shots_factor} * 2^N), torch threads={torch.get_num_threads()}; "
        f"medians over up to {args.repeats} steps after a warm-up step.",
        flush=True,
    )
    for n in args.qubits:
        circuit = ansatz(n, args.reps)
        init = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
        for spec in specs:
            ours, n_ours, _ = _time_steps(
                _ours(spec, circuit, init, args.shots_factor), args.repeats, args.budget
            )
            print(f"  N={n} {spec}: qpa-qiskit {ours:.3f} s (n={n_ours})", flush=True)
            if args.no_baseline:
                base, n_base = float("nan"), 0
            else:
                shots = QPABackend("statevector", shots_factor=args.shots_factor).num_shots(n)
                base, n_base, _ = _time_steps(
                    _baseline(spec, circuit, init, shots), args.repeats, args.budget
                )
                print(f"  N={n} {spec}: SamplerQNN+TorchConnector {base:.3f} s (n={n_base})", flush=True)
            rows.append((n, circuit.num_parameters, spec, ours, n_ours, base, n_base))
    print()
    print("| N | P | backend | qpa-qiskit s/step | baseline s/step | speed-up |")
    print("|---|---|---|---|---|---|")
    for n, p, spec, ours, n_ours, base, n_base in rows:
        print(
            f"| {n} | {p} | {spec} | {ours:.3f} (n={n_ours}) | {base:.2f} (n={n_base}) | {base / ours:.0f}x |"
        )


def bench_train(args: argparse.Namespace) -> None:
    """Seconds per optimiser step of each method on the same model, targets, data and batch."""
    import tempfile

    from .config import RunConfig
    from .data import load_wikitext
    from .models import load_model
    from .train import Run

    base = load_model(args.model)
    texts = load_wikitext(args.data, log=lambda msg: None)
    results = {}
    for method in args.methods:
        generated = method.startswith("qpa-")
        cfg = RunConfig().replace(
            model=args.model, data=args.data, method=method, backend=args.backend,
            shots_factor=args.shots_factor if generated else None, steps=args.steps + 1,
            batch_size=args.batch_size, block_size=args.block_size, save_every=10**9,
        )  # fmt: skip
        with (
            tempfile.TemporaryDirectory() as tmp,
            Run.create(f"{tmp}/run", cfg, loaded=base.fresh_copy(), texts=texts) as run,
        ):
            run.train_step()  # warm-up: first touches, caches
            times = [run.train_step()["seconds"] for _ in range(args.steps)]
        results[method] = statistics.median(times)
        print(f"  {method}: {results[method]:.3f} s/step (median of {args.steps})", flush=True)
    reference = results.get("lora")
    print()
    print(f"| method | s/step | vs lora |  ({args.model}, batch {args.batch_size}x{args.block_size}, "
          f"backend {args.backend}, lm_head r=4)")  # fmt: skip
    print("|---|---|---|")
    for method, seconds in results.items():
        ratio = f"{seconds / reference:.2f}x" if reference else "-"
        print(f"| {method} | {seconds:.3f} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qpa_qiskit.bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("qnn", help="QuantumProbabilities step vs SamplerQNN + TorchConnector")
    p.add_argument("--qubits", type=int, nargs="+", default=[7, 10])
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--shots-factor", type=float, default=20.0)
    p.add_argument("--device", default="fake_brisbane")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per cell (after a warm-up)")
    p.add_argument("--budget", type=float, default=240.0, help="seconds per cell before stopping early")
    p.add_argument("--no-baseline", action="store_true", help="time qpa-qiskit only")
    p.set_defaults(func=bench_qnn)
    p = sub.add_parser("train", help="training step time of qpa-lora against lora")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="hub", help="'hub' or a WikiText-2 folder")
    p.add_argument("--methods", nargs="+", default=["lora", "qpa-lora"])
    p.add_argument("--backend", default="statevector")
    p.add_argument("--shots-factor", type=float, default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.set_defaults(func=bench_train)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
