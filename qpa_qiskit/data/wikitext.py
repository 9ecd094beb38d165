"""WikiText-2 loading, an honest perplexity, and the published padded-lines figure.

Perplexity = exp(total negative log-likelihood / number of scored tokens). The token stream
of a split (its lines joined as they are in the files) is cut into windows of ``window``
tokens that advance by ``stride``; in each window only the tokens not already scored by an
earlier window are scored, the rest serve as context. A window's first token has no context
inside the window and is never scored, so with stride < window every token but the very
first is scored exactly once; with stride == window the first token of each window is not.
Every window is full-length except the last, so no padding is ever scored. Published QPA
perplexities (about 1.58 for GPT-2) average the loss over padded batches with the padding
counted, and are not comparable with this number; :func:`padded_lines_perplexity` computes
that figure, as an extra, so the two can be put side by side.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError

SPLITS = ("train", "valid", "test")
DEV = "dev"  # the split runs select on and never train on (:func:`hold_out_dev`)
HUB = "hub"
_FILE_NAMES = ("{split}.txt", "wiki.{split}.tokens", "wiki.{split}.raw")
BAR_DELAY_S = 2.0  # an evaluation shorter than this shows no bar


def _local_split(folder: Path, split: str) -> Path | None:
    for pattern in _FILE_NAMES:
        path = folder / pattern.format(split=split)
        if path.is_file():
            return path
    return None


def load_wikitext(source: str | Path, log=None) -> dict[str, str]:
    """Texts of the train, valid and test splits.

    ``source`` is "hub" (``wikitext-2-raw-v1`` through the ``datasets`` library) or a local
    folder with ``train/valid/test.txt`` or ``wiki.{split}.tokens`` / ``wiki.{split}.raw``.
    A folder without a train split trains on valid and says so.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if str(source) == HUB:
        try:
            # lazy: datasets (seconds), only when WikiText-2 is read
            from datasets import load_dataset

            ds = load_dataset("wikitext", "wikitext-2-raw-v1")
        except Exception as exc:  # no network, no cache, no datasets
            raise InputError(
                f"cannot load wikitext-2-raw-v1 from the Hugging Face hub ({type(exc).__name__}); "
                "pass a local folder with train/valid/test.txt or wiki.*.tokens instead"
            ) from None

        # the hub's rows are the files' lines, an empty row for each blank line (" \n" in the files):
        # joined with those blank lines kept, a split reads like the file, line for line
        def joined(rows) -> str:
            return "".join(row if row else " \n" for row in rows)

        return {"train": joined(ds["train"]["text"]), "valid": joined(ds["validation"]["text"]),
                "test": joined(ds["test"]["text"])}  # fmt: skip
    folder = Path(source)
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist; give a folder with WikiText-2 or 'hub'")
    found = {split: _local_split(folder, split) for split in SPLITS}
    for needed in ("valid", "test"):
        if found[needed] is None:
            names = ", ".join(p.format(split=needed) for p in _FILE_NAMES)
            raise InputError(f"no {needed} split in {folder}: expected one of {names}")
    if found["train"] is None:
        log(f"notice: {folder} has no train split; training on the valid split ({found['valid'].name})")
        found["train"] = found["valid"]
    texts = {}
    for split, path in found.items():
        try:
            texts[split] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); WikiText-2 files are "
                "UTF-8 text, one article line after another"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    return texts


_ARTICLE = re.compile(r"^ = [^=\n].* = $", re.MULTILINE)  # an article's title line: " = Title = "


def hold_out_dev(texts: dict[str, str], share: float | None, log=None) -> dict[str, str]:
    """The splits with a ``dev`` split that training never sees, for dev-split scoring and
    learning-rate selection; `share` None: none (runs created before it existed).

    Data with a train split of its own (the hub's ``wikitext-2-raw-v1``, a folder with
    ``train.txt``) have a validation split that is not trained on: it is the dev split. Data
    without one train on their valid split (:func:`load_wikitext`); then the last `share` of
    that text is held out, from the first article that starts at or after that point (articles
    are kept whole), and training reads only what comes before. Deterministic: no seed is
    involved, so every run and study of these data holds out the same text."""
    if share is None or DEV in texts:
        return texts
    if texts["train"] != texts["valid"]:
        return {**texts, DEV: texts["valid"]}
    text = texts["train"]
    if not text.strip():  # nothing to hold out: the run is refused for its empty training text
        return {**texts, DEV: ""}
    target = int(len(text) * (1.0 - share))
    starts = [m.start() for m in _ARTICLE.finditer(text)]
    after = [i for i in starts if i >= target]
    before = [i for i in starts if 0 < i < target]
    if after:
        cut = after[0]
    elif before:
        cut = before[-1]
    else:  # no article structure: at the last line break before the point, else a space
        cut = text.rfind("\n", 0, target) + 1 or text.rfind(" ", 0, target) + 1 or target
    if not 0 < cut < len(text):
        raise InputError(
            f"cannot hold out a dev split of {share:g} from a training text of {len(text)} characters "
            "without emptying one side; use more text, or another --dev-share"
        )
    if log is not None:
        articles = sum(1 for i in starts if i >= cut)
        log(
            f"dev split: the last {len(text) - cut:,} characters ({(len(text) - cut) / len(text):.1%}, "
            f"{articles} article(s)) of the training text are held out and never trained on"
        )
    return {**texts, "train": text[:cut], DEV: text[cut:]}


def tokenize(tokenizer, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """The whole text as one 1-D token stream (no special tokens added)."""
    if max_tokens is not None:
        text = text[: max_tokens * 12]  # tokenising gigabytes to keep a prefix is wasteful
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    ids = torch.tensor(ids, dtype=torch.long)
    return ids if max_tokens is None else ids[:max_tokens]


def blocks(tokens: torch.Tensor, block_size: int) -> torch.Tensor:
    """Non-overlapping training blocks (n, block_size); the remainder is dropped."""
    n = tokens.numel() // block_size
    if n == 0:
        raise InputError(f"{tokens.numel()} tokens are fewer than one block of {block_size}")
    return tokens[: n * block_size].view(n, block_size)


def _exp(mean_nll: float) -> float:
    """exp of a mean loss: infinity (not an OverflowError) for a diverged model's, NaN for NaN."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


@torch.no_grad()
def perplexity(model, tokens: torch.Tensor, window: int = 512, stride: int = 512, batch_size: int = 4, *,
               progress: bool = False, scored_only: bool = False):  # fmt: skip
    """(perplexity, scored tokens, total NLL) of a token stream, on the tokens' device (the
    model's); see the module docstring. `progress`: a bar of the windows scored, below any
    bar already shown, on a terminal only and once scoring has taken BAR_DELAY_S (a short evaluation
    shows none); it goes when scoring ends. `scored_only`: ask `model` (Hugging Face's
    ``logits_to_keep``) for the logits of the scored positions only, not of a window's context
    (the same figure, less work for the head)."""
    if window < 2 or not 1 <= stride <= window:
        raise InputError(f"need window >= 2 and 1 <= stride <= window, got window={window}, stride={stride}")
    n = tokens.numel()
    spans = []  # (begin, end, first scored position inside the window)
    scored_to = 1  # token 0 has no context
    begin = 0
    while scored_to < n:
        end = min(begin + window, n)
        spans.append((begin, end, max(scored_to - begin, 1)))
        scored_to = end
        if end == n:
            break
        begin += stride
    # lazy: tqdm, only when windows are scored
    from tqdm import tqdm

    bar = tqdm(total=len(spans), desc="perplexity", unit="window", leave=False, delay=BAR_DELAY_S,
               file=sys.stderr, disable=None if progress else True)  # fmt: skip
    total_nll, total_tokens = 0.0, 0
    i = 0
    try:
        while i < len(spans):
            length = spans[i][1] - spans[i][0]
            group = [s for s in spans[i : i + batch_size] if s[1] - s[0] == length]
            ids = torch.stack([tokens[b:e] for b, e, _ in group])
            skip = min(first for _, _, first in group) - 1 if scored_only else 0  # positions no row scores
            if skip:
                logits = model(input_ids=ids, logits_to_keep=length - skip).logits.float()
            else:
                logits = model(input_ids=ids).logits.float()
            targets = ids[:, 1 + skip :].clone()
            for row, (_, _, first) in enumerate(group):
                targets[row, : first - 1 - skip] = -100  # context only: scored by an earlier window
            nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                  ignore_index=-100, reduction="sum")  # fmt: skip
            total_nll += nll.item()
            total_tokens += int((targets != -100).sum())
            i += len(group)
            bar.update(len(group))
    finally:
        bar.close()
    return _exp(total_nll / total_tokens), total_tokens, total_nll


def text_rows(text: str) -> list[str]:
    """A split as the rows of the hub's ``wikitext-2-raw-v1``: one per line of the file, each
    with its newline, and "" for a blank line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text ends with a newline
    return [line + "\n" if line.strip() else "" for line in lines]


def check_line_structure(text: str, what: str) -> None:
    """The padded-lines figure scores lines: a text without line breaks has none to score."""
    if text.count("\n") < 2:
        raise InputError(
            f"eval_protocol 'padded-lines' scores the lines of WikiText-2; {what} has "
            f"{text.count(chr(10))} line break(s), so it has no line structure. Use the default "
            "'windows' protocol, or data with one article line per line"
        )


@torch.no_grad()
def padded_lines_perplexity(model, tokenizer, text: str, block: int = 512, max_rows: int | None = None,
                            batch_size: int = 4, device=None) -> tuple[float, int, int]:  # fmt: skip
    """(perplexity, rows, scored positions) by the published protocol (CYLphysics/QPA,
    ``train.py``): every row of the split (:func:`text_rows`, blank ones included) tokenised,
    cut to `block` tokens and right-padded with EOS to `block`; the model sees the attention
    mask; the loss is averaged over every position, padding included, and exponentiated.

    Scoring the padding flatters a model trained on padding too, as the published one is
    (EOS after EOS becomes nearly free, and most scored positions are padding); a model that
    never saw padding pays ~19 nats per padding position instead. Either way it is reported
    beside the honest perplexity, never instead of it. `max_rows` scores the first rows only;
    `device`: where the batches go (the model's; default the CPU).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the padded-lines protocol pads with the EOS token, and this tokenizer has none")
    rows = text_rows(text)[:max_rows]
    if not rows:
        raise InputError("the padded-lines protocol found no line to score")
    total, positions = 0.0, 0
    for start in range(0, len(rows), batch_size):
        ids, mask = [], []
        for row in rows[start : start + batch_size]:
            tokens = tokenizer(row, add_special_tokens=False)["input_ids"][:block] if row else []
            ids.append(tokens + [eos] * (block - len(tokens)))
            mask.append([1] * len(tokens) + [0] * (block - len(tokens)))
        ids_t = torch.tensor(ids, dtype=torch.long, device=device)
        attention = torch.tensor(mask, dtype=torch.long, device=device)
        logits = model(input_ids=ids_t, attention_mask=attention).logits.float()
        targets = ids_t[:, 1:]
        total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="sum").item()  # fmt: skip
        positions += targets.numel()
    return _exp(total / positions), len(rows), positions
