"""``qpa train``, ``eval``, ``export``, ``compare`` and ``study``: fine-tuning runs."""

from __future__ import annotations

import argparse
import sys

from .jobs import add_recovery_options


def _train_config(args: argparse.Namespace):
    from ..train import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return TrainConfig(**values)


def _add_train_options(p: argparse.ArgumentParser, for_compare: bool = False) -> None:
    from ..adapters import METHODS
    from ..train import PRECISIONS, SCHEDULES, TrainConfig

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
    from ..train import TrainConfig

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
    from ..train import Run

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    run = Run(
        args.run_dir,
        cfg,
        resume=args.resume,
        resubmit_unconfirmed=args.resubmit_unconfirmed,
        retry_failed=args.retry_failed,
    )
    print(f"{run.cfg.method} on {run.cfg.model}: {run.model.counts()}")
    try:
        records = run.train()
    except KeyboardInterrupt:
        where = f"; its jobs are recorded in {run.dir / 'jobs'}" if run.hardware else ""
        print(
            f"stopped at step {run.step} (checkpoint in {run.dir}{where}); "
            f"'qpa train {run.dir} --resume' continues",
            file=sys.stderr,
        )
        return 130
    if records:
        print(f"step {records[-1]['step']}: loss {records[-1]['loss']:.4f}; checkpoint in {run.dir}")
    else:
        print(f"nothing to do: {run.dir} is at step {run.step} of {run.cfg.steps}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ..train import Run

    run = Run(args.run_dir, resume=True)
    _eval_overrides(args, run.cfg)
    result = run.evaluate(args.split)
    result.update(method=run.cfg.method, step=run.step, counts=run.model.counts())
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..train import export

    path = export(args.run_dir, args.out_dir)
    print(f"peft adapter written to {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..train import compare

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    compare(cfg, args.out, methods=args.methods)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from ..study import study_shots

    cfg = _train_config(args)
    _eval_overrides(args, cfg)
    if args.eval_tokens is None:
        cfg.eval_tokens = 4096
    study_shots(
        cfg, args.out, shots_factors=args.shots_factors, modes=args.modes, tvd_samples=args.tvd_samples
    )
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="fine-tune with lora, dora, qpa-lora or qpa-dora")
    p.add_argument("run_dir", help="run directory (created; an existing run needs --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir")
    add_recovery_options(p, "ibm: backends: a step's job")
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
