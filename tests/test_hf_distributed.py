"""The QPA model under accelerate (DDP over gloo, 2 CPU processes) and under TRL's SFTTrainer."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "hf_ddp.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def free_port() -> int:
    """A port nothing listens on now: each launch gets its own rendezvous port, so one launch
    never meets the last one's socket on accelerate's default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(out: Path, per_device: int, kind: str, processes: int = 1) -> dict:
    # `accelerate launch --multi_gpu` starts torch.distributed's launcher; on a machine without a
    # GPU the processes train on the CPU over gloo (without it, accelerate starts one process)
    launch = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]  # fmt: skip
    command = [*launch, str(SCRIPT)] if processes > 1 else [sys.executable, str(SCRIPT)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, str(out), str(per_device), kind], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-8000:]
    return json.loads((out / "ranks.json").read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # 2 ranks on 2 CPUs: one launch at a time (docs/testing.md)
def test_two_processes_train_what_one_trains_at_the_same_global_batch(tmp_path):
    ranks = train(tmp_path / "ddp", 2, "exact", processes=2)
    assert ranks["world_size"] == 2
    train(tmp_path / "one", 4, "exact")
    both = load_file(tmp_path / "ddp" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    floats = [k for k in one if one[k].dtype.is_floating_point]
    assert floats and max(float((both[k] - one[k]).abs().max()) for k in floats) < 1e-5


@pytest.mark.slow
@pytest.mark.xdist_group("processes")  # 2 ranks on 2 CPUs: one launch at a time (docs/testing.md)
def test_shots_without_a_shared_seed_are_drawn_alike_on_every_rank(tmp_path):
    ranks = train(tmp_path / "ddp", 2, "unseeded-shots", processes=2)
    first, second = ranks["states"]
    assert len(first) == 4 and first == second  # the same shots at every step on both ranks


def test_sfttrainer_fine_tunes_a_qpa_model_on_a_made_up_instruction_set(tmp_path):
    trl = pytest.importorskip("trl", reason="the trl extra: pip install 'qpa-qiskit[trl]'")
    from datasets import Dataset

    from qpa_qiskit.hf import QPAConfig, get_qpa_model
    from qpa_qiskit.models import tiny_gpt2

    loaded = tiny_gpt2()
    loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    model = get_qpa_model(loaded, QPAConfig(method="qpa-lora", rank=4, chunk_size=64, reps=2))
    rows = [{"prompt": f"What is {a} plus {b}?", "completion": f" {a + b}."}
            for a in range(6) for b in range(4)]  # fmt: skip
    args = trl.SFTConfig(str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-2,
                         report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                         max_length=64)  # fmt: skip
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=loaded.tokenizer)  # fmt: skip
    start = {k: v.clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    trainer.train()
    moved = [k for k, v in start.items() if not torch.equal(v, model.state_dict()[k])]
    assert "generator.quantum.theta" in moved and len(moved) == len(start)
    assert trainer.state.global_step == 4
    assert 0 < trainer.state.log_history[-1]["train_loss"] < 10
