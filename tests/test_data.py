import io
import math
import sys

import pytest
import torch
import torch.nn.functional as F

import qpa_qiskit.data.wikitext as wikitext
from qpa_qiskit import InputError
from qpa_qiskit.data import blocks, load_wikitext, perplexity, tokenize


def write(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f" = {name} = \n some text of {name} .\n")


def test_local_txt_and_tokens_layouts(tmp_path):
    write(tmp_path / "a", ["train.txt", "valid.txt", "test.txt"])
    texts = load_wikitext(tmp_path / "a")
    assert "train.txt" in texts["train"] and "test.txt" in texts["test"]
    write(tmp_path / "b", ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"])
    assert "wiki.valid.tokens" in load_wikitext(tmp_path / "b")["valid"]


def test_missing_train_falls_back_to_valid_with_notice(tmp_path):
    write(tmp_path, ["valid.txt", "test.txt"])
    notices = []
    texts = load_wikitext(tmp_path, log=notices.append)
    assert texts["train"] == texts["valid"]
    assert notices and "no train split" in notices[0]


def test_missing_data_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_wikitext(tmp_path / "nowhere")
    write(tmp_path, ["train.txt", "valid.txt"])
    with pytest.raises(InputError, match="no test split"):
        load_wikitext(tmp_path)


@pytest.mark.parametrize(
    "content, match",
    [
        (bytes(range(256)) * 20, r"test.txt is not UTF-8 text \(byte 128"),
        (b"\xff\xfe\x00\x00 utf-32?", "is not UTF-8 text"),
    ],
)
def test_binary_data_files_are_named(tmp_path, content, match):
    write(tmp_path, ["train.txt", "valid.txt"])
    (tmp_path / "test.txt").write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_wikitext(tmp_path)


def test_shared_wikitext_loads():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2"
    if not folder.is_dir():
        pytest.skip("../shared/data/wikitext-2 is not beside this checkout")
    texts = load_wikitext(folder, log=lambda m: None)
    assert len(texts["test"]) > 1_000_000 and "<unk>" in texts["test"]


class Bigram(torch.nn.Module):
    """A model whose logits depend on the previous token only: easy to score by hand."""

    def __init__(self, vocab=7):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab))

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.table[input_ids]})()


@pytest.mark.parametrize("window, stride", [(8, 8), (8, 5), (16, 1), (50, 50)])
def test_perplexity_is_exp_mean_nll_over_scored_tokens(window, stride):
    model = Bigram()
    tokens = torch.randint(0, 7, (41,), generator=torch.Generator().manual_seed(1))
    ppl, n, nll = perplexity(model, tokens, window=window, stride=stride, batch_size=3)
    # a bigram model's NLL of token t depends on token t-1 only: score every token once
    every = F.cross_entropy(model.table[tokens[:-1]], tokens[1:], reduction="none")
    if stride < window or window >= len(tokens):
        assert n == len(tokens) - 1
        assert nll == pytest.approx(every.sum().item(), rel=1e-6)
    else:  # the first token of every window has no context and is not scored
        starts = set(range(window, len(tokens), window))
        kept = [i for i in range(1, len(tokens)) if i not in starts]
        assert n == len(kept)
        assert nll == pytest.approx(every[[i - 1 for i in kept]].sum().item(), rel=1e-6)
    assert ppl == pytest.approx(math.exp(nll / n))


def test_bad_window():
    with pytest.raises(InputError, match="window"):
        perplexity(Bigram(), torch.zeros(10, dtype=torch.long), window=4, stride=5)


def test_blocks_and_tokenize():
    from qpa_qiskit.models import byte_tokenizer

    tokenizer = byte_tokenizer()
    ids = tokenize(tokenizer, "hello world", max_tokens=5)
    assert tokenizer.decode(ids) == "hello"
    assert blocks(torch.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(InputError, match="fewer than one block"):
        blocks(torch.arange(2), 3)


class TTY(io.StringIO):
    """A stderr that says it is a terminal: tqdm shows the bars a terminal would see."""

    def isatty(self):
        return True


@pytest.mark.parametrize("progress, shown", [(True, True), (False, False)])
def test_a_long_evaluation_has_its_own_bar(monkeypatch, progress, shown):
    monkeypatch.setattr(wikitext, "BAR_DELAY_S", 0.0)  # "long": from the start
    monkeypatch.setattr(sys, "stderr", TTY())
    tokens = torch.randint(0, 7, (41,), generator=torch.Generator().manual_seed(1))
    quiet = perplexity(Bigram(), tokens, window=8, stride=8, batch_size=1)
    assert sys.stderr.getvalue() == ""  # progress is off unless asked
    assert perplexity(Bigram(), tokens, window=8, stride=8, batch_size=1, progress=progress) == quiet
    assert ("perplexity:" in sys.stderr.getvalue() and "/6 [" in sys.stderr.getvalue()) == shown  # 6 windows


def test_the_evaluation_bar_is_silent_off_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(wikitext, "BAR_DELAY_S", 0.0)
    perplexity(Bigram(), torch.zeros(41, dtype=torch.long), window=8, stride=8, progress=True)
    assert capsys.readouterr().err == ""  # a CI log gets no carriage-return updates
