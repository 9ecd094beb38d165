"""The studies package's layout (issue 37): the spec, the pipeline and the report each in its
module, the old ``studies.common`` imports giving the same objects, and each study's Python
entry point made from its spec, calling the one pipeline."""

import importlib
import inspect

import pytest

from qpa_qiskit.studies import common, pipeline, report, spec
from qpa_qiskit.studies.spec import StudySpec

STUDIES = [
    ("compare", "compare", "CompareStudy"),
    ("shots", "study_shots", "ShotsStudy"),
    ("noise", "study_noise", "NoiseStudy"),
    ("params", "study_params", "ParamsStudy"),
    ("ablation", "study_ablation", "AblationStudy"),
    ("hardware", "study_hardware", "HardwareStudy"),
]


def test_the_old_common_imports_give_the_objects_of_their_new_modules():
    homes = (spec, pipeline, report)
    assert len(common.__all__) == 28
    for name in common.__all__:
        obj = getattr(common, name)
        assert [m for m in homes if getattr(m, name, None) is obj], name
    assert common.StudySpec is StudySpec and common.default_out is pipeline.default_out


@pytest.mark.parametrize("module, function, spec_class", STUDIES)
def test_each_study_function_is_made_from_its_spec_and_runs_it(module, function, spec_class, monkeypatch):
    mod = importlib.import_module(f"qpa_qiskit.studies.{module}")
    fn, cls = getattr(mod, function), getattr(mod, spec_class)
    assert (fn.__name__, fn.__module__) == (function, mod.__name__)
    assert list(inspect.signature(fn).parameters) == ["cfg", "out", "executor", "log", "axes"]
    calls = []

    def run(self, cfg=None, out=None, executor=None, log=print):
        calls.append((self, cfg, out, executor, log))
        return "report"

    monkeypatch.setattr(StudySpec, "run", run)  # params wraps it (its target errors) and calls it
    log = print
    assert fn("cfg", "out", executor="ex", log=log, seeds=(3,)) == "report"
    assert calls == [(cls(seeds=(3,)), "cfg", "out", "ex", log)]
    with pytest.raises(TypeError):
        fn(no_such_axis=1)


def test_a_spec_runs_through_the_one_pipeline(monkeypatch):
    from qpa_qiskit.studies.shots import ShotsStudy

    seen = []
    monkeypatch.setattr(spec, "run_pipeline", lambda *args: seen.append(args) or "rows")
    study = ShotsStudy(seeds=(1,))
    assert study.run("cfg", "out") == "rows"
    assert seen == [(study, "cfg", "out", None, print)]
