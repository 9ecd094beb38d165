"""The ``qpa`` command line, one module per group of commands:

* :mod:`.quantum`: ``backends``, ``demo``;
* :mod:`.runs`: ``train``, ``eval``, ``export``, ``compare``, ``study``;
* :mod:`.noise`: ``noise snapshot|show``;
* :mod:`.jobs`: ``jobs submit|status|collect|list|cancel``.

Every error qpa-qiskit raises on purpose (:class:`~qpa_qiskit.errors.QPAError`) is printed
as one line, ``qpa: error: ...``, with exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import QPAError
from . import jobs, noise, quantum, runs


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The ``qpa`` parser. With `suppress_defaults` the run-configuration options have no
    default, so a parse tells which of them were given (:func:`.runs.given_options`)."""
    parser = argparse.ArgumentParser(prog="qpa", description="Quantum Parameter Adaptation with Qiskit")
    sub = parser.add_subparsers(dest="command", required=True)
    quantum.add_commands(sub)
    runs.add_commands(sub, suppress_defaults=suppress_defaults)
    noise.add_commands(sub)
    jobs.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    # what was given explicitly: a resumed run changes only that, a new one applies it last
    args.explicit = runs.given_options(build_parser(suppress_defaults=True).parse_args(argv))
    try:
        return args.func(args)
    except QPAError as exc:
        print(f"qpa: error: {exc}", file=sys.stderr)
        return 2
