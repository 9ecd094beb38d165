"""``python -m qpa_qiskit.bench eval``: what scoring the test split costs one run, the full model
(the baseline) against the frozen body's feature cache (:mod:`qpa_qiskit.features`) for an
``lm_head`` adapter: cold (the body's hidden states computed and stored, in memory and on disk
as a study stores them: a study's first run), warm from memory (a study's later runs in one
process) and warm from disk (a resumed study, or a Ray task). Prefixes of the test split are
timed, and the whole split extrapolated at the rate measured on the longest prefix. The
machine's load (1-minute average, before and after) is printed beside each figure: on a shared
machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ..data import load_wikitext, tokenize
from ..models import load_model
from ..train import Run
from ..train.run_config import RunConfig

PATHS = ("full model (baseline)", "cache cold", "cache warm, memory", "cache warm, disk")


def _timed(run: Run) -> dict:
    """One test evaluation of `run`: its seconds, perplexity, tokens scored, the load around it."""
    before = os.getloadavg()[0]
    start = time.perf_counter()
    result = run.evaluate()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "perplexity": result["perplexity"], "tokens": result["tokens"],
            "load": f"{before:.1f} / {os.getloadavg()[0]:.1f}"}  # fmt: skip


def _cells(base, texts, args: argparse.Namespace, tokens: int, folder: Path) -> list[dict]:
    """The four paths of :data:`PATHS` on the first `tokens` test tokens, in that order."""
    cells = []
    for cache in (False, True):
        cfg = RunConfig().replace(
            model=args.model, data=args.data, method=args.method, feature_cache=cache, device=args.device,
            block_size=args.block_size, train_tokens=args.block_size, eval_tokens=tokens,
        )  # fmt: skip
        base.features.clear()
        base.features.use_folder(folder / str(tokens) if cache else None)
        with Run.create(folder / f"run-{tokens}-{cache}", cfg, loaded=base.fresh_copy(), texts=texts,
                        log=lambda m: None) as run:  # fmt: skip
            cells.append(_timed(run))
            if cache:
                cells.append(_timed(run))  # every window in memory now
                base.features.clear()
                cells.append(_timed(run))  # read back from the folder
    base.features.clear()
    base.features.use_folder(None)
    return cells


def bench_eval(args: argparse.Namespace) -> None:
    """Seconds to score each prefix of the test split on each path, their perplexities (the
    same to float rounding), and the whole split extrapolated."""
    base = load_model(args.model)
    texts = load_wikitext(args.data, log=lambda msg: None)
    whole = tokenize(base.tokenizer, texts["test"], None).numel()
    cfg = RunConfig()
    prefixes = ", ".join(f"{n:,}" for n in args.prefixes)
    print(f"{args.model}, {args.method} on lm_head (r={cfg.adapter.rank}), --device {args.device}, torch "
          f"threads={torch.get_num_threads()}; the test split's first {prefixes} "
          f"tokens (window {cfg.eval.eval_window}, stride {cfg.eval.eval_stride}); the whole split is "
          f"{whole:,} tokens; load: the 1-minute load average before / after", flush=True)  # fmt: skip
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        _cells(base, texts, args, cfg.eval.eval_window, Path(tmp) / "warm-up")  # first touches, not timed
        for tokens in args.prefixes:
            rows[tokens] = _cells(base, texts, args, tokens, Path(tmp))
            for path, cell in zip(PATHS, rows[tokens], strict=True):
                print(f"  {tokens:,} tokens, {path}: {cell['seconds']:.2f} s, perplexity "
                      f"{cell['perplexity']:.6f}, load {cell['load']}", flush=True)  # fmt: skip
    print()
    print("| tokens | path | seconds | tokens/s | vs baseline | perplexity | load before / after |")
    print("|---|---|---|---|---|---|---|")
    for tokens, cells in rows.items():
        for path, cell in zip(PATHS, cells, strict=True):
            speed = cells[0]["seconds"] / cell["seconds"]
            print(f"| {tokens:,} | {path} | {cell['seconds']:.2f} | {cell['tokens'] / cell['seconds']:.0f} | "
                  f"{speed:.2f}x | {cell['perplexity']:.6f} | {cell['load']} |")  # fmt: skip
    longest = rows[max(rows)]
    gap = max(abs(c["perplexity"] / longest[0]["perplexity"] - 1) for c in longest)
    print(f"\nThe perplexities of the cached paths differ from the full model's by at most {gap:.1e} "
          "(relative): float rounding.")  # fmt: skip
    print(f"\nThe whole test split ({whole:,} tokens) per run, at the rate of the {max(rows):,}-token "
          "prefix:")  # fmt: skip
    print("| path | seconds, extrapolated | minutes |")
    print("|---|---|---|")
    for path, cell in zip(PATHS, longest, strict=True):
        seconds = cell["seconds"] / cell["tokens"] * (whole - 1)
        print(f"| {path} | {seconds:.0f} | {seconds / 60:.1f} |")
