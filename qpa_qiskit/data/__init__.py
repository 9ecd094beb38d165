"""WikiText-2 and perplexity (:mod:`.wikitext`), and the run's task and scoring sections
(:mod:`.config`: :class:`TaskConfig`, :class:`EvalConfig`).

Why a package: the sections sit beside the data code they configure, and the run
configuration imports them without torch. The names are imported on first use
(PEP 562 ``__getattr__``): ``from qpa_qiskit.data import perplexity`` works as before.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(globals(), {
    ".config": "EVAL_PROTOCOLS EvalConfig TaskConfig",
    ".wikitext": "DEV HUB SPLITS blocks check_line_structure hold_out_dev load_wikitext "
                 "padded_lines_perplexity perplexity text_rows tokenize",
})  # fmt: skip
