"""WikiText-2 and perplexity (:mod:`.wikitext`), and the run's task and scoring sections
(:mod:`.config`: :class:`TaskConfig`, :class:`EvalConfig`).

Why a package: the sections sit beside the data code they configure, and the run
configuration imports them without torch. The data functions are imported on first use
(PEP 562 ``__getattr__``): ``from qpa_qiskit.data import perplexity`` works as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import EVAL_PROTOCOLS, EvalConfig, TaskConfig

_LAZY: dict[str, str] = dict.fromkeys(
    ("DEV", "HUB", "SPLITS", "blocks", "check_line_structure", "hold_out_dev", "load_wikitext",
     "padded_lines_perplexity", "perplexity", "text_rows", "tokenize"),
    "wikitext",
)  # fmt: skip

if TYPE_CHECKING:  # what type checkers and editors see
    from .wikitext import (
        DEV,
        HUB,
        SPLITS,
        blocks,
        check_line_structure,
        hold_out_dev,
        load_wikitext,
        padded_lines_perplexity,
        perplexity,
        text_rows,
        tokenize,
    )

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)

__all__ = [
    "DEV",
    "EVAL_PROTOCOLS",
    "HUB",
    "SPLITS",
    "EvalConfig",
    "TaskConfig",
    "blocks",
    "check_line_structure",
    "hold_out_dev",
    "load_wikitext",
    "padded_lines_perplexity",
    "perplexity",
    "text_rows",
    "tokenize",
]
