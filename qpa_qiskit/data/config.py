"""The run's sections for the task (the model and the data) and for how it is scored.

Beside the data code they configure (:mod:`.wikitext`), and import-light: the run
configuration (:mod:`qpa_qiskit.train.run_config`) composes them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import validate
from ..errors import InputError
from ..sections import described

EVAL_PROTOCOLS = ("windows", "padded-lines")
DEV_SHARE = 0.1  # the default share of the training text held out as the dev split
MAX_DEV_SHARE = 0.5  # more would leave less to train on than to select with


@dataclass
class TaskConfig:
    """The model to adapt and the WikiText-2 data."""

    _argument_group_name = "model and data"
    model: str = field(
        default="smollm2-135m",
        metadata=described(
            "smollm2-135m (embedded, offline), tiny-gpt2 (tests), or a Hugging Face causal LM"
        ),
    )
    data: str = field(
        default="hub",
        metadata=described("'hub' (wikitext-2-raw-v1) or a WikiText-2 folder; a folder is stored resolved"),
    )
    train_tokens: int | None = field(
        default=200_000, metadata=described("cap on the training tokens (0: the whole split)")
    )
    dev_share: float | None = field(
        default=DEV_SHARE,
        metadata=described(
            "the dev split, scored for --eval-every and learning-rate selection, never trained on: data "
            "without a train split of its own (the training text is then the valid split) hold out this "
            "last share of it, cut at an article boundary; data with a train split (the hub) use their "
            "validation split. In (0, 0.5]"
        ),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError(f"model must be a model name, got {self.model!r}")
        if not isinstance(self.data, str) or not self.data.strip():
            raise InputError(f"data must be 'hub' or a folder, got {self.data!r}")
        if self.data != "hub":
            self.data = str(Path(self.data).expanduser().resolve())
        if self.train_tokens is not None:
            self.train_tokens = validate.integer(self.train_tokens, "train_tokens", minimum=0) or None
        if self.dev_share is not None:  # None: no dev split (runs created before there was one)
            self.dev_share = validate.number(
                self.dev_share, "dev_share (the share of the training text held out as the dev split)",
                above=0.0, maximum=MAX_DEV_SHARE,
            )  # fmt: skip


@dataclass
class EvalConfig:
    """How test (and dev) perplexity is scored (see :mod:`qpa_qiskit.data.wikitext`)."""

    _argument_group_name = "evaluation"
    eval_tokens: int | None = field(default=16_384, metadata=described("tokens scored (0: the whole split)"))
    dev_tokens: int | None = field(
        default=16_384, metadata=described("tokens of the dev split scored (0: the whole dev split)")
    )
    eval_window: int = field(default=256, metadata=described("context window of the scoring"))
    eval_stride: int = field(default=192, metadata=described("window stride"))
    eval_batch: int = field(default=4, metadata=described("windows per forward pass"))
    eval_protocol: str = field(
        default="windows",
        metadata=described(
            "padded-lines: also the published metric (lines padded with EOS, padding scored), beside "
            "the honest windowed perplexity",
            choices=EVAL_PROTOCOLS,
        ),
    )
    padded_block: int = field(
        default=512, metadata=described("padded-lines: tokens per padded line (published: 512)")
    )

    def __post_init__(self) -> None:
        self.eval_tokens = _scored_tokens(self.eval_tokens, "eval_tokens")
        self.dev_tokens = _scored_tokens(self.dev_tokens, "dev_tokens")
        self.eval_window = validate.integer(self.eval_window, "eval_window", minimum=2)
        self.eval_stride = validate.positive_int(self.eval_stride, "eval_stride")
        if self.eval_stride > self.eval_window:
            raise InputError(
                f"eval_stride ({self.eval_stride}) must be at most eval_window ({self.eval_window})"
            )
        self.eval_batch = validate.positive_int(self.eval_batch, "eval_batch")
        validate.one_of(self.eval_protocol, "eval_protocol", EVAL_PROTOCOLS)
        self.padded_block = validate.integer(self.padded_block, "padded_block", minimum=2)


def _scored_tokens(value: int | None, name: str) -> int | None:
    """A number of tokens to score: 0 or None for the whole split, else at least 2 (a token and
    the one it predicts: one token scores nothing, and is refused before a run is written)."""
    if value is None:
        return None
    value = validate.integer(value, name, minimum=0)
    if value == 1:
        raise InputError(
            f"{name} must be 0 (the whole split) or at least 2 (a token and the one it predicts), got 1"
        )
    return value or None
