import json
import os

import numpy as np
import offline  # noqa: F401  (first: the offline environment, before torch and transformers)
import pytest
import torch
from scipy import stats

from qpa_qiskit.train import Run

# ---------------------------------------------------------------- running in parallel (pytest-xdist)
# pyproject's addopts run the suite on `-n auto` workers, one per CPU; `-n 0` runs it in this
# process alone (docs/testing.md). The hooks are optional: without xdist (`-p no:xdist`) they
# are never called.


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per CPU this process may run on, at most 8 (each worker holds torch,
    Qiskit and Aer: 1 to 2 GB). xdist's own count is psutil's physical cores, 1 on a virtual
    machine whose 2 CPUs are one core's 2 threads. PYTEST_XDIST_AUTO_NUM_WORKERS, where set,
    still decides (xdist's hook reads it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return min(8, usable_cpus())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs):
    """The CPUs shared out among the workers: OMP_NUM_THREADS (torch's, Aer's and OpenBLAS's
    threads) at CPUs // workers, 1 on 2 CPUs and 2 workers, in the environment the workers
    and the processes the tests start inherit. Two workers of torch's default 2 threads each
    on 2 CPUs ran a third slower (docs/testing.md). A value already set is kept."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // max(1, len(specs)))))


SENTENCE = "the cat sat on the mat . the dog sat on the log . "


def make_corpus(folder):
    """A tiny WikiText-2-shaped folder: train, valid and test splits of one repeated text."""
    folder.mkdir()
    for split, n in (("train", 400), ("valid", 40), ("test", 40)):
        (folder / f"{split}.txt").write_text(SENTENCE * n)
    return folder


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "wikitext")


def tiny_config(corpus, **overrides):
    """A RunConfig for the tiny GPT-2 on the `corpus` folder: seconds per run."""
    from qpa_qiskit.config import RunConfig

    base = dict(
        model="tiny-gpt2",
        data=str(corpus),
        method="qpa-lora",
        rank=2,
        chunk_size=64,
        reps=2,
        hidden=[16],
        steps=6,
        batch_size=4,
        block_size=32,
        lr=1e-2,
        warmup=1,
        save_every=2,
        eval_tokens=800,
        eval_window=64,
        eval_stride=48,
        train_tokens=None,
    )
    base.update(overrides)
    return RunConfig.from_dict(base)


def tiny_cli_args(corpus, options: str) -> list[str]:
    """`qpa train` arguments for the tiny GPT-2 on `corpus`, plus `options` (one string)."""
    return [
        "--model",
        "tiny-gpt2",
        "--data",
        str(corpus),
        "--block-size",
        "32",
        "--chunk-size",
        "64",
        *options.split(),
    ]


@pytest.fixture
def no_ibm_account(monkeypatch, tmp_path):
    """No saved IBM Quantum account and no credentials in the environment."""
    import qiskit_ibm_runtime.accounts.management as management

    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_URL", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("HOME", str(tmp_path))


def assert_sampled_from(freqs: np.ndarray, exact: np.ndarray, shots: int, alpha: float = 1e-6) -> None:
    """Chi-square goodness of fit of shot frequencies against exact probabilities."""
    for f, p in zip(np.atleast_2d(freqs), np.atleast_2d(exact), strict=False):
        observed = np.rint(f * shots)
        assert observed.sum() == shots
        expected = p * shots
        big = expected >= 5
        obs = np.append(observed[big], observed[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        keep = exp > 0
        assert not np.any(obs[~keep]), "counts in outcomes of probability zero"
        pvalue = stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue
        assert pvalue > alpha, f"sampled frequencies inconsistent with exact (p={pvalue:.2e})"


def assert_resume_is_bit_identical(tmp_path, cfg) -> None:
    """A run trained straight through and one stopped after a checkpoint (a step lost with the
    process) then resumed end with the same parameters and the same losses."""
    with Run.create(tmp_path / "a", cfg) as straight:
        straight.train(progress=False)
    with Run.create(tmp_path / "b", cfg) as first:
        first.train_step()
        first.train_step()
        first.save()
        first.train_step()  # lost with the process
    with Run.open(tmp_path / "b") as resumed:
        resumed.train(progress=False)
    for name, p in straight.params.items():
        assert torch.equal(p, resumed.params[name]), name
    losses = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("a", "b")]  # fmt: skip
    assert losses[0] == losses[1]
