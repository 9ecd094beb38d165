"""The README and docs/ as a user reads them: every python block runs as written, every
relative link leads somewhere."""

from __future__ import annotations

import warnings

import pytest
from pages import PAGES, REPO, anchors, code_blocks, links


def test_the_pages_are_the_readme_and_docs():
    names = {path.relative_to(REPO).as_posix() for path in PAGES}
    assert {"README.md", "docs/README.md", "docs/backends.md", "docs/studies.md"} <= names


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_points_at_an_existing_file_and_heading(path):
    text = path.read_text()
    broken = []
    for number, target in links(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{number}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{number}: {target} (no such heading)")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def test_every_page_has_a_link_checked():
    assert all(links(path.read_text()) for path in PAGES)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_python_blocks_run_as_written(path, tmp_path, monkeypatch):
    """A page's python blocks in order, in one namespace, in an empty folder; a block marked
    `<!-- not run: reason -->` is skipped, with its reason."""
    blocks = code_blocks(path.read_text(), "python")
    for block in blocks:
        assert block.not_run is None or block.not_run.strip(), block.line
    runnable = [block for block in blocks if block.not_run is None]
    if not runnable:
        pytest.skip(f"no python block to run ({len(blocks)} marked not run)")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in runnable:
            exec(compile(block.code, f"{path.name}:{block.line}", "exec"), namespace)


def test_the_readme_example_counts_what_it_says(tmp_path, monkeypatch):
    (block,) = code_blocks((REPO / "README.md").read_text(), "python")
    monkeypatch.chdir(tmp_path)  # it saves the model in the working folder
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block.code.replace("print(", "(").rstrip(), "README.md", "exec"), namespace)
    counts = namespace["model"].counts()
    assert (counts["trainable"], counts["circuit_angles"], counts["mapping"]) == (68984, 56, 68928)
    assert (counts["generated"], counts["qubits"]) == (198912, 7)
    assert "trainable: 68,984 (56 angles + 68,928 mapping); generated: 198,912; qubits: 7" in block.code
