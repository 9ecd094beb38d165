"""A method with settings of its own, written as one text: ``lora:rank=1:targets=q_proj,v_proj``.

``qpa compare --methods`` takes a method (``lora``, as always) or ``METHOD:FIELD=VALUE[:...]``:
each FIELD a run setting (a field of the run configuration, ``-`` or ``_`` alike), its VALUE read
as ``qpa train --<field> <value>`` reads it (:func:`~qpa_qiskit.train.options.read_fields`; a
list-valued field's values comma-separated), and the run's configuration checked by
:class:`~qpa_qiskit.train.run_config.RunConfig` itself, so every refusal is the one a run gives,
said with the text it came from. A setting has three spellings, each stable (its fields in
alphabetical order, its values as read):

* its text, normalised: ``lora:rank=1:targets=q_proj,v_proj`` (what ``study.json`` records);
* its run folders' name: ``lora-rank1-targets_q_proj+v_proj`` (a number follows its field, a
  word follows ``_``, a list joined by ``+``, any other character ``-``);
* its label in tables and figures: ``lora rank=1 on q_proj,v_proj``.

A method alone keeps its plain spellings (``lora``), so a comparison of methods names its runs
as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..choices import CIRCUIT_SOURCES, METHODS, TRAINED_SOURCES
from ..errors import InputError
from ..train.options import read_fields
from ..train.run_config import RunConfig, check_given

# where a text's next setting starts: a ':' before FIELD= (a value may hold ':', as aer_noisy:brisbane)
NEXT_SETTING = re.compile(r":(?=[A-Za-z][\w-]*=)")
SYNTAX = "METHOD or METHOD:FIELD=VALUE[:FIELD=VALUE...], e.g. lora:rank=1:targets=q_proj,v_proj"
# a character a run folder's name keeps; any other becomes '-'
UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def value_text(value: Any, join: str = ",") -> str:
    """A setting's value as text: a number as short as it reads back, a list joined by `join`."""
    if isinstance(value, (list, tuple)):
        return join.join(value_text(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


@dataclass(frozen=True)
class MethodSetting:
    """One method and its own settings (field -> value, in alphabetical order)."""

    method: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    source: str = field(default="methods (--methods) entry", compare=False)  # where it was given

    @property
    def plain(self) -> bool:
        """A method alone: its spellings are the method's name."""
        return not self.changes

    @property
    def text(self) -> str:
        """``lora:rank=1:targets=q_proj,v_proj``: parsed again, it gives this setting."""
        return ":".join([self.method, *(f"{k}={value_text(v)}" for k, v in self.changes.items())])

    @property
    def name(self) -> str:
        """Its run folders' name (less the seed): ``lora-rank1-targets_q_proj+v_proj``."""
        parts = [self.method]
        for k, v in self.changes.items():
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            parts.append(k + ("" if number else "_") + UNSAFE.sub("-", value_text(v, "+")))
        return "-".join(parts)

    @property
    def label(self) -> str:
        """Its row in tables and figures: ``lora rank=1 on q_proj,v_proj``."""
        words = [self.method, *(f"{k}={value_text(v)}" for k, v in self.changes.items() if k != "targets")]
        targets = self.changes.get("targets")
        return " ".join(words) + (f" on {value_text(targets)}" if targets else "")

    def config(self, cfg: RunConfig, seed: int) -> RunConfig:
        """Its run of `seed` from the study's configuration `cfg`, checked by RunConfig (its
        refusals said with this setting's text). A method alone is ``cfg.for_method(method,
        seed=seed)``, as ever; with settings, what its own probabilities make meaningless (the
        study's circuit rate, shots and completion) is left out, unless it gives them itself."""
        if self.plain:
            return cfg.for_method(self.method, seed=seed)
        changes = dict(self.changes)
        source = changes.get("probabilities")
        if self.method.startswith("qpa-") and source is not None:
            if source not in TRAINED_SOURCES:
                changes.setdefault("circuit_lr", None)
            if source not in CIRCUIT_SOURCES:
                changes.setdefault("shots_factor", None)
                changes.setdefault("completion", "none")
        try:
            run = cfg.for_method(self.method, **changes, seed=seed)
            check_given(self.changes, [self.method], run)  # a setting the method ignores
        except InputError as exc:
            raise InputError(f"{self.where}: {exc}") from None
        return run

    @property
    def where(self) -> str:
        return f"{self.source} {self.text!r}"


def parse_setting(
    text: Any, reserved: Mapping[str, str] | None = None, source: str = "methods (--methods) entry"
) -> MethodSetting:
    """The setting a ``--methods`` entry writes (:data:`SYNTAX`). Refused, naming the entry (as
    `source` calls it): a malformed text, an unknown method or field, a field given twice, a field
    in `reserved` (field -> why the study sets it), a value its option refuses."""
    if not isinstance(text, str):
        raise InputError(f"{source}: a text, {SYNTAX}; got {text!r}")
    if ":" not in text:  # a method alone, checked as ever
        name = "methods" if source.startswith("methods") else source
        return MethodSetting(validate.one_of(text, name, METHODS), source=source)
    where = f"{source} {text!r}"
    method, _, rest = (part.strip() for part in text.partition(":"))
    validate.one_of(method, f"{where}: its method", METHODS)
    texts: dict[str, str] = {}
    for piece in NEXT_SETTING.split(rest):
        name, equals, value = (part.strip() for part in piece.partition("="))
        if not (name and equals and value):
            raise InputError(f"{where}: {piece!r} is not FIELD=VALUE; write {SYNTAX}")
        name = name.replace("-", "_")
        if name in texts:
            raise InputError(f"{where} sets {name} twice ({texts[name]} and {value}); give each field once")
        if name in (reserved or {}):
            raise InputError(f"{where}: {name} is not a setting of one method: {reserved[name]}")
        texts[name] = value
    try:
        values = read_fields(texts)
    except InputError as exc:
        raise InputError(f"{where}: {exc} (qpa train --help describes each setting)") from None
    return MethodSetting(method, dict(sorted(values.items())), source)
