"""``python -m qpa_qiskit.bench precision``: bf16 autocast against fp32 (the baseline) on the
run's device, for a training step of an adapter in the body (LoRA on the attention projections
by default: the step a study pays most for) and for an evaluation window.

Two runs that differ only in ``--precision`` train side by side from the same seed, their steps
interleaved, so a load that comes and goes falls on both; the medians of the steps after a
warm-up are compared, and then each run's dev and test perplexity at its last step, side by
side (the price of bf16 in the figures). Then the test prefix is scored by each, interleaved,
and one step of each is profiled by torch's profiler: where the step's time goes, by operator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ..data import load_wikitext
from ..models import load_model
from ..train import Run
from ..train.run_config import RunConfig

PRECISIONS = ("fp32", "bf16")  # the baseline first


def _config(args: argparse.Namespace, precision: str) -> RunConfig:
    return RunConfig().replace(
        model=args.model, data=args.data, method=args.method, targets=args.targets, rank=args.rank,
        steps=args.warmup + args.steps, batch_size=args.batch_size, block_size=args.block_size,
        eval_tokens=args.eval_tokens, save_every=10**9, precision=precision, device=args.device,
    )  # fmt: skip


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _profile(run: Run, rows: int) -> list[tuple[str, float, float]]:
    """(operator, self CPU seconds, share of the step) of one optimiser step, the largest first."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run.train_step()
    ops = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    total = sum(s for _, s in ops) or 1.0
    return [(name, s, s / total) for name, s in sorted(ops, key=lambda o: -o[1])[:rows]]


def bench_precision(args: argparse.Namespace) -> None:
    """Seconds per training step and per evaluation of the test prefix in fp32 and bf16, their
    ratio, each run's perplexities side by side, and each precision's profile of one step."""
    base = load_model(args.model)
    texts = load_wikitext(args.data, log=lambda msg: None)
    targets = ",".join(args.targets) if args.targets else "the method's default"
    print(f"{args.model}, {args.method} r={args.rank} on {targets}, batch {args.batch_size}x"
          f"{args.block_size}, --device {args.device}, torch threads={torch.get_num_threads()}; medians of "
          f"{args.steps} steps after {args.warmup}, fp32 and bf16 trained side by side; load (1 min) "
          f"{_load()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        runs = [Run.create(f"{tmp}/{p}", _config(args, p), loaded=base.fresh_copy(), texts=texts,
                           log=lambda m: None) for p in PRECISIONS]  # fmt: skip
        try:
            steps: list[list[float]] = [[], []]
            for step in range(args.warmup + args.steps):
                for run, seconds in zip(runs, steps, strict=True):
                    record = run.train_step()
                    if step >= args.warmup:
                        seconds.append(record["seconds"])
            print(f"  trained (load {_load()})", flush=True)
            scores = [{"dev": run.dev_perplexity()} for run in runs]
            evals: list[list[float]] = [[], []]
            tokens = 0
            for _ in range(args.eval_repeats):
                for run, seconds, score in zip(runs, evals, scores, strict=True):
                    start = time.perf_counter()
                    result = run.evaluate()
                    seconds.append(time.perf_counter() - start)
                    score["test"], tokens = result["perplexity"], result["tokens"]
            print(f"  scored (load {_load()})", flush=True)
            profiles = [_profile(run, args.profile_rows) for run in runs]
        finally:
            for run in runs:
                run.close()
    step_s = [statistics.median(s) for s in steps]
    print()
    print("| precision | s/step (median) | vs fp32 | test prefix s (median) | vs fp32 | dev perplexity | "
          "test perplexity |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for i, precision in enumerate(PRECISIONS):
        ev = statistics.median(evals[i]) if evals[i] else None
        ev_cells = "- | -" if ev is None else f"{ev:.2f} | {statistics.median(evals[0]) / ev:.2f}x"
        test = f"{scores[i]['test']:.3f}" if "test" in scores[i] else "-"
        print(f"| {precision} | {step_s[i]:.3f} | {step_s[0] / step_s[i]:.2f}x | {ev_cells} | "
              f"{scores[i]['dev']:.3f} | {test} |")  # fmt: skip
    print(f"(vs fp32: fp32's time over this one's, above 1 faster; test prefix: {tokens} tokens, "
          f"{args.eval_repeats} scorings each; perplexities at step {args.warmup + args.steps})")  # fmt: skip
    for precision, rows in zip(PRECISIONS, profiles, strict=True):
        print()
        print(f"Where one {precision} step's time goes (torch profiler, self CPU time by operator):")
        print("| operator | s | share |")
        print("|---|---|---|")
        for name, seconds, share in rows:
            print(f"| {name} | {seconds:.3f} | {share:.1%} |")
