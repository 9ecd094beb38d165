import math

import numpy as np
import pytest
import torch

from qpa_qiskit import InputError, QPABackend
from qpa_qiskit.config import GeneratorConfig
from qpa_qiskit.generator import QPAGenerator, qubits_for


def generator(n_weights, chunk_size, backend, **settings):
    return QPAGenerator(n_weights, backend, GeneratorConfig(chunk_size=chunk_size, **settings))


@pytest.mark.parametrize(
    "m, chunk, n_chunks, n_qubits",
    [(1000, 64, 16, 4), (1000, 63, 16, 4), (1025, 64, 17, 5), (10, 10, 1, 1), (3, 1, 3, 2)],
)
def test_qubits_for(m, chunk, n_chunks, n_qubits):
    assert qubits_for(m, chunk) == (n_chunks, n_qubits)


def test_shapes_and_counts():
    torch.manual_seed(0)
    gen = generator(1000, 64, QPABackend("statevector"), reps=2, hidden=(8,))
    out = gen()
    assert out.shape == (1000,)
    counts = gen.counts()
    mapping = (5 * 8 + 8) + (8 * 64 + 64)
    assert counts == {
        "circuit_angles": 4 * 2,
        "probability_logits": 0,
        "mapping": mapping,
        "completion": 0,
        "trainable": 4 * 2 + mapping,
        "generated": 1000,
    }
    assert gen.circuit.num_qubits == 4


def test_labels_are_fixed_basis_bits():
    gen = generator(300, 20, QPABackend("statevector"), reps=1)  # 15 chunks, 4 qubits
    expected = torch.tensor([[1.0 - 2 * ((c >> q) & 1) for q in range(4)] for c in range(15)])
    assert torch.equal(gen.labels, expected)
    with torch.no_grad():
        first, second = gen(), gen()
    assert torch.equal(first, second)  # no random relabelling between calls


def test_rescaling_formula():
    gen = generator(64, 8, QPABackend("statevector"), reps=1, gamma=0.3, beta=0.5, alpha=0.2)
    p = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.2])
    x = (0.5 * torch.tanh(0.3 * 2 ** (3 - 1) * p)).clamp_min(1e-12) ** 0.2
    assert torch.allclose(gen.rescale(p), x - x.mean())


def test_gradients_reach_angles_and_mapping():
    gen = generator(200, 16, QPABackend("statevector"), reps=2)
    (gen() ** 2).sum().backward()
    assert gen.quantum.theta.grad is not None and gen.quantum.theta.grad.abs().sum() > 0
    for p in gen.mapping.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_unmeasured_states_keep_gradients_finite():
    gen = generator(512, 16, QPABackend("statevector", shots_factor=1, seed=0), reps=1)
    probs = gen.quantum()
    assert (probs == 0).any()  # c = 1 leaves states unmeasured
    (gen() ** 2).sum().backward()
    assert torch.isfinite(gen.quantum.theta.grad).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_weights=0, chunk_size=4), "number of weights"),
        (dict(n_weights=10, chunk_size=0), "chunk_size must be a positive integer"),
        (dict(n_weights=10, chunk_size=11), "chunk_size 11 is larger than the 10 weights"),
        (dict(n_weights=10, chunk_size=4, activation="swish"), "activation must be one of"),
        (dict(n_weights=10, chunk_size=4, hidden=(0,)), "hidden must be a list of positive integers"),
        (dict(n_weights=10, chunk_size=4, alpha=-1), "alpha must be a finite number > 0"),
        (dict(n_weights=10, chunk_size=4, beta=float("nan")), "beta must be a finite number > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        generator(backend=QPABackend("statevector"), **kwargs)


def test_any_backend_switches_by_spec():
    gen = generator(100, 10, QPABackend("aer_noisy:fake_brisbane", shots_factor=20, seed=1), reps=1)
    out = gen()
    assert out.shape == (100,) and math.isfinite(float(out.detach().sum()))
    assert np.isclose(float(gen.quantum().sum()), 1.0)


# ---------------------------------------------------------------------------- the published design
def paper(n_weights, chunk_size, backend=None, **settings):
    """A generator with the published settings (the paper preset's generator fields)."""
    from qpa_qiskit.config import PRESETS

    fields = {k: v for k, v in PRESETS["paper"].items() if k != "dropout"}
    return generator(n_weights, chunk_size, backend or QPABackend("statevector"), **{**fields, **settings})


def test_published_parameter_count_is_reproduced():
    """GPT-2's lm_head, LoRA r = 4: 768 * 4 + 4 * 50257 = 204,100 weights, chunk 2048, L = 8: the
    published code's log reports 106,264 trainable parameters."""
    gen = paper(768 * 4 + 4 * 50257, 2048, reps=8)
    assert gen.n_qubits == 7 and gen.counts()["trainable"] == 106_264
    assert not any(isinstance(m, torch.nn.GELU) for m in gen.mapping)  # a linear chain
    widths = [m.in_features for m in gen.mapping] + [gen.mapping[-1].out_features]
    assert widths == [8, 32, 64, 128, 128, 64, 32, 32, 2048]


@pytest.mark.parametrize("mapping", ["mlp", "linear"])
def test_qpa_trainable_matches_the_built_generator(mapping):
    from qpa_qiskit.generator import qpa_trainable

    cfg = GeneratorConfig(chunk_size=40, reps=3, mapping=mapping)
    gen = QPAGenerator(1000, QPABackend("statevector"), cfg)
    assert qpa_trainable(1000, cfg) == gen.counts()["trainable"]


def test_random_labels_are_fresh_distinct_bitstrings_from_a_seeded_stream():
    gen = generator(300, 20, QPABackend("statevector"), reps=1, labels="random")  # 15 chunks of 16 states
    state = gen.rng_state
    draws = [gen.draw_labels() for _ in range(3)]
    for labels in draws:
        assert labels.shape == (15, 4) and len({tuple(row.tolist()) for row in labels}) == 15
        assert set(labels.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(draws[0], draws[1])
    gen.rng_state = state  # the checkpointed stream replays the same draws
    assert all(torch.equal(gen.draw_labels(), d) for d in draws)
    with torch.no_grad():
        assert not torch.equal(gen(), gen())  # every training step relabels


def test_expected_weights_under_random_labels_are_the_mean_over_all_bitstrings():
    gen = generator(300, 20, QPABackend("statevector"), reps=1, labels="random", output_centring="mean")
    with torch.no_grad():
        x = gen.rescale(gen.probabilities().float())
        inputs = [torch.cat([gen.all_labels[s].expand(15, 4), x[:, None]], 1) for s in range(16)]
        outputs = [gen.mapping(i) for i in inputs]
        naive = torch.stack(outputs).mean(0).reshape(-1)[:300]
        naive = naive - naive.mean()
        assert torch.allclose(gen.final_weights(), naive, atol=1e-6)
        # fixed labels: the final weights are the training step's
        fixed = generator(300, 20, QPABackend("statevector"), reps=1)
        assert torch.equal(fixed.final_weights(), fixed())


def test_expected_weights_of_the_linear_chain_are_its_output_at_the_mean_label():
    gen = paper(300, 20, reps=1)
    with torch.no_grad():
        x = gen.rescale(gen.probabilities().float())
        at_zero = gen.mapping(torch.cat([torch.zeros(15, 4), x[:, None]], 1)).reshape(-1)[:300]
        assert torch.allclose(gen.final_weights(), at_zero - at_zero.mean(), atol=1e-5)
        assert gen.label_spread() > 0
    assert generator(300, 20, QPABackend("statevector"), reps=1).label_spread() == 0.0


@pytest.mark.parametrize("centring", ["chunks", "states", "none"])
def test_x_centring(centring):
    gen = generator(96, 8, QPABackend("statevector"), reps=1, x_centring=centring)  # 12 chunks, 16 states
    p = torch.distributions.Dirichlet(torch.ones(16)).sample()
    x = (0.6 * torch.tanh(0.1 * 2**3 * p)).clamp_min(1e-12) ** 0.15
    expected = {"chunks": x[:12] - x[:12].mean(), "states": (x - x.mean())[:12], "none": x[:12]}[centring]
    assert torch.allclose(gen.rescale(p), expected)


def test_output_centring_and_the_torch_initialisation():
    small = generator(400, 40, QPABackend("statevector"), reps=1)
    centred = generator(
        400, 40, QPABackend("statevector"), reps=1, output_centring="mean", mapping_init="torch"
    )
    with torch.no_grad():
        assert abs(float(centred().mean())) < 1e-6 and abs(float(small().mean())) > 1e-7
        assert float(centred().std()) > 5 * float(small().std())  # torch's last layer is not small
    assert float(small.mapping[-1].bias.abs().sum()) == 0 and float(centred.mapping[-1].bias.abs().sum()) > 0


# ---------------------------------------------------------------------------- probability sources
def source(probabilities, **settings):
    return generator(240, 16, QPABackend("statevector"), reps=2, probabilities=probabilities, **settings)


def test_controls_share_the_mapping_and_start_where_the_circuit_starts():
    gens = {
        name: source(name) for name in ("circuit", "frozen", "uniform", "fixed-random", "softmax", "none")
    }
    for gen in gens.values():  # the mapping is drawn from its own stream: the same in every control
        for a, b in zip(gen.mapping.parameters(), gens["circuit"].mapping.parameters(), strict=True):
            assert torch.equal(a, b)
    with torch.no_grad():
        p = gens["circuit"].probabilities()
        assert torch.allclose(gens["frozen"].probabilities(), p)
        assert torch.allclose(gens["softmax"].probabilities(), p, atol=1e-12)  # the same start, free after
        assert torch.allclose(gens["softmax"](), gens["circuit"](), atol=1e-6)
        assert torch.equal(gens["uniform"].probabilities(), torch.full((16,), 1 / 16, dtype=torch.float64))
        fixed = gens["fixed-random"].probabilities()
        assert torch.isclose(fixed.sum(), torch.tensor(1.0, dtype=torch.float64)) and fixed.std() > 0
        assert torch.equal(fixed, source("fixed-random").probabilities())  # one seeded draw
        assert gens["none"].probabilities() is None
        # under centring, a constant x is 0: uniform and none generate the same weights
        assert torch.allclose(gens["uniform"](), gens["none"](), atol=1e-7)


def test_what_each_control_trains_and_counts():
    counts = {name: source(name).counts() for name in ("circuit", "frozen", "uniform", "softmax", "none")}
    mapping = counts["circuit"]["mapping"]
    assert counts["circuit"]["circuit_angles"] == 8 and counts["frozen"]["circuit_angles"] == 0
    assert counts["softmax"]["probability_logits"] == 16 and counts["softmax"]["circuit_angles"] == 0
    assert counts["uniform"]["trainable"] == mapping
    assert counts["none"]["mapping"] == mapping - 32  # the x column of the first layer reads nothing
    frozen = source("frozen")
    (frozen() ** 2).sum().backward()
    assert not frozen.quantum.theta.requires_grad and frozen.source_parameter_names() == []
    soft = source("softmax")
    (soft() ** 2).sum().backward()
    assert soft.logits.grad.abs().sum() > 0 and soft.source_parameter_names() == ["logits"]
    assert source("circuit").source_parameter_names() == ["quantum.theta"]


MAPPING_KEYS = [f"mapping.{i}.{kind}" for i in (0, 2, 4) for kind in ("weight", "bias")]


@pytest.mark.parametrize(
    "name, keys, buffers",
    [
        ("circuit", ["quantum.theta"], ["theta_start"]),
        ("frozen", ["quantum.theta"], ["theta_start"]),
        ("uniform", [], ["fixed"]),
        ("fixed-random", [], ["fixed"]),
        ("softmax", ["logits"], ["logits_start"]),
        ("none", [], []),
    ],
)
def test_each_source_keeps_the_generators_state_dict_keys(name, keys, buffers):
    # the names saved runs, Trainer checkpoints and docs/ results were written with
    gen = source(name)
    assert list(gen.state_dict()) == [*keys, *MAPPING_KEYS]
    assert [n for n, _ in gen.named_buffers()] == [*buffers, "labels"]
    assert [n for n, _ in gen.named_parameters()] == [*keys, *MAPPING_KEYS]
    converted = gen.float()  # the source's own tensors follow the generator's
    for buffer in buffers:
        assert getattr(converted.probability_source, buffer) is getattr(converted, buffer)
        assert getattr(converted, buffer).dtype == torch.float32


def test_a_state_loaded_by_assignment_reaches_the_source():
    gen = source("softmax")
    state = {name: tensor + 1 for name, tensor in gen.state_dict().items()}
    gen.load_state_dict(state, assign=True)  # new Parameter objects on the generator
    assert gen.probability_source.logits is gen.logits
    assert torch.equal(gen.probabilities(), torch.softmax(state["logits"], 0))


def test_the_source_registry_names_every_choice():
    from qpa_qiskit.choices import CIRCUIT_SOURCES, PROBABILITIES, TRAINED_SOURCES
    from qpa_qiskit.generator.sources import SOURCES, ProbabilitySource

    assert tuple(SOURCES) == PROBABILITIES
    assert all(issubclass(cls, ProbabilitySource) for cls in SOURCES.values())
    assert tuple(n for n, cls in SOURCES.items() if cls.evaluates_circuit) == CIRCUIT_SOURCES
    assert tuple(n for n, cls in SOURCES.items() if cls.trained) == TRAINED_SOURCES
    for name, cls in SOURCES.items():
        assert type(source(name).probability_source) is cls


def test_sources_without_a_circuit_need_no_backend():
    gen = QPAGenerator(240, None, GeneratorConfig(chunk_size=16, probabilities="uniform"))
    assert gen.quantum is None and gen().shape == (240,)
    with pytest.raises(
        InputError, match="probabilities 'circuit' evaluate the circuit and need a QPABackend"
    ):
        QPAGenerator(240, None, GeneratorConfig(chunk_size=16))


def test_counterfactual_probabilities():
    gen = source("circuit")
    with torch.no_grad():
        trained = gen.probabilities()
        permuted = gen.counterfactual("permuted")
        assert torch.equal(permuted.sort().values, trained.sort().values) and not torch.equal(
            permuted, trained
        )
        assert torch.equal(gen.counterfactual("uniform"), torch.full((16,), 1 / 16, dtype=torch.float64))
        fixed = gen.counterfactual("fixed-random")
        assert torch.equal(fixed, gen.counterfactual("fixed-random"))
        assert not torch.equal(
            fixed, source("fixed-random").probabilities()
        )  # another draw than the source's
        assert not torch.equal(gen.final_weights(permuted), gen.final_weights())
    with pytest.raises(InputError, match="reads no probabilities"):
        source("none").counterfactual("uniform")
    with pytest.raises(InputError, match="must be one of uniform, permuted, fixed-random"):
        gen.counterfactual("shuffled")


def test_diagnostics_measure_how_far_the_source_moved():
    gen = source("circuit")
    assert gen.diagnostics() == {"angle_drift_max": 0.0, "angle_drift_rms": 0.0, "tvd_start": 0.0}
    with torch.no_grad():
        gen.quantum.theta[3] += 0.5
        gen.quantum.theta[5] -= 0.1
    d = gen.diagnostics()
    assert d["angle_drift_max"] == pytest.approx(0.5) and d["angle_drift_rms"] == pytest.approx(
        math.sqrt((0.25 + 0.01) / 8)
    )
    ideal = QPABackend("statevector")
    now = ideal.probabilities(gen.circuit, gen.quantum.theta.detach().numpy())[0]
    start = ideal.probabilities(gen.circuit, gen.theta_start.numpy())[0]
    assert d["tvd_start"] == pytest.approx(0.5 * np.abs(now - start).sum())
    assert source("uniform").diagnostics() == {}


# ---------------------------------------------------------------------------- the low-rank peer
def test_low_rank_peer_matches_the_qpa_count_and_starts_small():
    from qpa_qiskit.generator import LowRankGenerator

    cfg = GeneratorConfig(chunk_size=64, reps=2)
    qpa = QPAGenerator(2000, QPABackend("statevector"), cfg).counts()["trainable"]
    peer = LowRankGenerator(2000, cfg, seed=0)
    assert peer.left.shape == (32, peer.k) and peer.right.shape == (peer.k, 64)
    assert peer.counts()["trainable"] == peer.k * (32 + 64)
    assert abs(peer.counts()["trainable"] - qpa) <= (32 + 64) / 2  # the nearest k
    with torch.no_grad():
        assert peer().shape == (2000,) and 0.005 < float(peer().std()) < 0.02
        assert torch.equal(peer.final_weights(), peer())
    fixed = LowRankGenerator(2000, GeneratorConfig(chunk_size=64, lowrank_k=3), seed=0)
    assert fixed.k == 3 and fixed.counts()["trainable"] == 3 * 96


def test_chunk_spread():
    from qpa_qiskit.generator import chunk_spread

    tiled = torch.arange(4.0).repeat(5)
    assert chunk_spread(tiled, 4) == 0.0  # one chunk repeated
    assert chunk_spread(torch.cat([tiled, torch.tensor([9.0])]), 4) == 0.0  # the partial chunk left out
    opposite = torch.tensor([1.0, 2.0, -1.0, -2.0])
    assert chunk_spread(opposite, 2) == pytest.approx(1.0)  # no common part
    assert chunk_spread(torch.ones(3), 4) == 0.0
