"""Perplexity over consecutive token windows, for the fresh processes that load an exported
adapter without qpa_qiskit: this module imports torch only (tests put its folder on sys.path)."""

import math

import torch
import torch.nn.functional as F


def windowed_perplexity(model, tokens: torch.Tensor, window: int = 64) -> float:
    nll, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(tokens), window):
            ids = tokens[b : b + window][None]
            logits = model(input_ids=ids).logits
            nll += F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum").item()
            n += ids.shape[1] - 1
    return math.exp(nll / n)
