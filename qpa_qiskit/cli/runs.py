"""``qpa train``, ``eval``, ``export``, ``compare`` and ``study``: fine-tuning runs.

The run options are made from :mod:`qpa_qiskit.train.run_config` by transformers' ``HfArgumentParser``
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
import shlex
import sys
from pathlib import Path
from typing import Any

from ..choices import COUNTERFACTUALS
from ..errors import BudgetReached, InputError
from .jobs import add_recovery_options
from .parsing import Parser, summary


def config_options(*, exclude: tuple[str, ...] = (), sections: tuple[str, ...] | None = None):
    """A parent parser with one option per run-configuration field (of `sections`, less
    `exclude`), spelled ``--field-name`` (``--field_name`` is accepted too, not shown); its
    options record that they were given (:class:`.parsing.Parser`)."""
    # lazy: this command's implementation (transformers), imported only when it runs
    from ..train.options import option_parser

    return option_parser(Parser, exclude=exclude, sections=sections)


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run-configuration fields given on the command line (by name)."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train.run_config import FIELD_SECTION

    return {k: getattr(args, k) for k in getattr(args, "explicit", ()) if k in FIELD_SECTION}


def _hardware_options(args: argparse.Namespace) -> dict[str, bool]:
    return {"resubmit_unconfirmed": args.resubmit_unconfirmed, "retry_failed": args.retry_failed}


#: the exit status of a run stopped before the step that would pass its QPU-time budget: not an
#: error (2), not Ctrl-C (130); the message says how to continue
BUDGET_REACHED = 4


def stopped(kept: str, command: str, then: str = "continues") -> int:
    """What a command stopped by Ctrl-C says instead of a traceback: one line with what is kept
    and the command that goes on from there; the exit status 130 (128 + SIGINT), as a shell's."""
    print(f"stopped {kept}; '{command}' {then}", file=sys.stderr)
    return 130


def cmd_train(args: argparse.Namespace) -> int:

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train import Run
    from ..train.folder import CONFIG
    from ..train.run_config import RunConfig, check_given

    given = explicit_settings(args)
    run_dir = Path(args.run_dir)
    if args.resume:
        if args.config:
            raise InputError(
                "--config starts a new run; --resume continues a run with its stored configuration "
                f"(give only the settings to change, e.g. 'qpa train {run_dir} --resume --steps 400')"
            )
        if args.dry_run:
            raise InputError(
                f"--dry-run projects the cost of a new run, and {run_dir} is started: drop --resume to "
                "project it in a new folder (nothing is written). A run stopped by its budget says what it "
                "used and what the rest would cost"
            )
        run = Run.open(run_dir, overrides=given, hardware_options=_hardware_options(args))
    else:
        if (run_dir / CONFIG).exists():
            raise InputError(
                f"{run_dir} already holds a run; continue it with 'qpa train {run_dir} --resume' "
                "or choose another folder"
            )
        cfg = (RunConfig.from_file(args.config) if args.config else RunConfig()).replace(**given)
        check_given(given, [cfg.adapter.method], cfg)  # an option the run ignores is refused
        if args.dry_run:
            # lazy: this command's implementation (torch, qiskit), imported only when it runs
            from ..train.cost import dry_run

            print("\n".join(dry_run(cfg)))
            return 0
        run = Run.create(run_dir, cfg, hardware_options=_hardware_options(args))
    with run:
        print(f"{run.cfg.adapter.method} on {run.cfg.task.model} ({run.device}): {run.model.counts()}")
        try:
            records = run.train()
        except KeyboardInterrupt:
            where = f"; its jobs are recorded in {run.dir / 'jobs'}" if run.hardware else ""
            return stopped(
                f"at step {run.step} (checkpoint in {run.dir}{where})", f"qpa train {run.dir} --resume"
            )
        except BudgetReached as exc:
            print(f"qpa train: {exc}", file=sys.stderr)
            return BUDGET_REACHED
    if records:
        print(f"step {records[-1]['step']}: loss {records[-1]['loss']:.4f}; checkpoint in {run.dir}")
    else:
        print(f"nothing to do: {run.dir} is at step {run.step} of {run.cfg.training.steps}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train import evaluate_run

    result = evaluate_run(args.run_dir, args.split, overrides=explicit_settings(args),
                          counterfactual=args.counterfactual, progress=True)  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train.export import export

    path = export(args.run_dir, args.out_dir)
    print(f"peft adapter written to {path}")
    return 0


def _study_config(args: argparse.Namespace, spec):
    """A study's base configuration: ``--config`` (or a run's defaults), then the study's own
    defaults, then the run options given (:meth:`~qpa_qiskit.studies.spec.StudySpec.configuration`)."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train.run_config import RunConfig

    base = RunConfig.from_file(args.config) if args.config else None
    return spec.configuration(base, explicit_settings(args))


def _dest(f: dataclasses.Field) -> str:
    """Where argparse puts a study field's option: named after its flag (``--reps-values`` ->
    ``reps_values``), never after a run setting of the same name."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..studies.spec import flag

    return flag(f).removeprefix("--").replace("-", "_")


def cmd_study(args: argparse.Namespace) -> int:
    """``qpa compare`` and ``qpa study <name>``: the spec from its options, then its run.
    Stopped by Ctrl-C, it ends as ``qpa train`` does: one line saying what is kept and the
    command that resumes the study (exit status 130), not a traceback."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..studies.executors import make_executor
    from ..studies.pipeline import default_out
    from ..studies.runner import RESULT

    spec_class = args.study_spec
    spec = spec_class(**{f.name: getattr(args, _dest(f)) for f in dataclasses.fields(spec_class)})
    cfg = _study_config(args, spec)
    if args.dry_run:
        # lazy: this command's implementation (torch, qiskit), imported only when it runs
        from ..studies.cost import dry_run

        print("\n".join(dry_run(spec, cfg)))
        return 0
    out = default_out(args.out, spec.OUT)  # named here: the command that resumes it names it too
    executor = make_executor(args.executor, args.address, args.cpus_per_run, args.gpus_per_run)
    try:
        spec.run(cfg, out, executor)
    except KeyboardInterrupt:
        # the same words again resume the study in its folder (given with --out if it was not)
        words = [*args.argv, *([] if "out" in args.explicit else ["--out", str(out)])]
        command = f"qpa {shlex.join(words)}"
        if not out.exists():
            return stopped(f"before {out} was made: nothing is written", command, "starts it again")
        finished = len(list(out.glob(f"*/{RESULT}")))
        kept = (
            f"with {finished} finished run(s) kept in {out} (a run stopped midway resumes at its checkpoint)"
        )
        return stopped(kept, command)
    return 0


def _option_type(parse):
    """An argparse ``type`` from a study field's reader: its InputError or ValueError is
    argparse's error (int and float keep argparse's own messages)."""
    if parse in (int, float):
        return parse

    def convert(text: str):
        try:
            return parse(text)
        except (ValueError, InputError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def add_study_option(p, f: dataclasses.Field) -> None:
    """The option of one study field: its flag, values, choices, default and help."""
    meta = f.metadata
    kwargs: dict[str, Any] = {"help": meta["help"].replace("%", "%%")}
    kwargs["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    if isinstance(f.default, bool):  # a switch: on when given
        p.add_argument("--" + _dest(f).replace("_", "-"), dest=_dest(f), action="store_true", **kwargs)
        return
    if meta["nargs"] is not None:
        kwargs["nargs"] = meta["nargs"]
    if meta["choices"] is not None:
        kwargs["choices"] = meta["choices"]
    if meta["parse"] is not None:
        kwargs["type"] = _option_type(meta["parse"])
    p.add_argument("--" + _dest(f).replace("_", "-"), dest=_dest(f), **kwargs)


def add_sweep_options(p: argparse.ArgumentParser, spec_class) -> None:
    """What every study takes: its folder, the seeds, and where its runs execute."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..studies.executors import EXECUTORS

    default_out = spec_class.OUT.replace("%Y%m%d-%H%M%S", "<time>")
    g = p.add_argument_group("study")
    g.add_argument("--out", default=None,
                   help=f"study folder (default {default_out}); an existing one of the same study is "
                   "resumed: finished runs are skipped, killed ones resumed")  # fmt: skip
    for f in dataclasses.fields(spec_class):
        if f.metadata.get("group") == "study":
            add_study_option(g, f)
    g.add_argument("--config", help="settings from a JSON or YAML file")
    g.add_argument("--dry-run", action="store_true",
                   help="print each run's projected QPU cost and their total; write nothing")  # fmt: skip
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: one run after another in this process; ray: each run a Ray task")  # fmt: skip
    g.add_argument("--address", default=None,
                   help="ray: 'auto' or ray://host:port joins a cluster; none: a local Ray")  # fmt: skip
    g.add_argument("--cpus-per-run", type=float, default=None,
                   help="torch threads of each run; ray: also the CPUs reserved for it (default 1 on ray, "
                   "torch's choice locally)")  # fmt: skip
    g.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="ray: GPUs reserved for each run, which --device auto then uses (0.25: four runs "
                   "share a GPU; 0: the runs see no GPU and train on the CPU)")  # fmt: skip


def add_study(sub, spec_class, options, help: str | None = None) -> None:
    """A study's command, made from its spec: the run options less those its grid sets, one
    option per spec field, the study options; the help shows the study's run defaults."""
    p = sub.add_parser(spec_class.NAME, help=help or spec_class.HELP,
                       parents=options(exclude=spec_class.SET_BY_GRID),
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    for f in dataclasses.fields(spec_class):
        if f.metadata.get("group") not in ("study", "selection"):
            add_study_option(p, f)
    g = p.add_argument_group("learning-rate selection on the dev split (docs/studies.md)")
    for f in dataclasses.fields(spec_class):
        if f.metadata.get("group") == "selection":
            add_study_option(g, f)
    add_sweep_options(p, spec_class)
    p.set_defaults(func=cmd_study, study_spec=spec_class, **spec_class.CONFIG_DEFAULTS)


def add_commands(sub) -> None:
    """The run commands."""
    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..train.run_config import BackendConfig, TaskConfig, TrainingConfig

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
        help="continue the run in run_dir with its stored configuration; only steps, save_every, "
        "the evaluation settings, where it runs and how IBM Quantum runs its jobs (--mode, "
        "--max-execution-time, --max-qpu-seconds) may be changed",
    )
    p.add_argument("--config", help="start the run from a JSON or YAML file (a run's config.json works)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the run's projected QPU cost (circuits, shots and QPU seconds per step and per run, the "
        "share of the Open Plan's 10 minutes) and write nothing",
    )
    add_recovery_options(p, "ibm: backends: a step's job")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help=summary("eval"),
                       description="Every evaluation option defaults to the run's stored setting.",
                       parents=options(sections=("eval",)))  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "valid", "dev"], default="test",
                   help="the split scored: test, valid, or dev (held out of training)")  # fmt: skip
    # the data (a moved folder) and where the run is scored: the run's own unless given
    for section, name in ((TaskConfig, "data"), (TrainingConfig, "device"), (BackendConfig, "torch_device")):
        field_help = next(f for f in dataclasses.fields(section) if f.name == name).metadata["help"]
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                       help=f"{field_help} (default: the run's)")  # fmt: skip
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

    # lazy: this command's implementation (torch, qiskit), imported only when it runs
    from ..studies.ablation import AblationStudy
    from ..studies.compare import CompareStudy
    from ..studies.hardware import HardwareStudy
    from ..studies.noise import NoiseStudy
    from ..studies.params import ParamsStudy
    from ..studies.shots import ShotsStudy

    add_study(sub, CompareStudy, options, help=summary("compare"))
    study = sub.add_parser("study", help=summary("study"))
    studies = study.add_subparsers(dest="study", required=True)
    for spec_class in (ShotsStudy, NoiseStudy, ParamsStudy, AblationStudy, HardwareStudy):
        add_study(studies, spec_class, options)
