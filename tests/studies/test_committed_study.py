"""A study that survives a stop and a fresh clone (issue 38): its folder, committed with git,
resumes in a new clone with the same command, training nothing twice; what may not be resumed
is refused naming what differs, and a missing or broken checkpoint costs its own run only."""

import json
import shutil
import subprocess

import pytest
from conftest import make_corpus

from qpa_qiskit.cli import main
from qpa_qiskit.studies import folder
from qpa_qiskit.studies.runner import RESULT, STUDY
from qpa_qiskit.train import Run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed here")

OPTIONS = (
    "--model tiny-gpt2 --block-size 32 --chunk-size 64 --reps 1 --hidden 8 --steps 3 --save-every 1 "
    "--eval-tokens 200 --dev-tokens 200 --methods lora qpa-lora --seeds 0 1 --lrs 1e-3 1e-2"
).split()
STOPPED_RUN = "qpa-lora-s0-lr0.001"  # the third selection run, stopped after its second step
FINISHED = ["lora-s0-lr0.001", "lora-s0-lr0.01"]  # the selection runs finished before the stop


def command(corpus, out) -> list[str]:
    return ["compare", *OPTIONS, "--data", str(corpus), "--out", str(out)]


def stop_at(monkeypatch, name: str, step: int) -> None:
    """Ctrl-C in the run `name` once it has trained `step` steps (checkpointed: --save-every 1)."""
    real = Run.train_step

    def interrupted(run):
        if run.dir.name == name and run.step == step:
            raise KeyboardInterrupt
        return real(run)

    monkeypatch.setattr(Run, "train_step", interrupted)


def trained_steps(monkeypatch) -> list[tuple[str, int]]:
    """(run, step before it) of every training step from now on."""
    steps, real = [], Run.train_step

    def spy(run):
        steps.append((run.dir.name, run.step))
        return real(run)

    monkeypatch.setattr(Run, "train_step", spy)
    return steps


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """(the data, a study run straight through, the same study stopped in its third selection
    run after two of its three steps)."""
    root = tmp_path_factory.mktemp("committed")
    corpus = make_corpus(root / "wikitext")
    with pytest.MonkeyPatch.context():
        assert main(command(corpus, root / "straight")) == 0
    with pytest.MonkeyPatch.context() as patch:
        stop_at(patch, STOPPED_RUN, 2)
        assert main(command(corpus, root / "stopped")) == 130
    return corpus, root / "straight", root / "stopped"


def copy(source, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(source, out)
    return out


def git(cwd, *args) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def same_results(out, straight) -> None:
    for name in ("results.json", "selection.json"):
        assert (out / name).read_text() == (straight / name).read_text(), name


def test_a_committed_study_resumes_in_a_fresh_clone_training_nothing_twice(studies, tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    corpus, straight, _ = studies
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.pt\n*.jsonl\n")  # as many repositories have: weights, logs
    monkeypatch.chdir(repo)
    with monkeypatch.context() as patch:  # run, stopped with Ctrl-C part-way
        stop_at(patch, STOPPED_RUN, 2)
        assert main(command(corpus, "studies/cmp")) == 130
    out = repo / "studies" / "cmp"
    (out / STOPPED_RUN / ".checkpoint.pt.x1y2z3").write_bytes(b"a write killed midway")
    git(repo, "add", "studies/cmp")
    git(repo, "commit", "-q", "-m", "the study so far")
    committed = git(repo, "ls-files", "studies/cmp").split()
    assert git(repo, "status", "--porcelain", "--ignored", "studies/cmp")  # something is left out...
    assert not git(repo, "status", "--porcelain", "studies/cmp")  # ...and all of it ignored
    assert "studies/cmp/.gitignore" in committed and "studies/cmp/study.json" in committed
    assert f"studies/cmp/{STOPPED_RUN}/checkpoint.pt" in committed  # the run in flight
    assert f"studies/cmp/{STOPPED_RUN}/metrics.jsonl" in committed  # whatever the repository ignores
    hidden = [p for p in committed if "/." in p and p != "studies/cmp/.gitignore"]  # locks, temporary files
    assert not hidden and not [p for p in committed if "/features/" in p]
    assert (out / "features").is_dir() and (out / STOPPED_RUN / ".lock").exists()  # there, not committed
    kept = {name: (out / name / RESULT).read_text() for name in FINISHED}
    metrics = {name: (out / name / "metrics.jsonl").read_text() for name in [*FINISHED, STOPPED_RUN]}

    clone = tmp_path / "clone"
    git(repo, "clone", "-q", ".", "../clone")  # as docs/studies.md shows it
    monkeypatch.chdir(clone)
    steps = trained_steps(monkeypatch)
    capsys.readouterr()
    assert main(command(corpus, "studies/cmp")) == 0  # the same command
    printed = capsys.readouterr().out
    out = clone / "studies" / "cmp"
    assert "2 of 4 runs already finished" in printed
    assert not [s for s in steps if s[0] in FINISHED]  # the finished runs were not trained again
    assert [s for s in steps if s[0] == STOPPED_RUN] == [(STOPPED_RUN, 2)]  # resumed at its checkpoint
    for name in FINISHED:
        assert (out / name / "metrics.jsonl").read_text() == metrics[name]
        before, after = json.loads(kept[name]), json.loads((out / name / RESULT).read_text())
        assert {k: after[k] for k in before} == before  # a final run now: its test figures added
    assert (out / STOPPED_RUN / "metrics.jsonl").read_text().startswith(metrics[STOPPED_RUN])
    same_results(out, straight)
    assert not git(clone, "status", "--porcelain", "--untracked-files=no", "studies/cmp/study.json")


def test_a_different_grid_is_refused_naming_each_field_with_both_values(studies, tmp_path, capsys):
    corpus, _, stopped = studies
    out = copy(stopped, tmp_path)
    before = sorted(str(p) for p in out.rglob("*"))
    changed = command(corpus, out)
    changed[changed.index("--steps") + 1] = "4"
    changed.insert(changed.index("--seeds") + 3, "2")  # --seeds 0 1 2
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert f"{out} holds another study (different config, seeds): " in err
    assert "config.training.steps: 3 in the folder, 4 given" in err
    assert "seeds: [0, 1] in the folder, [0, 1, 2] given" in err
    assert "give the same settings to resume it, or choose a new --out folder" in err
    assert sorted(str(p) for p in out.rglob("*")) == before  # nothing written, nothing trained


def test_another_results_version_is_refused_and_another_package_version_is_not(studies, tmp_path, capsys,
                                                                               monkeypatch):  # fmt: skip
    corpus, straight, _ = studies
    out = copy(straight, tmp_path)
    record = json.loads((out / STUDY).read_text())
    assert record["code"] == {"results_version": folder.RESULTS_VERSION, "qpa_qiskit": folder.__version__}
    monkeypatch.setattr(folder, "RESULTS_VERSION", folder.RESULTS_VERSION + 1)
    assert main(command(corpus, out)) == 2
    err = capsys.readouterr().err
    version = folder.RESULTS_VERSION
    assert f"code.results_version: {version - 1} in the folder, {version} given" in err
    assert f"finish it with the qpa-qiskit that made it ({record['code']['qpa_qiskit']})" in err
    monkeypatch.undo()
    monkeypatch.setattr(folder, "__version__", "99.0")
    steps = trained_steps(monkeypatch)
    assert main(command(corpus, out)) == 0 and steps == []
    assert f"made by qpa-qiskit {record['code']['qpa_qiskit']}, resumed by 99.0" in capsys.readouterr().out
    same_results(out, straight)


def test_a_folder_from_before_the_results_version_is_version_1(studies, tmp_path, capsys, monkeypatch):
    corpus, straight, _ = studies
    out = copy(straight, tmp_path)
    record = json.loads((out / STUDY).read_text())
    del record["code"]
    (out / STUDY).write_text(json.dumps(record))
    (out / folder.GITIGNORE).unlink()
    steps = trained_steps(monkeypatch)
    assert main(command(corpus, out)) == 0 and steps == []
    assert (out / folder.GITIGNORE).read_text() == folder.GITIGNORE_TEXT  # written where it had none
    monkeypatch.setattr(folder, "RESULTS_VERSION", 2)
    assert main(command(corpus, out)) == 2
    assert "code.results_version: 1 in the folder, 2 given" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_broken_checkpoint_of_the_run_in_flight_retrains_that_run_only(studies, tmp_path, capsys,
                                                                         monkeypatch, damage):  # fmt: skip
    corpus, straight, stopped = studies
    out = copy(stopped, tmp_path)
    checkpoint = out / STOPPED_RUN / "checkpoint.pt"
    if damage == "missing":
        checkpoint.unlink()
    else:
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    steps = trained_steps(monkeypatch)
    assert main(command(corpus, out)) == 0
    err = capsys.readouterr().err
    why = "is missing" if damage == "missing" else "cannot be read"
    assert f"{out / STOPPED_RUN}: it has trained 2 steps, and its checkpoint {why}" in err
    assert "only this run trains again, from its start" in err
    assert [s for s in steps if s[0] == STOPPED_RUN] == [(STOPPED_RUN, n) for n in range(3)]  # from step 0
    assert not [s for s in steps if s[0] in FINISHED]
    if damage == "truncated":  # kept aside, not deleted
        assert "kept aside as checkpoint.pt.broken" in err
        assert len((out / STOPPED_RUN / "checkpoint.pt.broken").read_bytes()) == 100
    same_results(out, straight)


def test_a_broken_checkpoint_of_a_selection_run_to_score_retrains_that_run_only(studies, tmp_path, capsys,
                                                                               monkeypatch):  # fmt: skip
    corpus, straight, stopped = studies
    chosen = json.loads((straight / "selection.json").read_text())["settings"][0]["chosen"]["lr"]
    name = f"lora-s0-lr{chosen:g}"  # finished as a selection run; the choice makes it a final run
    out = copy(stopped, tmp_path)
    selection_result = (out / name / RESULT).read_bytes()
    (out / name / "checkpoint.pt").write_bytes(b"")
    steps = trained_steps(monkeypatch)
    assert main(command(corpus, out)) == 0
    err = capsys.readouterr().err
    assert f"{out / name}: its test split is to be scored from its checkpoint, which cannot be read" in err
    assert "kept aside as result.json.stale, checkpoint.pt.broken" in err
    assert (out / name / "result.json.stale").read_bytes() == selection_result
    assert (out / name / "checkpoint.pt.broken").read_bytes() == b""
    assert [s for s in steps if s[0] == name] == [(name, n) for n in range(3)]
    assert not [s for s in steps if s[0] in FINISHED and s[0] != name]
    same_results(out, straight)


def test_a_finished_run_never_needs_its_checkpoint(studies, tmp_path, monkeypatch):
    corpus, straight, _ = studies
    out = copy(straight, tmp_path)
    for checkpoint in out.glob("*/checkpoint.pt"):
        checkpoint.unlink()
    steps = trained_steps(monkeypatch)
    assert main(command(corpus, out)) == 0 and steps == []
    same_results(out, straight)
