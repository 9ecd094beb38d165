"""The argparse machinery of ``qpa``, shared by every command module.

* :data:`COMMANDS`: each command, the module that defines it and its one-line help. The
  top-level parser lists every command from this table, and a command's module (with its
  imports: torch, transformers, qiskit) is imported only when that command runs, so
  ``qpa --help`` and ``qpa --version`` start in a fraction of a second.
* :class:`Parser`: an ``ArgumentParser`` whose options record that they were given
  (:func:`given`), so a command tells the options given from the defaults after one parse,
  and which refuses an option given twice with different values, such as
  ``--gate-error true --no-gate-error``: argparse would silently keep the last.
* :func:`hide_underscore_spellings`: options made from dataclass fields have two spellings
  (``--train-tokens`` and ``--train_tokens``); help, usage and errors show the dashed one
  only, and the other is still accepted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

# command -> (module of qpa_qiskit.cli that defines it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("quantum", "list the valid backend specs with their qubit counts"),
    "demo": ("quantum", "evaluate one circuit on each backend family"),
    "train": ("runs", "fine-tune with an adapter (lora, dora, prefix, ffa, vera, ia3, qpa-*)"),
    "eval": ("runs", "perplexity of a run's adapter on WikiText-2"),
    "export": ("runs", "write a run's adapter as a plain peft adapter folder"),
    "compare": ("runs", "base vs LoRA vs QPA-LoRA: perplexity and trainable counts"),
    "study": ("runs", "sweeps of short fine-tunes: 'qpa study shots|noise|params|ablation'"),
    "noise": ("noise", "noise-model snapshots and the noise a circuit meets"),
    "jobs": ("jobs", "IBM Quantum jobs: submit, status, collect, list, cancel"),
}

# The namespace attribute that maps the destination of every option given on the command line
# to (how it was given, its value).
GIVEN = "_given"


def summary(command: str) -> str:
    """The one-line help of `command` (for ``sub.add_parser(command, help=...)``)."""
    return COMMANDS[command][1]


def given(args: argparse.Namespace) -> set[str]:
    """The destinations of the options given on the command line (not their defaults)."""
    return set(getattr(args, GIVEN, {}))


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least `minimum`; anything else is refused with
    the accepted range."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    convert.__name__ = f"integer >= {minimum}"
    return convert


def _shown(option_string: str | None, values: Any, takes_values: bool) -> str:
    if not takes_values:
        return str(option_string)
    shown = " ".join(map(str, values)) if isinstance(values, list) else str(values)
    return f"{option_string} {shown}"


class _Recorded(argparse.Action):
    """Mixin of the store actions: records an option as given; a second option of the same
    destination with another value is refused, naming both. Positionals are not recorded."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        if option_string is None:  # a positional: argparse also calls it with its default
            return
        value = getattr(namespace, self.dest)
        record = vars(namespace).setdefault(GIVEN, {})
        shown = _shown(option_string, values, self.nargs != 0)
        if self.dest in record and record[self.dest][1] != value:
            raise argparse.ArgumentError(
                self,
                f"contradicts {record[self.dest][0]}, given before it; give only one of them",
            )
        record[self.dest] = (shown, value)


# argparse's own store actions (its registry names them "store", "store_const", ...; None is
# the default action), each with the recording mixin.
_RECORDED = {
    name: type(f"Recorded{base.__name__}", (_Recorded, base), {})
    for name, base in (
        (None, argparse._StoreAction),
        ("store", argparse._StoreAction),
        ("store_const", argparse._StoreConstAction),
        ("store_true", argparse._StoreTrueAction),
        ("store_false", argparse._StoreFalseAction),
    )
}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose store options record that they were given (see the module
    docstring). Its sub-parsers are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, action in _RECORDED.items():
            self.register("action", name, action)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from _parsers(sub)


def hide_underscore_spellings(parser: argparse.ArgumentParser) -> None:
    """Drop ``--a_b`` from the spellings that help, usage and errors show wherever ``--a-b``
    spells the same option, in `parser` and its sub-parsers; the parser still accepts it (its
    lookup of option strings is untouched)."""
    for p in _parsers(parser):
        for action in p._actions:
            strings = action.option_strings
            dashed = [s for s in strings if not ("_" in s and s.replace("_", "-") in strings)]
            if len(dashed) < len(strings):
                action.option_strings = dashed
