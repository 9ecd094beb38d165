"""The frozen body's features, computed once (qpa_qiskit.features): the same figures as the full
model, only where it applies, keyed, stored in memory and in a study folder."""

import json

import pytest
import torch
from conftest import SENTENCE, tiny_config
from transformers import GPT2Config, GPT2LMHeadModel

from qpa_qiskit import features
from qpa_qiskit.errors import InputError
from qpa_qiskit.models import LoadedModel, load_model
from qpa_qiskit.train import Run


def trained(tmp_path, corpus, name, *, loaded=None, log=None, **overrides):
    """(trainable tensors, losses, test evaluation, the run) after training a tiny run."""
    cfg = tiny_config(corpus, **overrides)
    with Run.create(tmp_path / name, cfg, loaded=loaded, log=log) as run:
        records = run.train(progress=False)
        evaluation = run.evaluate()
    params = {n: p.detach().clone() for n, p in run.params.items()}
    return params, [r["loss"] for r in records], evaluation, run


@pytest.fixture
def lines(tmp_path):
    """The tiny corpus with line breaks, for the padded-lines protocol."""
    folder = tmp_path / "lines"
    folder.mkdir()
    for split, n in (("train", 400), ("valid", 40), ("test", 40)):
        (folder / f"{split}.txt").write_text((SENTENCE + "\n") * n)
    return folder


@pytest.mark.parametrize("method", ["lora", "qpa-lora"])
def test_cached_training_and_perplexity_equal_the_full_model(tmp_path, lines, method):
    corpus = lines
    # 8 blocks and 6 steps of 4: blocks repeat from the third step on, read back from the store
    loaded = load_model("tiny-gpt2")
    on = trained(tmp_path, corpus, "on", loaded=loaded.fresh_copy(), method=method, train_tokens=256,
                 eval_protocol="padded-lines", padded_block=16)  # fmt: skip
    off = trained(tmp_path, corpus, "off", method=method, train_tokens=256, feature_cache=False,
                  eval_protocol="padded-lines", padded_block=16)  # fmt: skip
    assert on[3].features is not None and off[3].features is None
    assert loaded.features.hits >= 16 and loaded.features.misses > 0  # the second epoch was read back
    for name, tensor in off[0].items():
        torch.testing.assert_close(on[0][name], tensor, rtol=1e-5, atol=1e-7)
    assert on[1] == pytest.approx(off[1], rel=1e-6)
    for key in ("perplexity", "padded_lines_perplexity"):
        assert on[2][key] == pytest.approx(off[2][key], rel=1e-6)
    assert on[2]["tokens"] == off[2]["tokens"]


def test_the_stored_features_are_what_the_run_reads(tmp_path, corpus):
    """Not a recomputation in disguise: altering the stored hidden states alters the perplexity."""
    loaded = load_model("tiny-gpt2")
    cfg = tiny_config(corpus, method="lora", steps=1)
    with Run.create(tmp_path / "run", cfg, loaded=loaded.fresh_copy()) as run:
        first = run.evaluate()["perplexity"]
        for tensor in loaded.features._memory.values():
            tensor.mul_(0.5)
        assert run.evaluate()["perplexity"] != pytest.approx(first, rel=1e-3)


def windows(n: int, window: int, stride: int) -> int:
    """How many windows scoring n tokens takes (the spans of qpa_qiskit.data.perplexity)."""
    count, begin = 0, 0
    while True:
        count += 1
        if begin + window >= n:
            return count
        begin += stride


def test_the_whole_test_split_is_scored_from_the_stored_features(tmp_path, corpus):
    """eval_tokens 0 (the whole split, a study's final figure) on an lm_head run: each window's
    body pass is looked up in the store (computed once), then read back; the perplexity is the
    full model's to float rounding."""
    loaded = load_model("tiny-gpt2")
    cfg = tiny_config(corpus, method="lora", steps=1, eval_tokens=0)
    store = loaded.features
    with Run.create(tmp_path / "on", cfg, loaded=loaded.fresh_copy()) as run:
        run.train(progress=False)
        looked_up = store.hits + store.misses
        first = run.evaluate()
        n = windows(first["tokens"] + 1, cfg.eval.eval_window, cfg.eval.eval_stride)
        assert store.hits + store.misses - looked_up == n  # every window, from the store
        misses = store.misses
        assert run.evaluate() == first and store.misses == misses  # all read back
    with Run.create(tmp_path / "off", cfg.replace(feature_cache=False)) as run:
        run.train(progress=False)
        full = run.evaluate()
    whole = len(loaded.tokenizer((corpus / "test.txt").read_text())["input_ids"])
    assert first["tokens"] == full["tokens"] == whole - 1  # the whole split: every token but the first
    assert first["perplexity"] == pytest.approx(full["perplexity"], rel=1e-6)


@pytest.mark.parametrize(("method", "extra"), [("ffa", {}), ("prefix", {"prefix_tokens": 4})])
def test_methods_that_adapt_the_body_run_it_and_say_so(tmp_path, corpus, method, extra):
    said = []
    loaded = load_model("tiny-gpt2")
    on = trained(tmp_path, corpus, "on", loaded=loaded.fresh_copy(), log=said.append, method=method, steps=2,
                 **extra)  # fmt: skip
    off = trained(tmp_path, corpus, "off", method=method, steps=2, feature_cache=False, **extra)
    assert on[3].features is None and loaded.features.misses == 0
    assert [m for m in said if m.startswith("feature cache: off")] == [
        next(m for m in said if m.startswith("feature cache: off"))
    ]  # said once
    assert f"off for {method}: the adapter has tensors outside lm_head" in " ".join(said)
    for name, tensor in off[0].items():
        assert torch.equal(on[0][name], tensor), name  # the same path: bit for bit


def test_resume_stays_bit_exact_with_the_cache_on(tmp_path, corpus):
    """A run resumed with an empty store equals one trained straight through with a full one."""
    shared = load_model("tiny-gpt2")
    cfg = tiny_config(corpus, method="qpa-lora", train_tokens=256)
    with Run.create(tmp_path / "a", cfg, loaded=shared.fresh_copy()) as straight:
        straight.train(progress=False)
    with Run.create(tmp_path / "b", cfg, loaded=shared.fresh_copy()) as first:
        first.train_step()
        first.train_step()
        first.save()
        first.train_step()  # lost with the process
    with Run.open(tmp_path / "b", loaded=load_model("tiny-gpt2")) as resumed:  # a new process: nothing stored
        assert resumed.features is not None
        resumed.train(progress=False)
    for name, p in straight.params.items():
        assert torch.equal(p, resumed.params[name]), name
    losses = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("a", "b")]  # fmt: skip
    assert losses[0] == losses[1]


def tiny(**config) -> LoadedModel:
    base = load_model("tiny-gpt2")
    settings = {**base.model.config.to_dict(), **config}
    torch.manual_seed(0)
    return LoadedModel(GPT2LMHeadModel(GPT2Config(**settings)), base.tokenizer, base.name, base.source)


class ScaledLogits(GPT2LMHeadModel):
    """A model whose logits are more than lm_head(hidden state), with nothing in its config to say so."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2
        return out


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (lambda: tiny(resid_pdrop=0.1), "not deterministic in training mode (resid_pdrop=0.1)"),
        (lambda: tiny(final_logit_softcapping=30.0), "more than lm_head(hidden state) (final_logit_soft"),
        (
            lambda: LoadedModel(ScaledLogits(tiny().model.config), tiny().tokenizer, "scaled", "scaled"),
            "not lm_head(last hidden state) (probe: differ by",
        ),
    ],
)
def test_models_whose_body_or_logits_differ_train_as_before_and_say_why(tmp_path, corpus, model, reason):
    said = []
    _, _, _, run = trained(tmp_path, corpus, "run", loaded=model(), log=said.append, method="lora", steps=1)
    assert run.features is None
    assert any(reason in m for m in said), said


def test_a_key_change_recomputes(tmp_path, corpus):
    """Another precision or other body weights are other entries; nothing is reused across keys."""
    loaded = load_model("tiny-gpt2")
    cfg = tiny_config(corpus, method="lora", steps=1)
    with Run.create(tmp_path / "run", cfg, loaded=loaded.fresh_copy()) as run:
        ids = run.train_blocks()[:2]
        fp32 = run.features.hidden(ids)
        store = loaded.features
        misses = store.misses
        assert torch.equal(run.features.hidden(ids), fp32) and store.misses == misses
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run.features.hidden(ids)
        assert store.misses == misses + 2  # bf16: computed, not read from the fp32 entries
    other = tiny(n_layer=1)
    other.features = loaded.features  # the same store, another body
    with Run.create(tmp_path / "other", cfg, loaded=other) as run:
        before = store.misses
        run.features.hidden(ids)
        assert store.misses == before + 2


def test_the_disk_cache_serves_a_new_process_and_refuses_another_key(tmp_path, corpus):
    cfg = tiny_config(corpus, method="lora", steps=1)
    folder = tmp_path / "features"
    first = load_model("tiny-gpt2")
    first.features.use_folder(folder)
    with Run.create(tmp_path / "a", cfg, loaded=first.fresh_copy()) as run:
        run.train(progress=False)
        expected = run.evaluate()["perplexity"]
    (context,) = [p for p in folder.iterdir() if p.is_dir()]
    assert len(list(context.glob("*.pt"))) == first.features.misses
    second = load_model("tiny-gpt2")
    second.features.use_folder(folder)
    with Run.open(tmp_path / "a", for_training=False, loaded=second.fresh_copy()) as run:
        run.require_checkpoint()
        assert run.evaluate()["perplexity"] == expected
    assert second.features.misses == 0 and second.features.hits > 0
    key = json.loads((context / features.KEY_FILE).read_text())
    (context / features.KEY_FILE).write_text(json.dumps({**key, "weights": "another model"}))
    said = []
    third = load_model("tiny-gpt2")
    third.features.use_folder(folder, log=said.append)
    with Run.open(tmp_path / "a", for_training=False, loaded=third.fresh_copy()) as run:
        assert run.evaluate()["perplexity"] == expected
    assert third.features.hits == 0 and "written for another key; recomputing" in " ".join(said)


def test_an_unwritable_feature_folder_runs_without_it_and_says_so(tmp_path, corpus):
    (tmp_path / "file").write_text("not a folder")
    said = []
    loaded = load_model("tiny-gpt2")
    loaded.features.use_folder(tmp_path / "file" / "features", log=said.append)
    assert loaded.features.folder is None
    assert "is not writable" in said[0] and "memory only" in said[0]
    loaded.features.use_folder(tmp_path / "file" / "features")  # the study's next run: not said again
    assert len(said) == 1
    _, _, evaluation, run = trained(tmp_path, corpus, "run", loaded=loaded.fresh_copy(), method="lora")
    assert run.features is not None and evaluation["perplexity"] > 1


def test_the_memory_budget_bounds_the_store(tmp_path, corpus):
    said = []
    loaded = load_model("tiny-gpt2")
    loaded.features = features.FeatureStore(budget_bytes=10_000, log=said.append)
    trained(tmp_path, corpus, "run", loaded=loaded.fresh_copy(), method="lora", steps=2)
    assert 0 < loaded.features.used_bytes <= 10_000
    assert sum("memory budget" in m for m in said) == 1


def test_the_switch_is_checked(corpus):
    with pytest.raises(InputError, match="feature_cache must be True or False, got 'yes'"):
        tiny_config(corpus, feature_cache="yes")


def test_the_command_line_turns_it_off_and_a_resumed_run_may_change_it(tmp_path, corpus):
    from qpa_qiskit.cli import build_parser

    args = build_parser(["train"]).parse_args(["train", "r", "--no-feature-cache"])
    assert args.feature_cache is False
    with Run.create(tmp_path / "run", tiny_config(corpus, method="lora", steps=2)) as run:
        run.train_step()
        run.save()
    with Run.open(tmp_path / "run", overrides={"feature_cache": False}) as resumed:
        assert resumed.features is None
        resumed.train(progress=False)


@pytest.mark.parametrize(("window", "stride", "batch"), [(64, 48, 3), (64, 64, 2), (40, 7, 4)])
def test_scoring_only_the_scored_positions_gives_the_same_perplexity(window, stride, batch):
    """The cached evaluation asks for the scored positions' logits only (``logits_to_keep``);
    on the full model that gives the figure of all logits, token count included."""
    from qpa_qiskit.data import perplexity

    model = load_model("tiny-gpt2").model.eval()
    tokens = torch.randint(0, 257, (500,), generator=torch.Generator().manual_seed(0))
    full = perplexity(model, tokens, window, stride, batch)
    kept = perplexity(model, tokens, window, stride, batch, scored_only=True)
    assert kept[1] == full[1] and kept[0] == pytest.approx(full[0], rel=1e-6)


def _tensors(entry) -> list[torch.Tensor]:
    """The tensors in a stored entry, whatever its layout (a tensor, or a dict holding one)."""
    if isinstance(entry, torch.Tensor):
        return [entry]
    return [v for v in entry.values() if isinstance(v, torch.Tensor)]


def _flip_a_bit(files):
    """One bit of the largest value's mantissa: the file still loads, its values finite, one moved."""
    (path, _), *_ = files
    raw = bytearray(path.read_bytes())
    (hidden,) = _tensors(torch.load(path, weights_only=True))
    at = raw.find(hidden.contiguous().numpy().tobytes())
    assert at >= 0
    raw[at + 4 * int(hidden.abs().argmax()) + 2] ^= 0x40
    path.write_bytes(bytes(raw))
    (damaged,) = _tensors(torch.load(path, weights_only=True))
    assert torch.isfinite(damaged).all() and not torch.equal(damaged, hidden)
    return [path]


def _swap_two(files):
    """Two whole, valid files of the same shape, each under the other's name."""
    (a, shape), *rest = files
    b = next(p for p, s in rest if s == shape)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    return [a, b]


def _rewrite(files, change, keep_layout):
    """The first file, well-formed, with `change` applied to its values: as a plain tensor file, or
    in the entry as written (any checksum in it kept as it was)."""
    (path, _), *_ = files
    entry = torch.load(path, weights_only=True)
    if keep_layout and isinstance(entry, dict):
        entry = {k: change(v) if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
    else:
        entry = change(_tensors(entry)[0])
    torch.save(entry, path)
    return [path]


def _cut(files, size):
    """The first file cut to `size` bytes (0: empty)."""
    (path, _), *_ = files
    path.write_bytes(path.read_bytes()[:size])
    return [path]


DAMAGES = {
    "flipped-bit": _flip_a_bit,
    "swapped": _swap_two,
    "shifted-plain-file": lambda files: _rewrite(files, lambda t: t + 0.01, keep_layout=False),
    "shifted-entry": lambda files: _rewrite(files, lambda t: t + 0.01, keep_layout=True),
    # caught before the checksum, by the load or the shape: still are, and now said
    "truncated": lambda files: _cut(files, 1000),
    "empty": lambda files: _cut(files, 0),
    "wrong-shape": lambda files: _rewrite(files, lambda t: t[:-1], keep_layout=True),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_disk_entry_is_recomputed_and_said(tmp_path, corpus, damage):
    """Entries the shape check lets through (finite values, the right shape) are caught by their
    checksum: the re-run gives the first run's perplexity exactly, and names each file."""
    cfg = tiny_config(corpus, method="lora", steps=1)
    folder = tmp_path / "features"
    first = load_model("tiny-gpt2")
    first.features.use_folder(folder)
    with Run.create(tmp_path / "a", cfg, loaded=first.fresh_copy()) as run:
        expected = run.evaluate()["perplexity"]  # evaluation only: every stored entry is a window it reads
    stored = sorted(folder.rglob("*.pt"))
    files = [(p, tuple(_tensors(torch.load(p, weights_only=True))[0].shape)) for p in stored]
    damaged = damage(files)
    said = []
    second = load_model("tiny-gpt2")
    second.features.use_folder(folder, log=said.append)
    with Run.create(tmp_path / "b", cfg, loaded=second.fresh_copy()) as run:
        assert run.evaluate()["perplexity"] == expected
    assert second.features.misses == len(damaged) and second.features.hits == len(files) - len(damaged)
    for path in damaged:
        (line,) = [m for m in said if str(path) in m]
        assert "recomputed" in line, said
    third = load_model("tiny-gpt2")  # rewritten: read back whole, nothing said
    third.features.use_folder(folder, log=said.append)
    before = len(said)
    with Run.create(tmp_path / "c", cfg, loaded=third.fresh_copy()) as run:
        assert run.evaluate()["perplexity"] == expected
    assert third.features.misses == 0 and len(said) == before


def test_the_checksum_binds_an_entry_to_its_sequence(tmp_path):
    """Two files swapped and their recorded sequence names edited to match: the checksum, made
    with the sequence's name, still refuses them."""
    said = []
    store = features.FeatureStore(log=said.append)
    store.use_folder(tmp_path)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    store.put("ctx", {}, "a", a)
    store.put("ctx", {}, "b", b)
    for name, other in (("a", "b"), ("b", "a")):
        entry = torch.load(tmp_path / "ctx" / f"{other}.pt", weights_only=True)
        torch.save({**entry, "sequence": name}, tmp_path / "ctx" / f"{name}.swapped")
    for name in ("a", "b"):
        (tmp_path / "ctx" / f"{name}.swapped").replace(tmp_path / "ctx" / f"{name}.pt")
    fresh = features.FeatureStore(log=said.append)
    fresh.use_folder(tmp_path)
    assert fresh.get("ctx", {}, "a", (4,)) is None and fresh.get("ctx", {}, "b", (4,)) is None
    assert len(said) == 2 and all("does not match its checksum" in m and "recomputed" in m for m in said)
    assert not (tmp_path / "ctx" / "a.pt").exists()  # dropped
    store = features.FeatureStore()
    store.use_folder(tmp_path)
    store.put("ctx", {}, "a", a)
    fresh = features.FeatureStore()
    fresh.use_folder(tmp_path)
    assert torch.equal(fresh.get("ctx", {}, "a", (4,)), a)
