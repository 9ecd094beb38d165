"""Trains a QPA model with transformers' Trainer, under ``accelerate launch`` or alone: the
distributed test runs it on 2 CPU processes and alone at the same global batch.

Arguments: OUT PER_DEVICE_BATCH BACKEND, where BACKEND is ``exact`` (statevector) or
``unseeded-shots`` (statevector with shots and no seed: each process would draw its own shots if
the model did not share rank 0's random state). Rank 0 writes ``OUT/model.safetensors`` and
``OUT/ranks.json``: every process's backend random state after each step.
"""

import json
import sys

import torch
from datasets import Dataset
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from qpa_qiskit.backends import QPABackend
from qpa_qiskit.hf import QPAConfig, get_qpa_model
from qpa_qiskit.models import tiny_gpt2

out, per_device, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
loaded = tiny_gpt2()
tokenizer = loaded.tokenizer
tokenizer.pad_token = tokenizer.eos_token
backend = QPABackend("statevector", shots_factor=4) if kind == "unseeded-shots" else "statevector"
config = QPAConfig(method="qpa-lora", rank=4, chunk_size=64, reps=2, hidden=[16])
model = get_qpa_model(loaded, config, backend)
texts = [f"the cat number {i} sat on the mat, and the dog on the log" for i in range(32)]
data = Dataset.from_dict({"text": texts})
data = data.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])


class RandomStates(TrainerCallback):
    """Each step's backend random state of this process: equal on every rank when the ranks
    drew the same shots."""

    def __init__(self) -> None:
        self.states: list[str] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model.qpa_backend is not None:
            self.states.append(json.dumps(model.rng_state["backend"], sort_keys=True))


states = RandomStates()
args = TrainingArguments(out, max_steps=4, save_strategy="no", per_device_train_batch_size=per_device,
                         learning_rate=1e-2, report_to=[], use_cpu=True, disable_tqdm=True)  # fmt: skip
trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[states],
                  data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))  # fmt: skip
trainer.train()
every = [states.states]
if torch.distributed.is_initialized():
    every = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, states.states)
if trainer.is_world_process_zero():
    trainer.save_model(out)
    with open(f"{out}/ranks.json", "w") as f:
        json.dump({"world_size": trainer.args.world_size, "states": every}, f)
if torch.distributed.is_initialized():
    # without this, gloo's worker threads can outlive the interpreter and abort the process at
    # exit ("terminate called without an active exception", pytorch/pytorch#190489)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
