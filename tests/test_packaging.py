"""Packaging: the wheel ships the noise-model snapshots and uses them; the dependency bounds are
what the code needs and what is installed; license, py.typed, classifiers; optional extras."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import qpa_qiskit
from qpa_qiskit.noise import packaged_dir, snapshot_dirs

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SNAPSHOTS = ("brisbane", "fez", "sherbrooke", "torino")


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    items = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return {Requirement(r).name: Requirement(r) for r in items}


# ---------------------------------------------------------------- the snapshots as package data
def test_the_snapshots_are_package_data_and_the_checkout_is_no_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QPA_NOISE_MODELS", raising=False)
    package = Path(qpa_qiskit.__file__).resolve().parent
    assert packaged_dir().resolve() == package / "noise" / "models"
    assert {p.stem for p in packaged_dir().glob("*.json")} >= set(SNAPSHOTS)
    assert snapshot_dirs() == [tmp_path / "noise_models", packaged_dir()]
    # no second copy beside the package: the checkout's noise_models/ is the place for a user's own
    # snapshots (issue 35), and holds none of them
    assert not list((REPO / "noise_models").glob("*.json"))


@pytest.mark.slow
def test_an_installed_wheel_ships_the_snapshots_and_uses_them(tmp_path):
    """Before: the wheel had no snapshots and aer_noisy:brisbane fell back to the checkout (or,
    installed, silently to the live fake device). Built offline with the installed setuptools,
    installed with --no-deps into a fresh venv whose dependencies are this venv's (a .pth)."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "qpa_qiskit", source / "qpa_qiskit", ignore=ignore)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", dist, source],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = dist.glob("qpa_qiskit-*.whl")

    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for stem in SNAPSHOTS:
        assert f"qpa_qiskit/noise/models/{stem}.json" in names
    assert "qpa_qiskit/noise/models/README.md" in names and "qpa_qiskit/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    assert "Classifier: Typing :: Typed" in meta
    assert 'Requires-Dist: qiskit-machine-learning>=0.9; extra == "bench"' in meta

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())  # fmt: skip
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel],
                   check=True, capture_output=True, cwd=tmp_path)  # fmt: skip
    # the dependencies: this venv's site-packages, after the fresh one (a plain path: its .pth
    # files, this checkout's editable install among them, are not read)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = (
        "import json, qpa_qiskit\n"
        "from qpa_qiskit import QPABackend\n"
        "from qpa_qiskit.backends.devices import noise_source\n"
        "from qpa_qiskit.noise import Snapshot, find_snapshot\n"
        "b = QPABackend('aer_noisy:brisbane')\n"
        "s = noise_source(b.device_name)\n"
        "print(json.dumps({'package': qpa_qiskit.__file__, 'found': str(find_snapshot('brisbane')),\n"
        "  'snapshot': isinstance(s, Snapshot), 'path': str(getattr(s, 'path', None)),\n"
        "  'qubits': b.connect().num_qubits}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QPA_NOISE_MODELS")}
    out = subprocess.run([python, "-c", script], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    models = site / "qpa_qiskit" / "noise" / "models"
    assert Path(got["package"]).resolve().is_relative_to(site.resolve())
    assert got["snapshot"] is True
    assert got["found"] == got["path"] == str((models / "brisbane.json").resolve())
    assert got["qubits"] == 127


# ---------------------------------------------------------------- dependency bounds
# name -> (specifier, versions it must refuse, why); the tests check each against the installed one
BOUNDS = {
    "peft": (">=0.18", ["0.17.1"], "the FFA tuner relies on BaseTuner.tuner_layer_cls, "
             "target_module_mapping and BaseTuner._replace_module, new in peft 0.18"),
    "transformers": ("<5.40,>=4.56", ["4.55.4", "5.40.0"], "from_pretrained(dtype=) is new in 4.56; "
                     "5.40 removes past_key_values, which peft's prefix tuning passes"),
    "qiskit-ibm-runtime": ("<0.52,>=0.51", ["0.50.0", "0.52.0"], "executor_sampler.Sampler and "
                           "options_models are new in 0.51; its 0.x minors change APIs"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bounds_are_set_and_the_installed_version_satisfies_them(name):
    specifier, refused, _ = BOUNDS[name]
    requirement = requirements()[name]
    assert str(requirement.specifier) == specifier
    assert requirement.specifier.contains(Version(metadata.version(name)))
    assert not any(requirement.specifier.contains(Version(v)) for v in refused)


def test_every_installed_requirement_satisfies_its_bound():
    for extra in (None, *PROJECT["optional-dependencies"]):
        for name, requirement in requirements(extra).items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue  # an extra that is not installed here
            assert requirement.specifier.contains(Version(installed), prereleases=True), (name, installed)


def test_the_peft_bound_is_what_the_ffa_tuner_needs():
    """The FFA tuner defines no _replace_module and no trainable-marking of its own: it needs
    the BaseTuner of peft 0.18 (before, these were abstract and the tuner could not be built)."""
    from peft.tuners.tuners_utils import BaseTuner

    from qpa_qiskit.adapters.ffa import FFALayer, FFAModel

    assert {"tuner_layer_cls", "target_module_mapping"} <= set(BaseTuner.__annotations__)
    assert FFAModel.tuner_layer_cls is FFALayer
    assert "_replace_module" not in vars(FFAModel) and "_replace_module" in vars(BaseTuner)
    assert "_mark_only_adapters_as_trainable" not in vars(FFAModel)


def test_the_transformers_lower_bound_is_what_the_code_needs():
    assert "dtype=dtype" in (REPO / "qpa_qiskit" / "models.py").read_text()  # not torch_dtype=
    assert "torch_dtype" not in (REPO / "qpa_qiskit" / "models.py").read_text()


# ---------------------------------------------------------------- metadata
def test_license_py_typed_and_classifiers():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert (Path(qpa_qiskit.__file__).parent / "py.typed").is_file()
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]  # the expression says it
    import setuptools

    (build,) = PYPROJECT["build-system"]["requires"]
    assert Requirement(build).specifier == Requirement("setuptools>=77").specifier  # license expressions
    assert Requirement(build).specifier.contains(Version(setuptools.__version__))


def test_qiskit_machine_learning_is_an_extra_the_test_command_installs():
    assert "qiskit-machine-learning" not in requirements()
    assert "qiskit-machine-learning" in requirements("bench")
    command = (REPO / "README.md").read_text().splitlines()[4]
    assert '-e ".[dev,ray,notebook]"' in command and "pytest" in command
    assert "qiskit-machine-learning" in requirements("dev")


def test_the_benchmarks_without_qiskit_machine_learning_say_what_to_install(monkeypatch, capsys):
    from qpa_qiskit import bench
    from qpa_qiskit.errors import DependencyError

    for name in [m for m in sys.modules if m.startswith("qiskit_machine_learning")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "qiskit_machine_learning", None)  # import fails
    with pytest.raises(DependencyError, match=r"needs qiskit-machine-learning.*qpa-qiskit\[bench\]"):
        bench.require_qml("the test")
    with pytest.raises(SystemExit) as info:
        bench.main(["primitives", "--qubits", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert "bench primitives needs qiskit-machine-learning" in err
    assert "pip install 'qpa-qiskit[bench]'" in err
    with pytest.raises(SystemExit):
        bench.main(["qnn", "--qubits", "2"])
    assert "--no-baseline leaves it out" in capsys.readouterr().err
