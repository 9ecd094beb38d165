"""QPA-LoRA through transformers' ``Trainer``: the peft-style QPA model (``qpa_qiskit.hf``)
fine-tuned on WikiText-2 with ``Trainer`` and ``QPACallback``, then scored, used for
generation, saved, and exported as a plain peft adapter.

    .venv/bin/python examples/hf_trainer.py --steps 30

prints the trainable parameters, the training log (with the ``qpa/`` diagnostics), the test
perplexity of the base and the adapted model, and one greedy continuation of a prompt; writes
``Trainer``'s checkpoints, the QPA model (``qpa-model/``) and the peft adapter (``adapter/``)
under ``--out``. Offline and on a CPU: the default model is the embedded SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from qpa_qiskit.data import EvalConfig, blocks, hold_out_dev, load_wikitext, perplexity, tokenize
from qpa_qiskit.data.config import DEV_SHARE
from qpa_qiskit.hf import QPACallback, QPAConfig, get_qpa_model
from qpa_qiskit.models import load_model

PROMPT = "The history of the city"


def scored_perplexity(model, tokens: torch.Tensor) -> float:
    """Windowed test perplexity as ``qpa eval`` scores it (its default window and stride)."""
    scoring = EvalConfig()
    model.eval()
    ppl, _, _ = perplexity(model, tokens, scoring.eval_window, scoring.eval_stride, scoring.eval_batch)
    return ppl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny-gpt2 or a Hub causal LM")
    parser.add_argument("--data", default="../shared/data/wikitext-2", help="a WikiText-2 folder, or 'hub'")
    parser.add_argument("--steps", type=int, default=30, help="training steps")
    parser.add_argument("--out", type=Path, default=Path("runs/hf-trainer"), help="output folder")
    parser.add_argument("--block-size", type=int, default=128, help="tokens per training block")
    parser.add_argument("--train-tokens", type=int, default=200_000, help="cap on the training tokens")
    parser.add_argument("--eval-tokens", type=int, default=4096, help="test tokens scored")
    parser.add_argument("--chunk-size", type=int, default=2048, help="generated weights per circuit outcome")
    args = parser.parse_args(argv)
    adapter_dir, qpa_dir = args.out / "adapter", args.out / "qpa-model"
    if adapter_dir.exists() and any(adapter_dir.iterdir()):  # export() writes only into a new folder
        sys.exit(f"{adapter_dir} is not empty: give another --out, or delete it")
    started = time.perf_counter()

    # the model and the data: the train split, or (a folder with none) the valid split less its dev share
    loaded = load_model(args.model)
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = hold_out_dev(load_wikitext(args.data), DEV_SHARE, log=print)
    train = blocks(tokenize(tokenizer, texts["train"], args.train_tokens), args.block_size)
    test = tokenize(tokenizer, texts["test"], args.eval_tokens)
    print(f"{args.model}: {len(train)} training blocks of {args.block_size} tokens; {len(test)} test tokens")
    dataset = Dataset.from_dict({"input_ids": train.tolist(), "labels": train.tolist()})
    base_ppl = scored_perplexity(loaded.model, test)

    # the QPA model, trained by Trainer with QPA's diagnostics in its logs
    config = QPAConfig(method="qpa-lora", rank=4, chunk_size=args.chunk_size, reps=8)
    model = get_qpa_model(loaded, config, backend="statevector", seed=0)
    model.print_trainable_parameters()
    training = TrainingArguments(
        output_dir=str(args.out),
        max_steps=args.steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=max(1, args.steps // 10),
        save_steps=args.steps,  # one checkpoint, at the end: model.safetensors of the QPA state
        report_to=[],
    )
    trainer = Trainer(model, training, train_dataset=dataset, callbacks=[QPACallback()])
    trainer.train()

    # scored, used, saved
    adapted_ppl = scored_perplexity(model, test)
    print(f"test perplexity: base {base_ppl:.3f} -> adapted {adapted_ppl:.3f} ({test.numel()} tokens)")
    prompt = tokenizer(PROMPT, return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    print("generated:", repr(tokenizer.decode(output[0], skip_special_tokens=True)))
    model.save_pretrained(qpa_dir)
    model.export(adapter_dir)
    print(f"Trainer checkpoints: {args.out}/checkpoint-*")
    print(f"QPA model (QPAModel.from_pretrained): {qpa_dir}")
    print(f"peft adapter (PeftModel.from_pretrained): {adapter_dir}")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
