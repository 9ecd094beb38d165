"""Atomic files and folders, the folder lock, and JSON read with errors that name the file."""

import os

import pytest

from qpa_qiskit import BusyError, StateError
from qpa_qiskit.files import atomic_directory, atomic_write, exclusive, read_json, remove_stale_temporaries


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_files_and_folders_get_the_modes_of_new_ones(tmp_path, umask_022):
    atomic_write(tmp_path / "a.json", b"{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700
    assert (tmp_path / "out" / "x").read_text() == "x"


def test_a_failed_atomic_directory_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_the_lock_is_exclusive_and_released(tmp_path):
    with exclusive(tmp_path / ".lock", "busy: try later"):
        with (
            pytest.raises(BusyError, match="busy: try later"),
            exclusive(tmp_path / ".lock", "busy: try later"),
        ):
            pass
    with exclusive(tmp_path / ".lock", "busy"):  # released: taken again
        pass


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".checkpoint.pt.abc").write_bytes(b"half")
    (tmp_path / ".checkpoint.pt.dir").mkdir()
    (tmp_path / "checkpoint.pt").write_bytes(b"whole")
    removed = remove_stale_temporaries(tmp_path, "checkpoint.pt")
    assert sorted(p.name for p in removed) == [".checkpoint.pt.abc", ".checkpoint.pt.dir"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize(
    "content, match", [(None, "is missing"), (b"{", "JSONDecodeError"), (b"\xff", "Unicode")]
)
def test_read_json_names_the_file(tmp_path, content, match):
    path = tmp_path / "store.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StateError, match=match) as info:
        read_json(path, "job store", "restore it")
    assert str(path) in str(info.value) and "restore it" in str(info.value)
