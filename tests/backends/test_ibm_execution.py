"""How IBM Quantum runs the jobs: execution modes (job by default for training, a refused
Session or Batch in one line), retries of transient failures only, the runtime's sampler
options and the per-job QPU-time cap, usage (the dry run's estimate, the ledger's record),
and bad inputs refused at construction. All offline: local testing mode and fakes."""

from types import SimpleNamespace

import numpy as np
import pytest

from qpa_qiskit import AccountError, InputError, QPABackend, SpecError, ansatz
from qpa_qiskit.cli import main
from qpa_qiskit.config import RunConfig
from qpa_qiskit.jobs import HardwareLoop, JobStore, RuntimeJobs, is_transient, sync, with_retries
from qpa_qiskit.qnn import shifted_parameter_sets

DEVICE = "ibm:fake_manila"
TOKEN = "a1B2c3D4e5F6g7H8i9J0-sEcReT-tOkEn"
FORBIDDEN = (
    "403 Client Error: Forbidden for url: https://quantum.cloud.ibm.com/api/v1/sessions. You are not "
    "authorized to run a session when using the open plan., Error code: 1352."
)


def quiet(_message):
    pass


def make_store(root, mode="batch", **options):
    backend = QPABackend(DEVICE, shots=500, **options)
    circuit = ansatz(3, 1)
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, circuit.num_parameters)
    store = JobStore.create(
        root, backend, circuit, mode=mode, evaluations={"batch": [shifted_parameter_sets(theta)]}
    )
    return store, backend


def refusing(monkeypatch, name: str) -> None:
    """The runtime's Session or Batch refused by the service, as a 403 on creation."""
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    def refuse(*args, **kwargs):
        raise RequestsApiError(FORBIDDEN, 403)

    monkeypatch.setattr(qiskit_ibm_runtime, name, refuse)


# ---------------------------------------------------------------------- execution modes
def test_the_hardware_loop_submits_in_job_mode_unless_told(tmp_path, monkeypatch):
    import qiskit_ibm_runtime

    opened = []
    for name in ("Session", "Batch"):
        real = getattr(qiskit_ibm_runtime, name)
        monkeypatch.setattr(
            qiskit_ibm_runtime,
            name,
            lambda *a, real=real, name=name, **k: opened.append(name) or real(*a, **k),
        )
    circuit = ansatz(3, 1)
    values = np.random.default_rng(1).uniform(0, 2 * np.pi, (2, circuit.num_parameters))
    for mode, expected in (("job", []), ("session", ["Session"]), ("batch", ["Batch"])):
        opened.clear()
        loop = (
            HardwareLoop(tmp_path / mode, log=quiet, poll=0.01)
            if mode == "job"
            else HardwareLoop(tmp_path / mode, log=quiet, poll=0.01, mode=mode)
        )
        backend = QPABackend(DEVICE, shots=200, hardware_loop=loop)
        loop.label = "step-000001"
        backend.probabilities(circuit, values)
        loop.close()
        assert opened == expected, mode
        store = JobStore(tmp_path / mode)
        assert store.meta["mode"] == mode
        assert [r["mode"] for r in store.ledger.records() if r["kind"] == "intent"] == [mode]
    with pytest.raises(InputError, match="execution mode must be one of job, batch, session"):
        HardwareLoop(tmp_path / "x", mode="sesion")


@pytest.mark.parametrize("name, mode", [("Session", "session"), ("Batch", "batch")])
def test_a_refused_session_or_batch_is_one_line_with_the_cause(tmp_path, monkeypatch, name, mode):
    store, backend = make_store(tmp_path / "s", mode=mode)
    refusing(monkeypatch, name)
    with pytest.raises(AccountError) as info:
        sync.submit(store, "batch", store.service(backend), log=quiet)
    message = str(info.value)
    assert f"refused to open a {mode}" in message and "not authorized to run a session" in message
    assert "Open Plan" in message and "--mode job" in message and "\n" not in message
    assert store.ledger.records() == []  # nothing recorded, nothing submitted
    # the same store goes on in job mode, where the plan allows no session
    report = sync.submit(store, "batch", store.service(backend, mode="job"), log=quiet)
    assert report.submitted == ["batch/job-0000"]


def test_a_refused_session_on_the_command_line(tmp_path, monkeypatch, capsys):
    refusing(monkeypatch, "Session")
    root = tmp_path / "j"
    args = ["jobs", "submit", str(root), "--backend", DEVICE, "--qubits", "2", "--reps", "1", "--shots", "50"]
    assert main([*args, "--mode", "session"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused to open a session" in err and "Traceback" not in err
    assert main(["jobs", "submit", str(root), "--mode", "job"]) == 0  # resumed in job mode
    assert JobStore(root).meta["mode"] == "session"  # as created; the jobs went in job mode
    assert [r["mode"] for r in JobStore(root).ledger.records() if r["kind"] == "intent"] == ["job"]


def test_a_direct_backend_takes_the_mode_by_name(monkeypatch):
    refusing(monkeypatch, "Session")
    circuit = ansatz(2, 1)
    values = np.zeros((1, circuit.num_parameters))
    assert QPABackend(DEVICE, shots=20, mode="job").probabilities(circuit, values).shape == (1, 4)
    with pytest.raises(AccountError, match=r"refused to open a session.*Open Plan"):
        QPABackend(DEVICE, shots=20, mode="session").probabilities(circuit, values)


# ---------------------------------------------------------------------- retries
def _errors():
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError, IBMRuntimeError, RuntimeJobNotFound

    return [
        (ConnectionError("connection reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (RequestsApiError("429 Client Error: Too Many Requests", 429), True),
        (RequestsApiError("502 Server Error: Bad Gateway", 502), True),
        (RequestsApiError("HTTPSConnectionPool(host='x'): Max retries exceeded", -1), True),
        (IBMRuntimeError("Failed to get job status: 503 Server Error: Service Unavailable"), True),
        (
            IBMRuntimeError(
                "Failed to run program: Unexpected response received from server. Please "
                "check if the service is in maintenance mode"
            ),
            True,
        ),
        (IBMRuntimeError("Failed to get job status: 401 Client Error: Unauthorized for url: x"), False),
        (IBMRuntimeError(f"Failed to run program: '{FORBIDDEN}'"), False),
        (IBMNotAuthorizedError("401 Client Error: Unauthorized"), False),
        (RequestsApiError(FORBIDDEN, 403), False),
        (RequestsApiError("400 Client Error: Bad Request", 400), False),
        (IBMRuntimeError("The session is closed."), False),
        (RuntimeJobNotFound("Job not found: x"), False),
        (ValueError("not a network error"), False),
    ]


def test_only_what_can_succeed_on_retry_is_retried():
    for exc, transient in _errors():
        assert is_transient(exc) is transient, exc
        calls: list[int] = []

        def fail(exc=exc, calls=calls):
            calls.append(1)
            raise exc

        with pytest.raises(Exception):  # noqa: B017 - the error itself, or "still fails after"
            with_retries(fail, "status", attempts=3, sleep=lambda s: None, log=quiet)
        assert len(calls) == (3 if transient else 1), exc


# ---------------------------------------------------------------------- sampler options
def test_sampler_options_in_every_accepted_form(tmp_path):
    from qiskit_ibm_runtime.options_models import SamplerOptions

    path = tmp_path / "options.json"
    path.write_text('{"default_shots": 7, "twirling": {"enable_gates": true}}')
    for given in (
        {"default_shots": 7, "twirling": {"enable_gates": True}},
        '{"default_shots": 7, "twirling": {"enable_gates": true}}',
        str(path),
        path,
        SamplerOptions(default_shots=7, twirling={"enable_gates": True}),
    ):
        options = QPABackend(DEVICE, shots=10, sampler_options=given).family.sampler_options
        assert isinstance(options, SamplerOptions), given
        assert options.default_shots == 7 and options.twirling.enable_gates is True


@pytest.mark.parametrize(
    "given, fragment",
    [
        ({"defalt_shots": 3}, "unknown option 'defalt_shots' (accepted: default_shots"),
        (
            {"twirling": {"enable_gate": True}},
            "unknown option 'twirling.enable_gate' (accepted: enable_gates",
        ),
        ({"twirling": {"enable_gates": "x"}}, "twirling.enable_gates: Input should be a valid boolean"),
        ({"max_execution_time": "soon"}, "max_execution_time: Input should be a valid integer"),
        ([1, 2], "must be a mapping of options, got list"),
        ("{bad", "is not valid JSON"),
        ("no/such/options.json", "neither JSON text nor a readable JSON file"),
        ("[1]", "neither JSON text"),
    ],
)
def test_sampler_option_mistakes_are_refused_when_the_backend_is_built(given, fragment):
    with pytest.raises(SpecError) as info:
        QPABackend(DEVICE, shots=10, sampler_options=given, connect=False)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_legacy_sampler_options_class_is_refused_by_name():
    import qiskit_ibm_runtime

    with pytest.raises(
        SpecError, match=r"qiskit_ibm_runtime.SamplerOptions is the options class of the deprecated SamplerV2"
    ):
        QPABackend(DEVICE, shots=10, sampler_options=qiskit_ibm_runtime.SamplerOptions())


@pytest.mark.parametrize("mode", ["sesion", "Session", "", 3, object()])
def test_a_mode_typo_is_refused_when_the_backend_is_built(mode):
    with pytest.raises(SpecError, match="mode must be one of job, batch, session or an open"):
        QPABackend(DEVICE, shots=10, mode=mode, connect=False)


def test_jobs_submit_records_and_applies_the_runtime_options(tmp_path, capsys):
    root = tmp_path / "j"
    args = ["jobs", "submit", str(root), "--backend", DEVICE, "--qubits", "2", "--reps", "1", "--shots", "50"]
    options = ["--sampler-options", '{"default_shots": 7}', "--max-execution-time", "30"]
    assert main([*args, *options, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert 'sampler options: {"default_shots": 7, "max_execution_time": 30}' in out
    assert "usage estimate: none" in out and not root.exists()
    assert main([*args, *options, "--mode", "job"]) == 0
    store = JobStore(root)
    assert store.meta["sampler_options"] == {"default_shots": 7, "max_execution_time": 30}
    assert store.meta["mode"] == "job"
    sent = store.service().sampler_options(["qpa"])  # what a resumed submission sends
    assert sent.default_shots == 7 and sent.max_execution_time == 30
    capsys.readouterr()
    assert main(["jobs", "submit", str(root), "--max-execution-time", "60"]) == 2  # recorded at creation
    assert "without --max-execution-time" in capsys.readouterr().err
    other = [*args[:2], str(tmp_path / "k"), *args[3:]]
    assert (
        main([*other, "--max-execution-time", "30", "--sampler-options", '{"max_execution_time": 20}']) == 2
    )
    assert "contradicts" in capsys.readouterr().err


# ---------------------------------------------------------------------- usage
def test_the_ledger_records_each_jobs_reported_usage(tmp_path):
    store, backend = make_store(tmp_path / "u")
    sync.submit(store, "batch", store.service(backend), log=quiet)
    sync.collect(store, "batch", store.service(), log=quiet)
    collected = [r for r in store.ledger.records() if r["kind"] == "collected"]
    assert [r["usage"] for r in collected] == [{"qpu_charge_time_seconds": 0, "status": "complete"}]


def test_a_usage_that_cannot_be_read_never_stops_a_collection(tmp_path, monkeypatch):
    from qpa_qiskit.jobs import LocalTestingJobs

    store, backend = make_store(tmp_path / "u")
    sync.submit(store, "batch", store.service(backend), log=quiet)

    def broken(self, job_id):
        raise ConnectionError("metrics endpoint down")

    monkeypatch.setattr(LocalTestingJobs, "usage", broken)
    messages = []
    report = sync.collect(store, "batch", store.service(), log=messages.append)
    assert report.collected == ["batch/job-0000"] and any("usage" in m for m in messages)
    assert [r["usage"] for r in store.ledger.records() if r["kind"] == "collected"] == [None]


def test_the_runtime_usage_estimate_is_a_dry_run_on_the_service(monkeypatch):
    import qiskit_ibm_runtime.executor_sampler as executor_sampler

    runs = []

    class FakeSampler:
        def __init__(self, mode, options):
            self.options = options

        def run(self, pubs, *, shots=None, dry_run=False):
            runs.append(dry_run)
            return SimpleNamespace(usage_estimation={"quantum_seconds": 2.5})

    monkeypatch.setattr(executor_sampler, "Sampler", FakeSampler)
    backend = QPABackend(DEVICE, shots=10)
    service = RuntimeJobs(backend, "job")
    monkeypatch.setattr(service, "open", lambda: "device")
    assert service.usage_estimate([], 10) == 2.5 and runs == [True]

    job = SimpleNamespace(metrics=lambda: {"usage": {"qpu_charge_time_seconds": 4, "status": "complete"}})
    service._jobs["abc"] = job
    assert service.usage("abc") == {"qpu_charge_time_seconds": 4, "status": "complete"}


def test_the_dry_run_prints_the_runtime_estimate_for_a_real_device(monkeypatch, capsys):
    from qpa_qiskit.jobs.batch import usage_estimate
    from qpa_qiskit.jobs.plan import plan_jobs

    asked = []

    def estimate(self, pubs, shots):
        asked.append(sum(len(values) for _, values in pubs))
        return 1.5 * asked[-1]

    monkeypatch.setattr(RuntimeJobs, "usage_estimate", estimate)
    monkeypatch.setattr(RuntimeJobs, "close", lambda self: None)
    circuit = ansatz(2, 1)
    pubs = [np.zeros((7, circuit.num_parameters))]
    plan = plan_jobs([7], 100, 300)  # jobs of 3, 3 and 1 sets
    # the facade as the service reads it: a backend that runs remotely, not in local testing mode
    backend = SimpleNamespace(kind="ibm", runs_remotely=True, is_local_testing=False)
    print(usage_estimate(backend, circuit, circuit, pubs, plan, 100))
    assert sorted(asked) == [1, 3]  # one dry run per job size
    assert (
        "usage estimate (the runtime's, from a dry run on the service): 10.5 QPU seconds"
        in capsys.readouterr().out
    )

    def refused(self, pubs, shots):
        raise RuntimeError("dry runs are not enabled for this instance")

    monkeypatch.setattr(RuntimeJobs, "usage_estimate", refused)
    print(usage_estimate(backend, circuit, circuit, pubs, plan, 100))
    assert "usage estimate: not available (RuntimeError: dry runs are not enabled" in capsys.readouterr().out


# ---------------------------------------------------------------------- training options
def test_training_takes_the_mode_and_runtime_options_as_settings(tmp_path):
    base = RunConfig().replace(method="qpa-lora", backend=DEVICE, shots_factor=2.0)
    cfg = base.replace(mode="batch", sampler_options='{"default_shots": 5}', max_execution_time=60)
    assert cfg.backend.runtime_options() == {"default_shots": 5, "max_execution_time": 60}
    assert RunConfig.from_dict(cfg.to_dict()).backend.runtime_options() == cfg.backend.runtime_options()
    path = tmp_path / "o.json"
    path.write_text('{"twirling": {"enable_gates": true}}')
    assert base.replace(sampler_options=str(path)).backend.runtime_options() == {
        "twirling": {"enable_gates": True}
    }  # the file's options are kept in the run's configuration, not the file's path
    assert base.backend.runtime_options() is None and base.backend.mode is None
    for changes, fragment in (
        ({"mode": "sesion"}, "mode must be one of job, batch, session"),
        ({"sampler_options": '{"defalt_shots": 5}'}, "unknown option 'defalt_shots'"),
        ({"max_execution_time": 0}, "max_execution_time must be a positive integer"),
        ({"max_execution_time": 30, "sampler_options": '{"max_execution_time": 20}'}, "contradicts"),
        (
            {"backend": "statevector", "shots_factor": None, "mode": "job"},
            "Use an ibm: backend or drop --mode",
        ),
    ):
        with pytest.raises(InputError, match=fragment):
            base.replace(**changes)


# ---------------------------------------------------------------------- inputs
def test_a_token_pasted_as_the_device_name_is_refused_and_never_shown(monkeypatch):
    monkeypatch.setenv("QISKIT_IBM_TOKEN", TOKEN)
    for connect in (False, True):
        with pytest.raises(SpecError) as info:
            QPABackend(f"ibm:{TOKEN}", shots=10, connect=connect)
        assert TOKEN not in str(info.value) and "names a credential" in str(info.value)
        assert "ibm:ibm_torino" in str(info.value)  # the accepted form
    backend = QPABackend("ibm:ibm_torino", shots=10, connect=False)  # a device name is not a token
    assert TOKEN not in repr(backend) + str(backend) + backend.name + backend.spec


def test_a_mistyped_jobs_folder_is_an_error_not_an_empty_list(tmp_path, capsys):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert main(["jobs", "list", str(tmp_path / "jobs")]) == 0
    assert "no job stores under" in capsys.readouterr().out  # an empty folder: nothing to list
    assert main(["jobs", "list", str(tmp_path / "jbos")]) == 2
    assert "jbos does not exist; give the directory that holds the job stores" in capsys.readouterr().err
    assert main(["jobs", "list", str(tmp_path / "a-file")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_the_primitives_point_at_the_runtimes_client_side_primitives():
    from qpa_qiskit.primitives import Sampler

    with pytest.raises(InputError) as info:
        Sampler(QPABackend(DEVICE, shots=10))
    message = str(info.value)
    assert (
        "executor_sampler.Sampler" in message and "SamplerV2" not in message and "EstimatorV2" not in message
    )


def test_the_texts_date_the_runtime_deprecation_at_0_50():
    import inspect

    from pages import PAGES, page

    import qpa_qiskit.backends.ibm as ibm

    texts = "\n".join(path.read_text() for path in PAGES)  # the README and docs/
    assert "deprecated in 0.51" not in texts and "since 0.50" in page("docs/backends.md")
    assert "0.51" not in inspect.getsource(
        ibm
    ) and "since\n        qiskit-ibm-runtime 0.50" in inspect.getsource(ibm)


def test_a_training_run_submits_in_its_mode_and_a_resumed_run_may_change_it(corpus, tmp_path):
    from conftest import tiny_config

    from qpa_qiskit.train import Run

    settings = dict(reps=1, steps=1, save_every=10, eval_tokens=400, backend=DEVICE, shots_factor=8)
    cfg = tiny_config(corpus, **settings, mode="batch", max_execution_time=30)
    with Run.create(tmp_path / "run", cfg) as run:
        assert run.model.generator.quantum.backend.family.sampler_options.max_execution_time == 30
        run.train(progress=False)
    with Run.open(tmp_path / "run", overrides={"steps": 2, "mode": "job"}) as run:
        run.train(progress=False)
    store = JobStore(tmp_path / "run" / "jobs")
    assert store.meta["mode"] == "batch" and store.meta["sampler_options"] == {"max_execution_time": 30}
    assert [r["mode"] for r in store.ledger.records() if r["kind"] == "intent"] == ["batch", "job"]
    with pytest.raises(InputError, match="may change only"):
        Run.open(tmp_path / "run", overrides={"sampler_options": '{"default_shots": 3}'})
