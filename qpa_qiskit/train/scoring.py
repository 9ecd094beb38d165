"""A model's perplexity on a split of the run's data: what every evaluation of a run reports
(the test and valid splits, the dev split in the middle of training), for an adapted model or
the base model alone.
"""

from __future__ import annotations

import dataclasses

import torch

from ..adapters import AdaptedModel
from ..data import DEV, check_line_structure, padded_lines_perplexity, perplexity, tokenize
from ..data.config import EvalConfig
from ..errors import InputError
from ..features import BodyFeatures
from ..models import LoadedModel
from .checks import model_positions
from .device import autocast


def evaluate(
    model,
    loaded: LoadedModel,
    cfg: EvalConfig,
    texts: dict[str, str],
    split: str = "test",
    precision="fp32",
    probabilities: torch.Tensor | None = None,
    *,
    progress: bool = False,
    features: BodyFeatures | None = None,
) -> dict:
    """Perplexity of `model` (a base model or an AdaptedModel) on a WikiText-2 split, on the
    device the model is on; with ``eval_protocol="padded-lines"`` also the published padded
    figure (``padded_lines_perplexity``). `probabilities` replaces what an AdaptedModel's
    generator reads (a counterfactual). `progress`: a bar of the windows scored. `features`:
    the frozen body's cached path for `model` (:mod:`qpa_qiskit.features`; the windows and
    padded lines of a split are the same for every run of a study)."""
    if split not in texts:
        if split == DEV:
            raise InputError(
                "this run has no dev split: it was created before runs held one out (dev_share None). "
                "Score --split valid or test, or train a new run"
            )
        raise InputError(f"split must be one of {', '.join(texts)}, got {split!r}")
    if split == DEV:  # scored as training sees it: windows only, over dev_tokens
        cfg = dataclasses.replace(cfg, eval_tokens=cfg.dev_tokens, eval_protocol="windows")
    positions = model_positions(loaded)
    if positions is not None and cfg.eval_window > positions:
        raise InputError(
            f"eval_window {cfg.eval_window} is longer than the model's {positions} positions; use "
            f"--eval-window at most {positions}"
        )
    tokens = tokenize(loaded.tokenizer, texts[split], cfg.eval_tokens)
    if tokens.numel() < 2:
        raise InputError(f"the {split} split has fewer than 2 tokens to score")
    if cfg.eval_protocol == "padded-lines":
        check_line_structure(texts[split], f"the {split} split")
    model.eval()
    if isinstance(model, AdaptedModel):
        model.materialize(probabilities)  # generated once, then plain peft forward passes
        fn = model.peft_model
    else:
        fn = model
    device = next(fn.parameters()).device
    if features is not None:
        fn = features  # called as the model is, from the body's stored hidden states
    with autocast(device, precision):
        # the cached path runs the head on the scored positions only; the full model as always
        ppl, n, nll = perplexity(fn, tokens.to(device), cfg.eval_window, cfg.eval_stride, cfg.eval_batch,
                                 progress=progress, scored_only=features is not None)  # fmt: skip
        result = {"split": split, "perplexity": ppl, "tokens": n, "nll": nll}
        if cfg.eval_protocol == "padded-lines":
            rows = None if cfg.eval_tokens is None else max(1, cfg.eval_tokens // cfg.padded_block)
            padded, n_rows, positions = padded_lines_perplexity(
                fn, loaded.tokenizer, texts[split], cfg.padded_block, rows, cfg.eval_batch, device=device
            )
            result.update(padded_lines_perplexity=padded, padded_lines_rows=n_rows,
                          padded_lines_positions=positions)  # fmt: skip
    return result
