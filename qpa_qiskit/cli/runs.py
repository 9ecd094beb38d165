"""``qpa train``, ``eval``, ``export``, ``compare`` and ``study``: fine-tuning runs.

The run options are made from :mod:`qpa_qiskit.config` by transformers' ``HfArgumentParser``
(one option per field, with its type, default, choices and help), so the command line, the
``config.json`` of a run and ``--config FILE`` are the same settings. Only options given on
the command line count: a new run takes the defaults, then ``--config``, then those options;
a resumed run takes its stored configuration, then those options, of which only the
resumable ones may differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .. import validate
from ..choices import COUNTERFACTUALS
from ..errors import InputError
from .jobs import add_recovery_options
from .parsing import Parser, summary

# Defaults of `qpa study shots` that differ from a run's: short runs, a short evaluation.
STUDY_DEFAULTS: dict[str, Any] = {"steps": 20, "eval_tokens": 4096}


def _without(cls: type, exclude: tuple[str, ...]) -> type:
    """The section dataclass `cls` less the fields in `exclude` (a command that sets them
    itself, like the method of ``qpa compare``, offers no option for them)."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls) if f.name not in exclude]
    if len(fields) == len(dataclasses.fields(cls)):
        return cls
    reduced = dataclasses.make_dataclass(cls.__name__, fields)
    reduced.__module__ = cls.__module__  # its string annotations resolve where cls's do
    reduced._argument_group_name = cls._argument_group_name
    return reduced


def config_options(*, exclude: tuple[str, ...] = (), sections: tuple[str, ...] | None = None):
    """A parent parser with one option per run-configuration field (of `sections`, less
    `exclude`), spelled ``--field-name`` (``--field_name`` is accepted too, not shown); its
    options record that they were given (:class:`.parsing.Parser`)."""
    # lazy: transformers (seconds), only when a model is loaded
    from transformers import HfArgumentParser

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..config import SECTIONS

    class ConfigOptions(HfArgumentParser, Parser):
        """HfArgumentParser's options from the dataclasses, made by Parser's recording actions
        (HfArgumentParser adds them after ``super().__init__``, which registers those)."""

    chosen = [_without(c, exclude) for name, c in SECTIONS.items() if sections is None or name in sections]
    return ConfigOptions(chosen, add_help=False)


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run-configuration fields given on the command line (by name)."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..config import FIELD_SECTION

    return {k: getattr(args, k) for k in getattr(args, "explicit", ()) if k in FIELD_SECTION}


def _hardware_options(args: argparse.Namespace) -> dict[str, bool]:
    return {"resubmit_unconfirmed": args.resubmit_unconfirmed, "retry_failed": args.retry_failed}


def cmd_train(args: argparse.Namespace) -> int:

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..config import RunConfig, check_given
    from ..run_folder import CONFIG
    from ..train import Run

    given = explicit_settings(args)
    run_dir = Path(args.run_dir)
    if args.resume:
        if args.config:
            raise InputError(
                "--config starts a new run; --resume continues a run with its stored configuration "
                f"(give only the settings to change, e.g. 'qpa train {run_dir} --resume --steps 400')"
            )
        run = Run.open(run_dir, overrides=given, hardware_options=_hardware_options(args))
    else:
        if (run_dir / CONFIG).exists():
            raise InputError(
                f"{run_dir} already holds a run; continue it with 'qpa train {run_dir} --resume' "
                "or choose another folder"
            )
        cfg = (RunConfig.from_file(args.config) if args.config else RunConfig()).replace(**given)
        check_given(given, [cfg.adapter.method])  # an option the method ignores is refused
        run = Run.create(run_dir, cfg, hardware_options=_hardware_options(args))
    with run:
        print(f"{run.cfg.adapter.method} on {run.cfg.task.model}: {run.model.counts()}")
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
        print(f"nothing to do: {run.dir} is at step {run.step} of {run.cfg.training.steps}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train import evaluate_run

    result = evaluate_run(args.run_dir, args.split, overrides=explicit_settings(args),
                          counterfactual=args.counterfactual)  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..export import export

    path = export(args.run_dir, args.out_dir)
    print(f"peft adapter written to {path}")
    return 0


def _new_config(args: argparse.Namespace, defaults: dict[str, Any] | None = None, methods=None):
    """The base configuration of a study whose runs train `methods` (default: its own); an
    option none of them takes is refused."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..config import RunConfig, check_given

    cfg = RunConfig.from_file(args.config) if args.config else RunConfig()
    cfg = cfg.replace(**{**(defaults or {}), **explicit_settings(args)})
    check_given(explicit_settings(args), methods or [cfg.adapter.method])
    return cfg


def _executor(args: argparse.Namespace):
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..sweep import make_executor

    return make_executor(args.executor, args.address, args.cpus_per_run, args.gpus_per_run)


def cmd_compare(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study import compare

    cfg = _new_config(args, methods=args.methods)
    compare(cfg, args.out, methods=args.methods, seeds=args.seeds, executor=_executor(args))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study import study_shots

    study_shots(
        _new_config(args, STUDY_DEFAULTS),
        args.out,
        shots_factors=args.shots_factors,
        modes=args.modes,
        tvd_samples=args.tvd_samples,
        seeds=args.seeds,
        executor=_executor(args),
    )
    return 0


def cmd_study_noise(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study import study_noise

    # the noise switches are checked against the first noisy backend (statevector has none)
    noisy = [b for b in args.backends if b.strip().lower().startswith("aer_noisy:")]
    defaults = {**STUDY_DEFAULTS, "backend": noisy[0] if noisy else "statevector"}
    study_noise(
        _new_config(args, defaults, methods=["qpa-lora", "lora"]),
        args.out,
        backends=args.backends,
        rotations=args.rotations,
        noise_scales=args.noise_scales,
        chunk_sizes=args.chunk_sizes,
        shots_factors=args.shots_factors,
        lora_rank=args.lora_rank,
        tvd_samples=args.tvd_samples,
        seeds=args.seeds,
        executor=_executor(args),
    )
    return 0


def cmd_study_params(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study_params import study_params

    study_params(
        _new_config(args, STUDY_DEFAULTS, methods=args.methods),
        args.out,
        methods=args.methods,
        ranks=args.ranks,
        vera_ranks=args.vera_ranks,
        prefix_tokens=args.prefix_token_counts,
        bottlenecks=args.bottlenecks,
        chunk_sizes=args.chunk_sizes,
        reps=args.reps_values,
        chunk_methods=args.chunk_methods,
        reps_methods=args.reps_methods,
        seeds=args.seeds,
        executor=_executor(args),
    )
    return 0


def cmd_study_ablation(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study_ablation import study_ablation

    study_ablation(
        _new_config(args, STUDY_DEFAULTS, methods=["qpa-lora", "lowrank-lora", "lora"]),
        args.out,
        regimes=args.regimes,
        controls=args.controls,
        lora_ranks=args.lora_ranks,
        counterfactuals=args.counterfactuals,
        margin=args.margin,
        seeds=args.seeds,
        executor=_executor(args),
    )
    return 0


def add_sweep_options(p: argparse.ArgumentParser, default_out: str) -> None:
    """What every study takes: its folder, the seeds, and where its runs execute."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..sweep import EXECUTORS

    g = p.add_argument_group("study")
    g.add_argument("--out", default=None,
                   help=f"study folder (default {default_out}); an existing one of the same study is "
                   "resumed: finished runs are skipped, killed ones resumed")  # fmt: skip
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds: one run per setting and seed")
    g.add_argument("--config", help="settings from a JSON or YAML file")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: one run after another in this process; ray: each run a Ray task")  # fmt: skip
    g.add_argument("--address", default=None,
                   help="ray: 'auto' or ray://host:port joins a cluster; none: a local Ray")  # fmt: skip
    g.add_argument("--cpus-per-run", type=float, default=None,
                   help="torch threads of each run; ray: also the CPUs reserved for it (default 1 on ray, "
                   "torch's choice locally)")  # fmt: skip
    g.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="ray: GPUs reserved for each run (0.25: four runs share a GPU)")  # fmt: skip


def _positive_float(text: str) -> float:

    try:
        return validate.positive_number(float(text), "a shot factor")
    except (ValueError, InputError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scale(text: str) -> float:

    try:
        return validate.number(float(text), "a noise scale", minimum=0.0)
    except (ValueError, InputError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shots_factor(text: str) -> float | None:
    return None if text.strip().lower() == "exact" else _positive_float(text)


def add_commands(sub) -> None:
    """The run commands."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..circuits import ROTATIONS
    from ..completion import MODES
    from ..config import TaskConfig

    def options(**kwargs):
        return [config_options(**kwargs)]

    formatter = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("train", help=summary("train"),
                       parents=options(),
                       formatter_class=formatter)  # fmt: skip
    p.add_argument("run_dir", help="run folder (created; an existing run needs --resume)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in run_dir with its stored configuration; only steps, save_every "
        "and the evaluation settings may be changed",
    )
    p.add_argument("--config", help="start the run from a JSON or YAML file (a run's config.json works)")
    add_recovery_options(p, "ibm: backends: a step's job")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help=summary("eval"),
                       description="Every evaluation option defaults to the run's stored setting.",
                       parents=options(sections=("eval",)))  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid"], default="test")
    data_help = next(f for f in dataclasses.fields(TaskConfig) if f.name == "data").metadata["help"]
    p.add_argument("--data", default=argparse.SUPPRESS, help=f"{data_help} (default: the run's)")
    p.add_argument(
        "--probabilities",
        dest="counterfactual",
        choices=COUNTERFACTUALS,
        default=None,
        help="counterfactual evaluation of a qpa-* run: the adapter generated from these "
        "probabilities instead of the trained ones (uniform; permuted: the trained ones over "
        "a seeded permutation of the states; fixed-random: a seeded Porter-Thomas draw)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help=summary("export"))
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="new folder for the adapter (must not exist or be empty)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help=summary("compare"),
                       parents=options(exclude=("method",)), formatter_class=formatter)  # fmt: skip
    p.add_argument("--methods", nargs="+", default=["lora", "qpa-lora"], help="methods to train")
    add_sweep_options(p, "runs/compare-<time>")
    p.set_defaults(func=cmd_compare)

    study = sub.add_parser("study", help=summary("study"))
    studies = study.add_subparsers(dest="study", required=True)
    p = studies.add_parser("shots", help="shot factor c x completion mode",
                           parents=options(exclude=("method", "shots_factor", "completion")),
                           formatter_class=formatter)  # fmt: skip
    p.add_argument("--shots-factors", type=_positive_float, nargs="+", default=[1, 2, 5, 20])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--tvd-samples", type=int, default=20, help="shot samples averaged for the TVD")
    add_sweep_options(p, "runs/study-shots-<time>")
    p.set_defaults(func=cmd_study)

    excluded = ("method", "shots_factor", "backend", "rotation", "noise_scale", "chunk_size")
    p = studies.add_parser(
        "noise",
        help="ideal vs device noise: backends x rotations x noise scales, LoRA beside",
        parents=options(exclude=excluded),
        formatter_class=formatter,
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=["statevector", "aer_noisy:brisbane", "aer_noisy:torino"],
        help="statevector and aer_noisy:<fake device | snapshot> specs",
    )
    p.add_argument("--rotations", nargs="+", choices=ROTATIONS, default=list(ROTATIONS))
    p.add_argument(
        "--noise-scales",
        type=_scale,
        nargs="+",
        default=[1.0],
        help="noise scales s of the aer_noisy backends (errors x s, T1 and T2 / s)",
    )
    p.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="+",
        default=None,
        help="chunk sizes (set the qubits and trainable parameters; default the config's 2048)",
    )
    p.add_argument(
        "--shots-factors",
        type=_shots_factor,
        nargs="+",
        default=[20.0],
        help="c: n_shot = c 2^N; 'exact' for exact probabilities (noise without shot noise)",
    )
    p.add_argument("--lora-rank", type=int, default=4, help="rank of the classical LoRA reference")
    p.add_argument("--tvd-samples", type=int, default=20, help="shot samples averaged for the TVD")
    add_sweep_options(p, "runs/study-noise-<time>")
    p.set_defaults(func=cmd_study_noise)
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study_params import PARAMS_METHODS

    excluded = ("method", "rank", "bottleneck", "prefix_tokens", "chunk_size", "reps", "shots_factor",
                "completion")  # fmt: skip
    p = studies.add_parser(
        "params",
        help="perplexity against trainable parameters: every adapter over its sizes, QPA over chunk "
        "sizes and L",
        parents=options(exclude=excluded),
        formatter_class=formatter,
    )
    p.add_argument("--methods", nargs="+", choices=PARAMS_METHODS, default=list(PARAMS_METHODS))
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16], help="LoRA and DoRA ranks")
    p.add_argument("--vera-ranks", type=int, nargs="+", default=[256], help="VeRA ranks")
    p.add_argument("--prefix-token-counts", type=int, nargs="+", default=[8],
                   help="prefix tuning virtual tokens")  # fmt: skip
    p.add_argument("--bottlenecks", type=int, nargs="+", default=[16], help="FFA bottleneck widths")
    p.add_argument("--chunk-sizes", type=int, nargs="+", default=[512, 2048, 8192],
                   help="QPA chunk sizes (set the qubits and the mapping's size)")  # fmt: skip
    p.add_argument("--chunk-methods", nargs="+", default=["qpa-lora", "qpa-dora"],
                   choices=[m for m in PARAMS_METHODS if m.startswith("qpa-")],
                   help="QPA methods swept over --chunk-sizes; the others run at the middle one")  # fmt: skip
    p.add_argument("--reps-values", type=int, nargs="+", default=[2, 8, 16],
                   help="ansatz layers L swept for --reps-methods at the middle chunk size")  # fmt: skip
    p.add_argument("--reps-methods", nargs="+", default=["qpa-lora"],
                   choices=[m for m in PARAMS_METHODS if m.startswith("qpa-")])  # fmt: skip
    add_sweep_options(p, "runs/study-params-<time>")
    p.set_defaults(func=cmd_study_params)

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..study_ablation import CONTROLS, DEFAULT_REGIMES

    excluded = ("method", "preset", "labels", "mapping", "probabilities", "lowrank_k")
    p = studies.add_parser(
        "ablation",
        help="does the circuit's output matter: generator regimes x probability sources (the circuit and "
        "its classical controls), LoRA beside",
        parents=options(exclude=excluded),
        formatter_class=formatter,
    )
    p.add_argument(
        "--regimes",
        nargs="+",
        default=list(DEFAULT_REGIMES),
        help="generator regimes: <labels>:<mapping> (fixed|random : mlp|linear; every other "
        "setting from the configuration) or paper (the published generator, --preset paper)",
    )
    p.add_argument(
        "--controls",
        nargs="+",
        choices=CONTROLS,
        default=list(CONTROLS),
        help="probability sources set against the trained circuit, and lowrank (the classical "
        "H @ C peer of equal trainable count)",
    )
    p.add_argument(
        "--lora-ranks", type=int, nargs="*", default=[1, 4], help="ranks of the classical LoRA beside"
    )
    p.add_argument(
        "--counterfactuals",
        nargs="*",
        choices=COUNTERFACTUALS,
        default=list(COUNTERFACTUALS),
        help="test-time probabilities scored for every trained-circuit run",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="equivalence margin in perplexity, stated in advance: a difference whose 95%% "
        "interval lies inside ±margin reads 'equivalent'",
    )
    add_sweep_options(p, "runs/study-ablation-<time>")
    p.set_defaults(func=cmd_study_ablation)
    for name in ("shots", "noise", "params", "ablation"):
        studies.choices[name].set_defaults(**STUDY_DEFAULTS)
