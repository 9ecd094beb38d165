"""``qpa backends`` and ``qpa demo``: the quantum backends at a glance."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .parsing import integer, summary

DEMO_BACKENDS = (
    ("statevector", {}),
    ("statevector", {"shots_factor": 20}),
    ("aer_noisy:fake_brisbane", {}),
    ("aer_noisy:fake_brisbane", {"shots_factor": 20}),
    ("ibm:fake_brisbane", {"shots_factor": 20}),
)


def cmd_backends(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends import list_backends

    rows = list_backends()
    width = max(len(spec) for spec, _ in rows)
    print(f"{'spec':<{width}}  qubits")
    for spec, n in rows:
        print(f"{spec:<{width}}  {'memory-bound' if n is None else n}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Evaluate one ansatz on each backend family and print probabilities, timings, shots."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..backends import QPABackend
    from ..circuits import ansatz

    circuit = ansatz(args.qubits, args.reps, rotation=args.rotation)
    values = np.random.default_rng(args.seed).uniform(0, 2 * np.pi, circuit.num_parameters)
    n_out = 2**args.qubits
    shown = min(n_out, args.show)
    print(
        f"ansatz: {args.qubits} qubits, {args.reps} layers of {args.rotation.upper()}+CNOT, "
        f"{circuit.num_parameters} angles (seed {args.seed}); first {shown} of {n_out} probabilities"
    )
    header = f"{'backend':<26} {'shots':>7} {'first call':>10} {'repeat':>8}  " + " ".join(
        f"{format(i, f'0{args.qubits}b'):>7}" for i in range(shown)
    )
    print(header)
    print("-" * len(header))
    for spec, kwargs in DEMO_BACKENDS:
        backend = QPABackend(spec, seed=args.seed, **kwargs)
        start = time.perf_counter()
        probs = backend.probabilities(circuit, values)[0]
        first = time.perf_counter() - start
        start = time.perf_counter()
        backend.probabilities(circuit, values)
        repeat = time.perf_counter() - start
        shots = backend.num_shots(args.qubits)
        cells = " ".join(f"{p:7.4f}" for p in probs[:shown])
        print(f"{spec:<26} {shots or 'exact':>7} {first:9.3f}s {repeat:7.3f}s  {cells}")
    print(
        "\nfirst call includes transpiling to the device ISA and building the noise model; "
        "ibm:fake_brisbane runs qiskit-ibm-runtime's Sampler in local testing mode."
    )
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("backends", help=summary("backends"))
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("demo", help=summary("demo"))
    p.add_argument("--qubits", type=int, default=4, help="N, the number of qubits (default 4)")
    p.add_argument("--reps", type=int, default=2, help="ansatz layers (default 2)")
    p.add_argument("--rotation", choices=["ry", "rx"], default="ry")
    p.add_argument("--seed", type=integer(0), default=7, help="seed of the random angles, >= 0 (default 7)")
    p.add_argument(
        "--show", type=integer(1), default=8, help="how many probabilities to print, >= 1 (default 8)"
    )
    p.set_defaults(func=cmd_demo)
