"""The run options as the command line reads them, made once from the configuration's sections.

transformers' ``HfArgumentParser`` turns each field of the run configuration's sections
(:data:`~.run_config.SECTIONS`) into an option ``--field-name`` with its type, choices and help:
``qpa train`` and the studies' commands take their options from :func:`option_parser`, and a
study's settings written as text (``qpa compare --methods lora:rank=1:targets=q_proj,v_proj``)
are read by the same options (:func:`read_fields`), so a value means there what it means to
``qpa train --rank 1 --targets q_proj v_proj``. transformers is imported only when a parser
is made, so importing this module stays import-light.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from .run_config import SECTIONS, check_names


def without(cls: type, exclude: tuple[str, ...]) -> type:
    """The section dataclass `cls` less the fields in `exclude` (a command that sets them
    itself, like the method of ``qpa compare``, offers no option for them)."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls) if f.name not in exclude]
    if len(fields) == len(dataclasses.fields(cls)):
        return cls
    reduced = dataclasses.make_dataclass(cls.__name__, fields)
    reduced.__module__ = cls.__module__  # its string annotations resolve where cls's do
    reduced._argument_group_name = cls._argument_group_name
    return reduced


def option_parser(
    base: type[argparse.ArgumentParser] = argparse.ArgumentParser,
    *,
    exclude: tuple[str, ...] = (),
    sections: tuple[str, ...] | None = None,
) -> argparse.ArgumentParser:
    """A parser of class `base` with one option per run-configuration field (of `sections`,
    less `exclude`), spelled ``--field-name`` (``--field_name`` is accepted too), without
    ``--help``: the command line's parent parser, and :func:`read_fields`'s."""
    # lazy: transformers (seconds), only when options are parsed
    from transformers import HfArgumentParser

    # HfArgumentParser adds the options after ``super().__init__``, which makes `base`'s parser
    parser_class = type("ConfigOptions", (HfArgumentParser, base), {})
    chosen = [without(c, exclude) for name, c in SECTIONS.items() if sections is None or name in sections]
    return parser_class(chosen, add_help=False)


class _Refusing(argparse.ArgumentParser):
    """A parser whose refusals are :class:`~qpa_qiskit.errors.InputError`, not an exit."""

    def error(self, message: str) -> Any:  # argparse's hook: it would print usage and exit
        raise InputError(message)


@functools.cache
def _fields_parser() -> argparse.ArgumentParser:
    return option_parser(_Refusing)


def list_valued(name: str) -> bool:
    """The field `name` takes several values (``--targets q_proj v_proj``)."""
    return any(a.dest == name and a.nargs in ("+", "*") for a in _fields_parser()._actions)


def read_fields(texts: Mapping[str, str]) -> dict[str, Any]:
    """Each run setting of `texts` (field name -> its text) as ``qpa train --<field> <text>``
    reads it: its type, its choices, a list-valued field's values comma-separated
    (``q_proj,v_proj``). An unknown name, or a text its option refuses, is an InputError that
    names it and what is accepted."""
    check_names(texts)
    words: list[str] = []
    for name, text in texts.items():
        words += [f"--{name}", *(text.split(",") if list_valued(name) else [text])]
    parsed = _fields_parser().parse_args(words)
    return {name: getattr(parsed, name) for name in texts}
