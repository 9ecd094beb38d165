"""The README and the pages of docs/: their sections, code blocks, links and headings.

One reader for every test that runs or checks what these pages say, so that text moved from one
page to another is found by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")
FENCE = re.compile(r"^```(\S*)\s*$")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")


def page(name: str) -> str:
    """The text of `name` ("README.md", "docs/studies.md"), relative to the repository."""
    return (REPO / name).read_text()


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every heading outside code blocks."""
    found = []
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def section(text: str, start: str) -> str:
    """From the heading line that begins with `start` (say "## Noise:") up to the next heading of
    the same or a higher level; the heading must exist, once."""
    level = len(start) - len(start.lstrip("#"))
    lines = text.splitlines(keepends=True)
    prose = {number for number, _ in prose_lines(text)}
    starts = [i for i, line in enumerate(lines) if i + 1 in prose and line.startswith(start)]
    assert len(starts) == 1, f"{start!r}: {len(starts)} headings"
    end = len(lines)
    for i in range(starts[0] + 1, len(lines)):
        match = HEADING.match(lines[i])
        if i + 1 in prose and match and len(match.group(1)) <= level:
            end = i
            break
    return "".join(lines[starts[0] : end])


@dataclass(frozen=True)
class Block:
    code: str
    line: int  # of the opening fence
    not_run: str | None  # the reason given by a `<!-- not run: reason -->` line just before it


def code_blocks(text: str, lang: str) -> list[Block]:
    """The fenced blocks of language `lang` (```python, ```bash), in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if match.group(1) == lang:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            reason = NOT_RUN.fullmatch(before.strip())
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(code, i + 1, reason.group(1) if reason else None))
        i = end + 1
    return blocks


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings, repeated titles numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for _, title in headings(text):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code blocks, code spans
    dropped."""
    found = []
    for number, line in prose_lines(text):
        line = re.sub(r"`[^`]*`", "", line)
        found += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return found
