"""The ``qpa`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .errors import QPAError

DEMO_BACKENDS = (
    ("statevector", {}),
    ("statevector", {"shots_factor": 20}),
    ("aer_noisy:fake_brisbane", {}),
    ("aer_noisy:fake_brisbane", {"shots_factor": 20}),
    ("ibm:fake_brisbane", {"shots_factor": 20}),
)


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import list_backends

    rows = list_backends()
    width = max(len(spec) for spec, _ in rows)
    print(f"{'spec':<{width}}  qubits")
    for spec, n in rows:
        print(f"{spec:<{width}}  {'memory-bound' if n is None else n}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Evaluate one ansatz on each backend family and print probabilities, timings, shots."""
    from .backends import QPABackend
    from .circuits import ansatz

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


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return TrainConfig(**values)


def _add_train_options(p: argparse.ArgumentParser, for_compare: bool = False) -> None:
    from .adapters import METHODS
    from .train import PRECISIONS, SCHEDULES, TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("model and data")
    g.add_argument(
        "--model", default=d.model, help="smollm2-135m (embedded, default), tiny-gpt2, or a HF name"
    )
    g.add_argument("--data", default=d.data, help="'hub' or a WikiText-2 folder")
    g.add_argument("--train-tokens", type=int, default=d.train_tokens, help="cap on training tokens")
    g = p.add_argument_group("adapter")
    if not for_compare:
        g.add_argument("--method", choices=METHODS, default=d.method)
    g.add_argument("--rank", type=int, default=d.rank)
    g.add_argument("--lora-alpha", type=float, default=None, help="default 2 * rank")
    g.add_argument("--targets", nargs="+", default=d.targets, help="module names (default lm_head)")
    g = p.add_argument_group("QPA generator")
    g.add_argument("--backend", default=d.backend, help="statevector, aer_noisy:<device>, ibm:<device>")
    g.add_argument("--shots-factor", type=float, default=None, help="c: n_shot = ceil(c 2^N); default exact")
    g.add_argument("--chunk-size", type=int, default=d.chunk_size, help="n_mlp, weights per chunk")
    g.add_argument("--reps", type=int, default=d.reps, help="ansatz layers")
    g.add_argument("--rotation", choices=["ry", "rx"], default=d.rotation)
    g.add_argument("--hidden", type=int, nargs="+", default=d.hidden, help="mapping MLP hidden widths")
    g.add_argument(
        "--completion",
        choices=["none", "gi", "uniform", "random"],
        default=d.completion,
        help="fill unmeasured states: gi (Generative Interpolation) or a control",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--grad-accum", type=int, default=d.grad_accum)
    g.add_argument("--block-size", type=int, default=d.block_size, help="tokens per training sequence")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--warmup", type=int, default=d.warmup)
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    g.add_argument("--save-every", type=int, default=d.save_every)
    _add_eval_options(p)


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--eval-tokens", type=int, default=None, help=f"tokens scored (default {d.eval_tokens}; 0: all)"
    )
    g.add_argument("--eval-window", type=int, default=None, help=f"context window (default {d.eval_window})")
    g.add_argument("--eval-stride", type=int, default=None, help=f"window stride (default {d.eval_stride})")


def _eval_overrides(args, cfg) -> None:
    if args.eval_tokens is not None:
        cfg.eval_tokens = args.eval_tokens or None
    if args.eval_window is not None:
        cfg.eval_window = args.eval_window
    if args.eval_stride is not None:
        cfg.eval_stride = args.eval_stride


def cmd_train(args: argparse.Namespace) -> int:
    from .train import Run

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    run = Run(args.run_dir, cfg, resume=args.resume)
    print(f"{run.cfg.method} on {run.cfg.model}: {run.model.counts()}")
    records = run.train()
    if records:
        print(f"step {records[-1]['step']}: loss {records[-1]['loss']:.4f}; checkpoint in {run.dir}")
    else:
        print(f"nothing to do: {run.dir} is at step {run.step} of {run.cfg.steps}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .train import Run

    run = Run(args.run_dir, resume=True)
    _eval_overrides(args, run.cfg)
    result = run.evaluate(args.split)
    result.update(method=run.cfg.method, step=run.step, counts=run.model.counts())
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .train import export

    path = export(args.run_dir, args.out_dir)
    print(f"peft adapter written to {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .train import compare

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    compare(cfg, args.out, methods=args.methods)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import study_shots

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    if args.eval_tokens is None:
        cfg.eval_tokens = 4096
    study_shots(
        cfg, args.out, shots_factors=args.shots_factors, modes=args.modes, tvd_samples=args.tvd_samples
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qpa", description="Quantum Parameter Adaptation with Qiskit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backends", help="list the valid backend specs with their qubit counts")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("demo", help="evaluate one circuit on each backend family")
    p.add_argument("--qubits", type=int, default=4, help="N, the number of qubits (default 4)")
    p.add_argument("--reps", type=int, default=2, help="ansatz layers (default 2)")
    p.add_argument("--rotation", choices=["ry", "rx"], default="ry")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--show", type=int, default=8, help="how many probabilities to print")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="fine-tune with lora, dora, qpa-lora or qpa-dora")
    p.add_argument("run_dir", help="run directory (created; an existing run needs --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir")
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="perplexity of a run's adapter on WikiText-2")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    _add_eval_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write a run's adapter as a plain peft adapter directory")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="new directory for the adapter (must not exist)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="base vs LoRA vs QPA-LoRA: perplexity and trainable counts")
    p.add_argument("--out", default=None, help="directory for the runs (default runs/compare-<time>)")
    p.add_argument("--methods", nargs="+", default=["lora", "qpa-lora"], help="methods to train")
    _add_train_options(p, for_compare=True)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("study", help="sweeps of short QPA-LoRA fine-tunes: 'qpa study shots'")
    p.add_argument("study", choices=["shots"], help="shots: shot factor c x completion mode")
    p.add_argument("--out", default=None, help="directory for the runs (default runs/study-shots-<time>)")
    p.add_argument("--shots-factors", type=float, nargs="+", default=[1, 2, 5, 20])
    p.add_argument("--modes", nargs="+", default=["none", "uniform", "random", "gi"])
    p.add_argument("--tvd-samples", type=int, default=20, help="shot samples averaged for the TVD")
    _add_train_options(p, for_compare=True)
    p.set_defaults(func=cmd_study, steps=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except QPAError as exc:
        print(f"qpa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
