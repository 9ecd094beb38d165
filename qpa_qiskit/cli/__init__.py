"""The ``qpa`` command line, one module per group of commands:

* :mod:`.quantum`: ``backends``, ``demo``;
* :mod:`.runs`: ``train``, ``eval``, ``export``, ``compare``, ``study``;
* :mod:`.noise`: ``noise snapshot|show``;
* :mod:`.jobs`: ``jobs submit|status|collect|list|cancel``.

Every error qpa-qiskit raises on purpose (:class:`~qpa_qiskit.errors.QPAError`) is printed
as one line, ``qpa: error: ...``, with exit status 2; never a traceback. A study or
``qpa compare`` whose runs did not all finish exits with status 1
(:class:`~qpa_qiskit.errors.TrialsFailed`). ``qpa train`` stopped before the step that would
pass its QPU-time budget exits with status 4 (:data:`.runs.BUDGET_REACHED`), saying how to
resume it; stopped by Ctrl-C, with 130.

Start-up: the command modules are imported lazily, only the one of the command that runs
(:func:`build_parser`; the commands are listed from :data:`.parsing.COMMANDS`), because they
import torch, transformers and qiskit, seconds of start-up that ``qpa --help``, ``qpa
--version`` and a mistyped command have no use for. For the same reason the package's
``__init__`` imports its re-exports on first use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

from .. import __version__
from ..errors import QPAError, TrialsFailed
from .parsing import COMMANDS, GIVEN, Parser, given, hide_underscore_spellings


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``qpa`` parser with the full options of `commands` (default: every command); the
    other commands are listed, with their help, but their modules are not imported."""
    wanted = {COMMANDS[c][0] for c in (COMMANDS if commands is None else commands) if c in COMMANDS}
    parser = Parser(prog="qpa", description="Quantum Parameter Adaptation with Qiskit")
    parser.add_argument("--version", action="version", version=f"qpa-qiskit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):  # in the table's order
        if module in wanted:
            importlib.import_module(f"{__name__}.{module}").add_commands(sub)
        else:
            for name, (owner, text) in COMMANDS.items():
                if owner == module:
                    sub.add_parser(name, help=text, add_help=False)
    hide_underscore_spellings(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top-level parser takes no option with a value: the first other word is the command
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    # what was given explicitly: a resumed run changes only that, a new one applies it last
    args.explicit = given(args)
    vars(args).pop(GIVEN, None)
    args.argv = argv  # the words given: a command stopped by Ctrl-C prints those that continue it
    try:
        return args.func(args)
    except QPAError as exc:
        print(f"qpa: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrialsFailed) else 2
