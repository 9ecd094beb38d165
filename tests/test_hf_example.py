"""examples/hf_trainer.py: QPA-LoRA trained by transformers' Trainer, run as a script on the
tiny GPT-2, end to end: training, perplexity, generation, save and export."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The history of the city"  # the script's prompt


@pytest.mark.slow  # about 10 s, most of it importing transformers, peft and qiskit
def test_the_trainer_example_trains_scores_generates_and_saves(corpus, tmp_path):
    out = tmp_path / "out"
    options = "--model tiny-gpt2 --steps 2 --block-size 32 --eval-tokens 200 --chunk-size 64".split()
    # offline: the subprocess inherits the environment tests/offline.py set
    result = subprocess.run(
        [sys.executable, "examples/hf_trainer.py", *options, "--data", str(corpus), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "qpa-model" / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "checkpoint-2" / "model.safetensors").is_file()  # Trainer's checkpoint

    printed = result.stdout
    assert "trainable params:" in printed and "qpa/chunk_spread" in printed  # QPACallback's figures
    scores = re.search(r"test perplexity: base (\S+) -> adapted (\S+)", printed)
    assert scores, printed[-2000:]
    assert all(math.isfinite(float(x)) and float(x) > 1 for x in scores.groups())
    generated = [line for line in printed.splitlines() if line.startswith("generated:")]
    assert len(generated) == 1 and PROMPT in generated[0], printed[-2000:]
    assert len(generated[0]) > len(f"generated: {PROMPT!r}")  # tokens were added to the prompt
