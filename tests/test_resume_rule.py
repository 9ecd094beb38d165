"""What a resumed run may change (qpa_qiskit.train.resume): one rule for ``qpa train --resume``,
``qpa eval``/``qpa export`` and a study's trials, checked on configurations alone (no model)."""

from pathlib import Path

import pytest

from qpa_qiskit.errors import InputError
from qpa_qiskit.train.resume import MAY_CHANGE, PLACEMENT, RESUMABLE, persisted, resume_config
from qpa_qiskit.train.run_config import RunConfig

RUN = Path("runs/r")


def test_each_purpose_may_change_its_own_settings_and_a_trial_only_where_it_trains():
    assert MAY_CHANGE["train"] == RESUMABLE
    assert MAY_CHANGE["evaluate"] == RESUMABLE | {"data"}
    assert MAY_CHANGE["trial"] == set(PLACEMENT) and set(PLACEMENT) <= RESUMABLE


def test_settings_given_by_name_are_compared_by_name():
    stored = RunConfig()
    assert resume_config(stored, {}, RUN) is stored
    resumed = resume_config(stored, {"steps": 50, "device": "cpu", "rank": stored.adapter.rank}, RUN)
    assert resumed.training.steps == 50 and resumed.training.device == "cpu"
    with pytest.raises(InputError, match=r"rank: stored 4, given 8\). A resumed run may change only "):
        resume_config(stored, {"rank": 8, "steps": 50}, RUN)
    with pytest.raises(InputError, match=r"data: stored .* start a new run for other settings"):
        resume_config(stored, {"data": "elsewhere"}, RUN, "train")
    assert resume_config(stored, {"data": "elsewhere"}, RUN, "evaluate").task.data.endswith("elsewhere")


def test_an_evaluation_setting_the_run_does_not_read_is_refused():
    with pytest.raises(InputError, match="--padded-block sets the line length of the padded-lines protocol"):
        resume_config(RunConfig(), {"padded_block": 64}, RUN, "evaluate")


def test_a_trial_compares_its_whole_configuration_less_where_it_trains():
    stored = RunConfig()
    elsewhere = stored.replace(device="cpu")
    assert resume_config(stored, elsewhere, RUN, "trial") is elsewhere
    with pytest.raises(InputError, match=r"other settings \(steps: 30 -> 50\); use another study folder"):
        resume_config(stored, stored.replace(steps=50), RUN, "trial")


def test_a_new_length_and_device_are_recorded_never_fewer_steps_than_done():
    stored = RunConfig()
    assert persisted(stored, stored.replace(steps=50, device="cpu"), 30) == {"steps": 50, "device": "cpu"}
    assert persisted(stored, stored.replace(steps=20), 25) == {}
    assert persisted(stored, stored.replace(eval_tokens=100), 10) == {}
