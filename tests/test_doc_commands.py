"""Every ``qpa`` command the README and docs/ show parses as written, and every study command
among them builds its whole grid (its options, settings and learning-rate selection checked)
without training: a renamed option or a grid the spec refuses fails here, not in a reader's
shell. Commands that take hours are run by hand; this keeps the rest of them honest."""

from __future__ import annotations

import shlex

import pytest
from pages import PAGES, REPO, code_blocks

from qpa_qiskit.cli import build_parser
from qpa_qiskit.studies.common import StudySpec


def doc_commands() -> list[tuple[str, str]]:
    """(page:line, command) of every line of a bash block that starts with ``qpa ``."""
    found = []
    for path in PAGES:
        for block in code_blocks(path.read_text(), "bash"):
            lines = block.code.replace("\\\n", " ").splitlines()
            for offset, line in enumerate(lines):
                words = shlex.split(line, comments=True)
                if words[:1] == ["qpa"]:
                    found.append(
                        (f"{path.relative_to(REPO).as_posix()}:{block.line + 1 + offset}", words[1:])
                    )
    return found


COMMANDS = doc_commands()


def test_the_docs_show_study_and_run_commands():
    kinds = {words[0] for _, words in COMMANDS}
    assert {"compare", "study", "train", "eval"} <= kinds and len(COMMANDS) > 20


@pytest.mark.parametrize("where, words", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_parses_and_its_study_builds_its_grid(where, words, monkeypatch):
    parser = build_parser([words[0]])
    args = parser.parse_args(words)  # an unknown option or value exits here, naming it
    if words[0] not in ("compare", "study") or "--help" in words:
        return
    planned = []

    def plan_only(spec, cfg=None, out=None, executor=None, log=print):
        checked = spec.checked(cfg)
        trials = checked.trials(cfg)
        selection = checked.selection(cfg, trials)
        planned.append(len(trials) if selection is None else len(selection.trials()))

    monkeypatch.setattr(StudySpec, "run", plan_only)
    args.explicit = set(getattr(args, "_given", {}))
    vars(args).pop("_given", None)
    assert args.func(args) == 0
    assert planned and planned[0] > 0
