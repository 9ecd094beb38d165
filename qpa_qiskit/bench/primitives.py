"""``python -m qpa_qiskit.bench primitives``: one qiskit-machine-learning QNN training step
(SamplerQNN and EstimatorQNN with TorchConnector) on :mod:`qpa_qiskit.primitives` against the
same QNN on Aer's V2 primitives, the same ISA circuit, noise model and shots; each cell in a
process of its own.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp

from ..backends import QPABackend, family_class, measured_qubits
from ..circuits import ansatz
from ..primitives import Estimator, Sampler
from .cells import in_child, peak_rss, ratio, require_qml, show_memory, show_seconds, time_steps


def _sampler_qnn(kind: str, ours: QPABackend, isa, shots: int, aer_backend: dict):
    """A SamplerQNN on our Sampler over `ours`, or on Aer's SamplerV2 (kind "aer")."""
    _, neural_networks = require_qml("python -m qpa_qiskit.bench primitives")
    if kind != "aer":
        sampler = Sampler(ours, default_shots=shots, seed=1)
    else:
        # lazy: qiskit-aer (seconds), only where Aer itself runs
        from qiskit_aer.primitives import SamplerV2

        sampler = SamplerV2(default_shots=shots, seed=1, options={"backend_options": aer_backend})
    return neural_networks.SamplerQNN(circuit=isa, sampler=sampler, weight_params=list(isa.parameters))


def _estimator_qnn(kind: str, ours: QPABackend, isa, n: int, aer_backend: dict):
    """An exact EstimatorQNN (the mean of Z over the circuit's qubits, where they ended) on our
    Estimator over `ours`, or on Aer's EstimatorV2 (kind "aer")."""
    _, neural_networks = require_qml("python -m qpa_qiskit.bench primitives")
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

        options = {"method": "density_matrix", **aer_backend} if aer_backend else {}
        estimator = EstimatorV2(options={"backend_options": options})
    return neural_networks.EstimatorQNN(
        circuit=bare,
        observables=observable,
        estimator=estimator,
        weight_params=list(bare.parameters),
        default_precision=0.0,
    )


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
    connectors, _ = require_qml("python -m qpa_qiskit.bench primitives")
    warnings.simplefilter("ignore")  # QML's and torch's notes on every call would drown the table
    backend = QPABackend(spec)
    ours = QPABackend(spec, engine="aer") if kind == "aer-engine" else backend
    isa = backend.isa_circuit(ansatz(n, reps))  # measured: clbit i reads virtual qubit i
    shots = int(np.ceil(c * 2**n))
    model = backend.noise_model
    aer_backend = {} if model is None else {"noise_model": model}
    if qnn_kind == "sampler":
        qnn, outputs = _sampler_qnn(kind, ours, isa, shots, aer_backend), 2**n
    else:
        qnn, outputs = _estimator_qnn(kind, ours, isa, n, aer_backend), 1
    init = np.random.default_rng(0).uniform(0, 2 * np.pi, len(isa.parameters))
    net = connectors.TorchConnector(qnn, initial_weights=init)
    upstream = torch.from_numpy(np.random.default_rng(2).normal(size=outputs)).float()
    forward: list[np.ndarray] = []

    def step() -> None:
        net.zero_grad()
        out = net(torch.empty(0)).reshape(-1)
        (out @ upstream).backward()
        forward.append(out.detach().numpy().astype(float))

    seconds, samples, first = time_steps(step, repeats, budget)
    return {
        "P": len(isa.parameters), "shots": shots if qnn_kind == "sampler" else None,
        "seconds": seconds, "samples": samples, "first": first, "peak_rss": peak_rss(),
        "forward": forward[0].tolist(), "gradient": net.weight.grad.numpy().astype(float).tolist(),
    }  # fmt: skip


def bench_primitives(args: argparse.Namespace) -> None:
    """Each (backend, QNN, N) a row: our primitives, Aer's, and (on a device backend) ours over
    ``engine="aer"``, each measured in a process of its own."""
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
                    ("aer-engine",) if args.aer_engine and family_class(spec).has_noise_model else ()
                )
                for kind in kinds:
                    row[kind] = in_child(
                        _primitive_cell, kind, qnn_kind, spec, n, args.reps, args.shots_factor,
                        args.repeats, args.budget,
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
            f"{k}: {show_seconds(row[k])} s, {show_memory(row[k])} GiB"
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
            f"| {row['qnn']}QNN | {row['spec']} | {row['N']} | {n_params} | {shots} | "
            f"{show_seconds(ours)} | {show_memory(ours)} | {show_seconds(aer)} | {show_memory(aer)} | "
            f"{ratio(aer.get('seconds'), t, 3)} | "
            f"{_agreement(row)} | {show_seconds(best) if best else '-'} | "
            f"{ratio(best.get('seconds'), t, 3) if best else '-'} |"
        )
    return "\n".join(lines)
