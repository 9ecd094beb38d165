"""``python -m qpa_qiskit.bench train``: optimiser steps of ``qpa-lora`` against ``lora`` on the
same model, targets, data and batch (median of several steps after a warm-up), with the frozen
body's feature cache (:mod:`qpa_qiskit.features`) off and on, then a study's evaluation of
several runs, off and on. Everything runs in this process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ..data import load_wikitext
from ..models import load_model
from ..train import Run
from ..train.run_config import RunConfig


def _train_cells(base, texts, args: argparse.Namespace, method: str) -> tuple[float, float | None, bool]:
    """(median seconds per optimiser step with the feature cache off, on (None: not measured),
    whether the cached path ran) of one method. The two runs train side by side, their steps
    interleaved, so a load that comes and goes on the machine falls on both alike. The
    training data is `--epoch-steps` steps long and the warm-up is one epoch: the timed steps
    are the steady state of a run past its first epoch (and of a study's later runs, which
    find the blocks stored)."""
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
