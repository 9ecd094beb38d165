import json

import numpy as np
import pytest
import torch
from conftest import tiny_config

from qpa_qiskit import InputError, QPABackend, QuantumProbabilities, ansatz
from qpa_qiskit.completion import GenerativeInterpolation, neighbour_index
from qpa_qiskit.config import GeneratorConfig
from qpa_qiskit.generator import QPAGenerator
from qpa_qiskit.intervals import PairedDifference


def sampled(n_qubits, shots, seed=0, batch=3):
    """Shot frequencies with unmeasured states, from a peaked distribution."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(2**n_qubits, 0.3), size=batch)
    return torch.tensor(np.stack([rng.multinomial(shots, row) for row in p]) / shots)


@pytest.mark.parametrize("n", [3, 5])
def test_vectorised_gather_equals_a_plain_loop(n):
    gi = GenerativeInterpolation(n)
    probs = torch.rand(4, 2**n)
    fast = gi.gather(probs)
    slow = torch.empty(4, 2**n, n)
    for b in range(4):
        for i in range(2**n):
            for k in range(n):
                j = int("".join("1" if (i >> q) & 1 != (q == k) else "0" for q in reversed(range(n))), 2)
                slow[b, i, k] = probs[b, j]
    assert torch.equal(fast, slow)
    assert neighbour_index(n)[5 % 2**n, 0] == (5 % 2**n) ^ 1


def test_unmeasured_filled_measured_untouched():
    probs = sampled(5, shots=40)
    assert (probs == 0).any()
    gi = GenerativeInterpolation(5, renormalize=False)
    out = gi(probs)
    measured = probs > 0
    assert torch.equal(out[measured], probs[measured])
    assert (out[~measured] > 0).all()  # softplus: a positive estimate
    renormalised = GenerativeInterpolation(5)(probs)
    assert torch.allclose(renormalised.sum(-1), torch.ones(3, dtype=probs.dtype))


def test_single_vector_input():
    probs = sampled(3, shots=10, batch=1)[0]
    assert GenerativeInterpolation(3)(probs).shape == (8,)


def test_none_keeps_zeros():
    probs = sampled(4, shots=20)
    assert torch.equal(GenerativeInterpolation(4, mode="none")(probs), probs)


def test_uniform_spreads_the_good_turing_missing_mass():
    counts = torch.tensor([[5.0, 1.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0]])
    shots = 10
    out = GenerativeInterpolation(3, mode="uniform", renormalize=False)(counts / shots, shots=shots)
    # two states seen once: missing mass 2/10 over four unmeasured states
    assert torch.allclose(out[0, [3, 5, 6, 7]], torch.full((4,), 0.05, dtype=out.dtype))
    assert torch.equal(out[0, [0, 1, 2, 4]], (counts / shots)[0, [0, 1, 2, 4]])
    with pytest.raises(InputError, match="needs the shot count"):
        GenerativeInterpolation(3, mode="uniform")(counts / shots)


def test_random_is_a_convex_combination_of_neighbours():
    probs = sampled(4, shots=30)
    gi = GenerativeInterpolation(4, mode="random", renormalize=False, seed=3)
    out = gi(probs)
    neighbours = gi.gather(probs)
    missing = probs == 0
    assert (out[missing] >= neighbours.min(-1).values[missing] - 1e-12).all()
    assert (out[missing] <= neighbours.max(-1).values[missing] + 1e-12).all()
    assert not torch.equal(out, gi(probs))  # fresh weights every call


def test_gradients_reach_the_network_and_the_angles():
    torch.manual_seed(0)
    layer = QuantumProbabilities(
        QPABackend("statevector", shots_factor=1, seed=2), ansatz(4, 2), completion="gi"
    )
    probs = layer()
    assert probs.shape == (16,) and torch.isclose(probs.sum(), torch.tensor(1.0, dtype=probs.dtype))
    (probs * torch.arange(16.0, dtype=probs.dtype)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.completion.parameters())
    assert layer.theta.grad.abs().sum() > 0


def test_completion_counts_as_trainable():
    gen = QPAGenerator(
        200,
        QPABackend("statevector", shots_factor=1),
        GeneratorConfig(chunk_size=16, reps=1, completion="gi"),
    )
    n = sum(p.numel() for p in gen.quantum.completion.parameters())
    assert gen.counts()["completion"] == n > 0
    assert n == (4 * 16 + 16) + (16 + 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_qubits=3, mode="linear"), "completion mode must be one of"),
        (dict(n_qubits=0), "n_qubits must be a positive integer"),
        (dict(n_qubits=3, hidden=(0,)), "hidden widths"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        GenerativeInterpolation(**kwargs)


def test_wrong_width_input():
    with pytest.raises(InputError, match="expected 8 probabilities"):
        GenerativeInterpolation(3)(torch.rand(2, 4))


def test_study_shots_writes_table_and_plot(tmp_path):
    from qpa_qiskit.studies.shots import study_shots

    corpus = tmp_path / "wikitext"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat . " * 200)
    # the defaults' learning rate and warm-up, a corpus of its own
    cfg = tiny_config(corpus, reps=1, hidden=[8], steps=2, lr=1e-3, warmup=3, eval_tokens=300)
    rows = study_shots(
        cfg, tmp_path / "study", shots_factors=(1, 4), modes=("none", "gi"), tvd_samples=2, log=lambda m: None
    )
    assert len(rows) == 1 + 2 * 2
    table, paired = (tmp_path / "study" / "results.md").read_text().strip().split("\n\n", 1)
    table = table.splitlines()
    assert len(table) == 2 + 2 + 1
    assert all(line.count("|") == 2 + 2 * 2 + 1 for line in table)
    assert "| 4 | gi | none |" in paired and "| 1 | none | exact |" in paired
    assert (tmp_path / "study" / "shots.png").stat().st_size > 10_000
    exact = next(r for r in rows if r["shots_factor"] is None)
    assert exact["tvd"] == 0 and all(r["tvd"] > 0 for r in rows if r["shots_factor"] is not None)


def test_study_shots_pairs_each_mode_with_none_and_exact_by_seed(tmp_path):
    from qpa_qiskit.studies.shots import study_shots

    corpus = tmp_path / "wikitext"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat . " * 200)
    cfg = tiny_config(corpus, reps=1, hidden=[8], steps=2, eval_tokens=300)
    study_shots(cfg, tmp_path / "s", shots_factors=(2,), modes=("none", "gi"), seeds=(0, 1, 2), tvd_samples=2,
                margin=0.5, log=lambda m: None)  # fmt: skip
    saved = json.loads((tmp_path / "s" / "results.json").read_text())
    assert saved["margin"] == 0.5
    runs = {
        (t["axes"]["shots_factor"], t["axes"]["completion"], t["axes"]["seed"]): t for t in saved["trials"]
    }
    paired = {(p["completion"], p["against"]): p for p in saved["paired"]}
    assert set(paired) == {("none", "exact"), ("gi", "none"), ("gi", "exact")}
    gi_none = [runs[(2.0, "gi", s)]["perplexity"] - runs[(2.0, "none", s)]["perplexity"] for s in (0, 1, 2)]
    diff = PairedDifference.of(gi_none)
    assert paired[("gi", "none")]["perplexity"]["mean"] == pytest.approx(diff.mean)
    assert paired[("gi", "none")]["perplexity"]["equivalence"] == diff.equivalence(0.5)
    gi_tvd = [runs[(2.0, "gi", s)]["tvd"] - runs[(2.0, "none", s)]["tvd"] for s in (0, 1, 2)]
    assert paired[("gi", "none")]["tvd"]["mean"] == pytest.approx(PairedDifference.of(gi_tvd).mean)
    assert "tvd" not in paired[("gi", "exact")]
    assert "at ±0.5" in (tmp_path / "s" / "results.md").read_text()
