"""The benchmarks' command line, ``python -m qpa_qiskit.bench qnn|primitives|train|eval|precision``:
the options of each and the dispatch. A benchmark's module (torch, qiskit, the training stack) is
imported only when it runs, so ``--help`` and a refused option answer at once."""

from __future__ import annotations

import argparse

from ..cli.parsing import integer
from ..errors import QPAError
from .cells import require_qml

PROG = "python -m qpa_qiskit.bench"


def _run_qnn(args: argparse.Namespace) -> None:
    # lazy: the benchmark's implementation (torch, qiskit), imported only when it runs
    from .qnn import bench_qnn

    bench_qnn(args)


def _run_primitives(args: argparse.Namespace) -> None:
    # lazy: the benchmark's implementation (torch, qiskit), imported only when it runs
    from .primitives import bench_primitives

    bench_primitives(args)


def _run_train(args: argparse.Namespace) -> None:
    # lazy: the benchmark's implementation (torch, the training stack), imported only when it runs
    from .train import bench_train

    bench_train(args)


def _run_eval(args: argparse.Namespace) -> None:
    # lazy: the benchmark's implementation (torch, the training stack), imported only when it runs
    from .eval import bench_eval

    bench_eval(args)


def _run_precision(args: argparse.Namespace) -> None:
    # lazy: the benchmark's implementation (torch, the training stack), imported only when it runs
    from .precision import bench_precision

    bench_precision(args)


def _add_qnn(sub) -> None:
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
    p.set_defaults(func=_run_qnn)


def _add_primitives(sub) -> None:
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
    p.set_defaults(func=_run_primitives)


def _add_train(sub) -> None:
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
    p.set_defaults(func=_run_train)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="scoring the test split: the full model against the feature cache")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="hub", help="'hub' or a WikiText-2 folder")
    p.add_argument("--method", default="lora", help="an lm_head method (the cache applies to those)")
    p.add_argument(
        "--prefixes", type=integer(2), nargs="+", default=[16_384, 65_536], help="test tokens scored, each"
    )
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="the run's --device (auto: a CUDA device if any)")
    p.set_defaults(func=_run_eval)


def _add_precision(sub) -> None:
    p = sub.add_parser("precision", help="bf16 autocast against fp32: a training step and an evaluation")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="hub", help="'hub' or a WikiText-2 folder")
    p.add_argument("--method", default="lora")
    p.add_argument("--targets", nargs="+", default=["q_proj", "v_proj"], help="the adapted modules")
    p.add_argument("--rank", type=integer(1), default=1)
    p.add_argument("--steps", type=integer(1), default=20, help="timed steps after the warm-up, >= 1")
    p.add_argument("--warmup", type=integer(0), default=2, help="steps before the timed ones")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--eval-tokens", type=integer(2), default=4096, help="test tokens each scoring reads")
    p.add_argument("--eval-repeats", type=integer(0), default=3, help="scorings of the test prefix, each")
    p.add_argument("--profile-rows", type=integer(1), default=10, help="operators shown per profile")
    p.add_argument("--device", default="auto", help="the runs' --device (auto: a CUDA device if any)")
    p.set_defaults(func=_run_precision)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m qpa_qiskit.bench``: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog=PROG)
    sub = parser.add_subparsers(dest="bench", required=True)
    _add_qnn(sub)
    _add_primitives(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_precision(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark `argv` names; a QPAError (e.g. a missing optional dependency) exits
    with status 2 and one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.bench == "primitives":
            require_qml(f"{PROG} primitives")
        elif args.bench == "qnn" and not args.no_baseline:
            require_qml("the SamplerQNN + TorchConnector baseline of bench qnn (--no-baseline leaves it out)")
        args.func(args)
    except QPAError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
