"""Bad input and broken files of job stores: each is the project's own error, naming the
value or file and what to do; never a traceback, never a silent default or wrong result."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from qpa_qiskit import InputError, QPABackend, ansatz
from qpa_qiskit.cli import build_parser, main
from qpa_qiskit.errors import StateError
from qpa_qiskit.jobs import HardwareLoop, JobStore, plan_jobs, sync
from qpa_qiskit.qnn import shifted_parameter_sets

DEVICE = "ibm:fake_manila"
CREATE = ["--backend", DEVICE, "--qubits", "3", "--reps", "1", "--shots", "100"]


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """A job store whose one job is submitted and collected (3 qubits, 7 parameter sets)."""
    root = tmp_path_factory.mktemp("collected") / "store"
    circuit = ansatz(3, 1)
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
    store = JobStore.create(
        root, QPABackend(DEVICE, shots=100), circuit, evaluations={"batch": [shifted_parameter_sets(theta)]}
    )
    sync.submit(store, "batch", store.service(), log=quiet)
    sync.collect(store, "batch", store.service(), log=quiet)
    return root


@pytest.fixture
def store_root(collected, tmp_path) -> Path:
    """A fresh copy of the collected store, for a case to break."""
    return Path(shutil.copytree(collected, tmp_path / "store"))


def cli(*args: str) -> int:
    """Run a `qpa jobs` command without main's error handler, so the error itself is seen."""
    parsed = build_parser().parse_args(["jobs", *args])
    return parsed.func(parsed)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    return write(path, data[: len(data) // 2])


def a_file(tmp: Path) -> Path:
    return write(tmp / "a-file", "not a directory")


def meta_edit(root: Path, **changes) -> None:
    meta = json.loads((root / "store.json").read_text())
    for name, value in changes.items():
        if value is None:
            del meta[name]
        else:
            meta[name] = value
    (root / "store.json").write_text(json.dumps(meta))


def archived(root: Path, suffix: str) -> Path:
    return next((root / "local-service").glob(f"*{suffix}"))


def new_store(tmp: Path, **options) -> JobStore:
    return JobStore.create(tmp / "new", QPABackend(DEVICE, shots=100), ansatz(3, 1), **options)


CASES = [
    # ---------------------------------------------------------------- numbers (Python API)
    ("max_executions 0", lambda root, tmp: plan_jobs([3], 10, 0), InputError, "max_executions"),
    ("max_executions < 0", lambda root, tmp: plan_jobs([3], 10, -100), InputError, "got -100"),
    ("max_executions 2.5", lambda root, tmp: plan_jobs([3], 1, 2.5), InputError, "positive integer"),
    ("shots True", lambda root, tmp: plan_jobs([3], True), InputError, "shots must be a positive integer"),
    ("set count '3'", lambda root, tmp: plan_jobs(["3"], 10), InputError, "parameter-set count"),
    (
        "create max_executions 0",
        lambda root, tmp: new_store(tmp, max_executions=0),
        InputError,
        "max_executions (executions per job) must be a positive integer, got 0",
    ),
    ("create mode", lambda root, tmp: new_store(tmp, mode="dedicated"), InputError, "execution mode"),
    ("create kind", lambda root, tmp: new_store(tmp, kind="nightly"), InputError, "job store kind"),
    (
        "poll 0",
        lambda root, tmp: sync.collect(JobStore(root), "batch", JobStore(root).service(), poll=0),
        InputError,
        "poll (seconds) must be a finite number > 0",
    ),
    ("loop poll nan", lambda root, tmp: HardwareLoop(tmp / "j", poll=float("nan")), InputError, "poll"),
    (
        "loop label",
        lambda root, tmp: _labelled(HardwareLoop(tmp / "j"), "../up").probabilities(
            QPABackend(DEVICE, shots=10), ansatz(3, 1), np.zeros((1, 3)), 10
        ),
        InputError,
        "evaluation label",
    ),
    (
        "values of strings",
        lambda root, tmp: JobStore(root).add("more", [np.array([["a", "b", "c"]])]),
        InputError,
        "parameter sets must be an array of numbers",
    ),
    (
        "values nan",
        lambda root, tmp: JobStore(root).add("more", [np.full((1, 3), np.nan)]),
        InputError,
        "finite",
    ),
    # ---------------------------------------------------------------- folders
    ("store is a file", lambda root, tmp: JobStore(a_file(tmp)), InputError, "is a file, not a job store"),
    (
        "create on a file",
        lambda root, tmp: JobStore.create(a_file(tmp), QPABackend(DEVICE, shots=10), ansatz(3, 1)),
        InputError,
        "is a file; choose a new directory",
    ),
    (
        "create under a file",
        lambda root, tmp: JobStore.create(a_file(tmp) / "jobs", QPABackend(DEVICE, shots=10), ansatz(3, 1)),
        InputError,
        "cannot write the job store",
    ),
    # ---------------------------------------------------------------- broken files
    (
        "store.json truncated",
        lambda root, tmp: JobStore(truncate(root / "store.json").parent),
        StateError,
        "cannot read job store description",
    ),
    (
        "store.json garbage",
        lambda root, tmp: JobStore(write(root / "store.json", os.urandom(64) + b"\xff").parent),
        StateError,
        "store.json",
    ),
    (
        "store.json a list",
        lambda root, tmp: JobStore(write(root / "store.json", "[1, 2]").parent),
        StateError,
        "not a JSON object",
    ),
    (
        "store.json no shots",
        lambda root, tmp: JobStore(meta_edit(root, shots=None) or root),
        StateError,
        "no shots",
    ),
    (
        "store.json shots text",
        lambda root, tmp: JobStore(meta_edit(root, shots="many") or root),
        StateError,
        "shots must be a positive integer",
    ),
    (
        "circuit.qpy garbage",
        lambda root, tmp: JobStore(write(root / "circuit.qpy", b"QISKIT garbage").parent).isa,
        StateError,
        "cannot read circuit",
    ),
    (
        "circuit.qpy missing",
        lambda root, tmp: (root / "circuit.qpy").unlink() or JobStore(root).isa,
        StateError,
        "circuit.qpy is missing",
    ),
    (
        "values truncated",
        lambda root, tmp: truncate(root / "values" / "batch.npz") and JobStore(root).probabilities("batch"),
        StateError,
        "cannot read parameter sets of 'batch'",
    ),
    (
        "values wrong shape",
        lambda root, tmp: (
            npz(root / "values" / "batch.npz", pub0=np.zeros((2, 5)))
            and JobStore(root).probabilities("batch")
        ),
        StateError,
        "are not arrays of shape (B, 3)",
    ),
    (
        "counts truncated",
        lambda root, tmp: (
            truncate(root / "counts" / "batch.job-0000.npz") and JobStore(root).probabilities("batch")
        ),
        StateError,
        "fetched again by its id",
    ),
    (
        "counts wrong shape",
        lambda root, tmp: (
            npz(root / "counts" / "batch.job-0000.npz", counts=np.zeros((7, 4), dtype=int))
            and JobStore(root).probabilities("batch")
        ),
        StateError,
        "are not (7, 8) counts of 100 shots per set",
    ),
    (
        "ledger a folder",
        lambda root, tmp: (
            (root / "ledger.jsonl").unlink() or (root / "ledger.jsonl").mkdir() or JobStore(root).rows()
        ),
        StateError,
        "cannot read the ledger",
    ),
    (
        "archive record garbage",
        lambda root, tmp: (
            truncate(archived(root, ".json"))
            and JobStore(root).service().find(JobStore(root).tags("batch", 0))
        ),
        StateError,
        "local job record",
    ),
    (
        "archive results garbage",
        lambda root, tmp: (
            write(archived(root, ".npz"), b"PK garbage")
            and JobStore(root).service().result(archived(root, ".npz").stem)
        ),
        StateError,
        "cannot read local job results",
    ),
    # ---------------------------------------------------------------- qpa jobs
    (
        "--max-executions 0",
        lambda root, tmp: cli("submit", str(tmp / "j"), *CREATE, "--max-executions", "0", "--dry-run"),
        InputError,
        "max_executions (executions per job) must be a positive integer, got 0",
    ),
    (
        "--max-executions -5",
        lambda root, tmp: cli("submit", str(tmp / "j"), *CREATE, "--max-executions", "-5", "--dry-run"),
        InputError,
        "got -5",
    ),
    (
        "--seed -1",
        lambda root, tmp: cli("submit", str(tmp / "j"), *CREATE, "--seed", "-1", "--dry-run"),
        InputError,
        "--seed must be an integer >= 0, got -1",
    ),
    (
        "--theta binary garbage",
        lambda root, tmp: cli(
            "submit", str(tmp / "j"), *CREATE, "--theta", str(write(tmp / "t.txt", os.urandom(256)))
        ),
        InputError,
        "cannot read angles",
    ),
    (
        "--theta .npy garbage",
        lambda root, tmp: cli(
            "submit", str(tmp / "j"), *CREATE, "--theta", str(write(tmp / "t.npy", b"\x93NUMPY?"))
        ),
        InputError,
        "cannot read angles",
    ),
    (
        "--theta empty",
        lambda root, tmp: cli("submit", str(tmp / "j"), *CREATE, "--theta", str(write(tmp / "t.txt", ""))),
        InputError,
        "is empty",
    ),
    (
        "--theta wrong shape",
        lambda root, tmp: cli(
            "submit", str(tmp / "j"), *CREATE, "--theta", str(write(tmp / "t.txt", "1 2 3 4 5"))
        ),
        InputError,
        "--theta needs shape (3,) or (steps, 3), got (1, 5)",
    ),
    (
        "--parameters strings",
        lambda root, tmp: (
            np.save(tmp / "p.npy", np.array([["a", "b", "c"]]))
            or cli("submit", str(tmp / "j"), *CREATE, "--parameters", str(tmp / "p.npy"))
        ),
        InputError,
        "are not real numbers",
    ),
    (
        "--parameters nan",
        lambda root, tmp: cli(
            "submit", str(tmp / "j"), *CREATE, "--parameters", str(write(tmp / "p.txt", "1 nan 3"))
        ),
        InputError,
        "must be finite numbers",
    ),
    (
        "--parameters 3-D",
        lambda root, tmp: (
            np.save(tmp / "p.npy", np.zeros((2, 2, 3)))
            or cli("submit", str(tmp / "j"), *CREATE, "--parameters", str(tmp / "p.npy"))
        ),
        InputError,
        "--parameters needs shape (B, 3)",
    ),
    ("--poll 0", lambda root, tmp: cli("collect", str(root), "--poll", "0"), InputError, "poll (seconds)"),
    ("status of a file", lambda root, tmp: cli("status", str(a_file(tmp))), InputError, "is a file"),
    (
        "collect broken store.json",
        lambda root, tmp: cli("collect", str(truncate(root / "store.json").parent)),
        StateError,
        "store.json",
    ),
]


def _labelled(loop: HardwareLoop, label: str) -> HardwareLoop:
    loop.label = label
    return loop


@pytest.mark.parametrize("description, call, error, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(description, call, error, fragment, store_root, tmp_path):
    with pytest.raises(error) as info:
        call(store_root, tmp_path)
    assert fragment in str(info.value)
    if error is StateError:  # names the broken file, which is in the store
        assert str(store_root) in str(info.value)


def test_the_command_line_prints_them_as_one_line(tmp_path, capsys):
    assert main(["jobs", "submit", str(tmp_path / "j"), *CREATE, "--max-executions", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qpa: error: max_executions") and "Traceback" not in err
    assert not (tmp_path / "j").exists()


def test_a_broken_counts_file_is_fetched_again(store_root):
    store = JobStore(store_root)
    expected = store.probabilities("batch")
    truncate(store_root / "counts" / "batch.job-0000.npz")
    messages = []
    report = sync.collect(store, "batch", store.service(), log=messages.append)
    assert report.collected == ["batch/job-0000"] and any("fetching it again" in m for m in messages)
    np.testing.assert_array_equal(store.probabilities("batch"), expected)


def test_list_shows_good_stores_and_each_broken_one(collected, tmp_path, capsys):
    jobs = tmp_path / "jobs"
    for name in ("good", "bad-meta", "bad-values"):
        shutil.copytree(collected, jobs / name)
    truncate(jobs / "bad-meta" / "store.json")
    write(jobs / "bad-values" / "values" / "batch.npz", b"garbage")
    shutil.copytree(collected, jobs / ".half.x1y2")  # a store killed while being created
    assert main(["jobs", "list", str(jobs)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["store", "kind", "backend", "jobs", "submitted", "collected", "failed"]
    assert out[1].split() == [str(jobs / "good"), "batch", DEVICE, "1", "1", "1", "0"]
    assert out[2].startswith(f"{jobs / 'bad-meta'}: cannot be read: cannot read job store description")
    assert out[3].startswith(f"{jobs / 'bad-values'}: cannot be read: cannot read parameter sets")
    assert out[4] == "2 of 3 job store(s) cannot be read; see above" and len(out) == 5
    shutil.rmtree(jobs / "bad-meta")
    shutil.rmtree(jobs / "bad-values")
    assert main(["jobs", "list", str(jobs)]) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_store_this_user_cannot_write(store_root):
    store = JobStore(store_root)
    (store_root / ".lock").unlink()
    store_root.chmod(0o500)
    try:
        with pytest.raises(StateError, match="must be a directory this user can write to"):
            sync.collect(store, "batch", store.service(), log=quiet)
    finally:
        store_root.chmod(0o700)
