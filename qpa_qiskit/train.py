"""Fine-tuning with LoRA/DoRA or QPA-generated LoRA/DoRA: one loop for every method.

A run lives in a directory: ``config.json`` (the TrainConfig), ``metrics.jsonl`` (one JSON
line per optimiser step), ``checkpoint.pt`` (trainable tensors, optimiser, scheduler, step,
every random state; written atomically). A directory that already holds a run is resumed
with ``resume=True`` and refused otherwise; nothing is ever silently overwritten.

On an ``ibm:`` backend the run trains with the hardware in the loop: every QNN evaluation
goes through a job store in ``<run>/jobs`` (see :mod:`qpa_qiskit.ibm`), labelled by its
step, and the checkpoint is written after every step. A resumed run replays at most the
step in flight, and that step collects its recorded jobs instead of submitting new ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .adapters import METHODS, AdaptedModel, AdapterConfig
from .backends import QPABackend
from .data import blocks, load_wikitext, perplexity, tokenize
from .errors import InputError
from .files import atomic_directory, atomic_write
from .ibm import HardwareLoop
from .models import LoadedModel, load_model

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    model: str = "smollm2-135m"
    data: str = "hub"
    method: str = "qpa-lora"
    rank: int = 4
    lora_alpha: float | None = None
    targets: list[str] = field(default_factory=lambda: ["lm_head"])
    backend: str = "statevector"
    shots_factor: float | None = None
    chunk_size: int = 2048
    reps: int = 8
    rotation: str = "ry"
    hidden: list[int] = field(default_factory=lambda: [32, 32])
    completion: str = "none"
    steps: int = 30
    batch_size: int = 4
    grad_accum: int = 1
    block_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 3
    schedule: str = "cosine"
    max_grad_norm: float = 1.0
    seed: int = 0
    precision: str = "fp32"
    train_tokens: int | None = 200_000
    save_every: int = 10
    eval_tokens: int | None = 16_384
    eval_window: int = 256
    eval_stride: int = 192
    eval_batch: int = 4

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; accepted: {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("rank", "chunk_size", "steps", "batch_size", "grad_accum", "block_size", "save_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                label = {"chunk_size": "chunk size"}.get(name, name)
                raise InputError(f"{label} must be a positive integer, got {value!r}")
        from .completion import MODES

        if self.completion not in MODES:
            raise InputError(f"completion must be one of {MODES}, got {self.completion!r}")
        if self.completion != "none" and not self.method.startswith("qpa-"):
            raise InputError(f"completion {self.completion!r} applies to the qpa-* methods only")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr!r}")

    def adapter(self) -> AdapterConfig:
        return AdapterConfig(
            method=self.method,
            rank=self.rank,
            lora_alpha=self.lora_alpha,
            target_modules=tuple(self.targets),
            chunk_size=self.chunk_size,
            reps=self.reps,
            rotation=self.rotation,
            hidden=tuple(self.hidden),
            completion=self.completion,
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(
    cfg: TrainConfig, loaded: LoadedModel | None = None, hardware_loop: HardwareLoop | None = None
) -> tuple[LoadedModel, AdaptedModel]:
    """Model, tokenizer and adapter for a config; the backend only for QPA methods (on
    ``ibm:``, every evaluation goes through `hardware_loop` when given)."""
    cfg.validate()
    backend = None
    if cfg.method.startswith("qpa-"):
        # on IBM Quantum the account opens when a job is due: a finished run reads its
        # recorded results (eval, export) with no account
        deferred = {}
        if QPABackend._parse(cfg.backend)[0] == "ibm":
            deferred = {"connect": False, "hardware_loop": hardware_loop}
        backend = QPABackend(cfg.backend, shots_factor=cfg.shots_factor, seed=cfg.seed, **deferred)
    loaded = loaded or load_model(cfg.model)
    _seed_everything(cfg.seed)  # adapter initialisation depends on the seed only
    return loaded, AdaptedModel(loaded.model, cfg.adapter(), backend=backend)


def _tqdm_log(message: str) -> None:
    """A log line that does not break a progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Run:
    """A training run in a directory: create, resume, step, checkpoint."""

    def __init__(self, run_dir: str | Path, cfg: TrainConfig | None = None, resume: bool = False,
                 loaded: LoadedModel | None = None, texts: dict | None = None, log=None,
                 resubmit_unconfirmed: bool = False, retry_failed: bool = False) -> None:  # fmt: skip
        self.dir = Path(run_dir)
        if texts is not None:
            self._texts = texts
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        config_path = self.dir / "config.json"
        if config_path.exists():
            stored = TrainConfig(**json.loads(config_path.read_text()))
            if not resume:
                raise InputError(
                    f"run directory {self.dir} already holds a run; pass --resume to continue it "
                    "or choose another directory"
                )
            if cfg is not None:
                changed = {
                    k: (getattr(stored, k), v)
                    for k, v in dataclasses.asdict(cfg).items()
                    if k != "steps" and getattr(stored, k) != v
                }
                if changed:
                    raise InputError(f"--resume with a different configuration: {changed}")
                stored.steps = cfg.steps
            cfg = stored
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise InputError(f"{self.dir} exists and is not a run directory; choose an empty or new one")
        elif cfg is None:
            raise InputError(f"{self.dir} holds no run")
        cfg.validate()
        self.cfg = cfg
        loop = HardwareLoop(  # writes nothing until an ibm: backend evaluates through it
            self.dir / "jobs",
            resubmit_unconfirmed=resubmit_unconfirmed,
            retry_failed=retry_failed,
            log=_tqdm_log,
            command=f"qpa train {self.dir} --resume",
        )
        self.loaded, self.model = build(cfg, loaded, hardware_loop=loop)
        backend = self._backend()
        self.hardware = loop if backend is not None and backend.kind == "ibm" else None
        if self.hardware is not None and not config_path.exists():
            # a new run: account, device and width fail here, before any file
            backend.isa_circuit(self.model.generator.circuit)
        self.params = self.model.trainable_parameters()
        self.optimizer = torch.optim.AdamW(
            list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(cfg))
        self.step = 0
        if (self.dir / "checkpoint.pt").exists():
            self._load_checkpoint()
        elif config_path.exists():
            self._truncate_metrics()
        else:
            self.texts  # noqa: B018 - a missing data set fails here, before anything is written
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(config_path, json.dumps(dataclasses.asdict(cfg), indent=2).encode())

    # ------------------------------------------------------------------ state
    def _backend(self) -> QPABackend | None:
        gen = self.model.generator
        return None if gen is None else gen.quantum.backend

    def _state(self) -> dict:
        backend = self._backend()
        return {
            "step": self.step,
            "trainable": {n: p.detach().clone() for n, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "backend": None if backend is None else backend._rng.bit_generator.state,
            },
        }

    def save(self) -> None:
        import io

        buffer = io.BytesIO()
        torch.save(self._state(), buffer)
        atomic_write(self.dir / "checkpoint.pt", buffer.getvalue())

    def _load_checkpoint(self) -> None:
        state = torch.load(self.dir / "checkpoint.pt", weights_only=False)
        with torch.no_grad():
            for name, tensor in state["trainable"].items():
                self.params[name].copy_(tensor)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        backend = self._backend()
        if backend is not None and state["rng"]["backend"] is not None:
            backend._rng.bit_generator.state = state["rng"]["backend"]
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop metric lines of steps after the checkpoint (the tail of a killed run)."""
        metrics = self.dir / "metrics.jsonl"
        if metrics.exists():
            kept = []
            for line in metrics.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= self.step:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by the kill
            lines = kept
            atomic_write(metrics, "".join(ln + "\n" for ln in lines).encode())

    # ------------------------------------------------------------------ training
    @property
    def texts(self) -> dict[str, str]:
        if not hasattr(self, "_texts"):
            self._texts = load_wikitext(self.cfg.data, log=self.log)
        return self._texts

    def train_blocks(self) -> torch.Tensor:
        if not hasattr(self, "_blocks"):
            tokens = tokenize(self.loaded.tokenizer, self.texts["train"], self.cfg.train_tokens)
            self._blocks = blocks(tokens, self.cfg.block_size)
        return self._blocks

    def batch(self, step: int, micro: int) -> torch.Tensor:
        """Deterministic batch of an optimiser step: an epoch-wise seeded permutation."""
        data = self.train_blocks()
        per_step = self.cfg.batch_size * self.cfg.grad_accum
        start = (step * per_step + micro * self.cfg.batch_size) % len(data)
        epoch = (step * per_step + micro * self.cfg.batch_size) // len(data)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.cfg.seed + epoch))
        idx = torch.cat([order, order])[start : start + self.cfg.batch_size]
        return data[idx]

    def _label(self, label: str) -> None:
        """Name the QNN evaluations that follow (hardware in the loop: the job label)."""
        if self.hardware is not None:
            self.hardware.label = label

    def train_step(self) -> dict:
        cfg = self.cfg
        self.model.train()
        self._label(f"step-{self.step + 1:06d}")
        start = time.perf_counter()
        total = 0.0
        for micro in range(cfg.grad_accum):
            ids = self.batch(self.step, micro)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                loss = self.model(input_ids=ids, labels=ids).loss / cfg.grad_accum
            loss.backward()
            total += loss.item()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), cfg.max_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        record = {"step": self.step, "loss": total, "lr": lr, "seconds": time.perf_counter() - start}
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def train(self, progress: bool = True) -> list[dict]:
        from tqdm import tqdm

        records = []
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.cfg.method, disable=not progress,
                   file=sys.stderr)  # fmt: skip
        try:
            while self.step < self.cfg.steps:
                record = self.train_step()
                records.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                bar.update(1)
                # on hardware every step is paid for: never replay more than the step in flight
                if self.hardware or self.step % self.cfg.save_every == 0 or self.step == self.cfg.steps:
                    self.save()
        finally:
            bar.close()
            if self.hardware is not None:
                self.hardware.close()
        return records

    # ------------------------------------------------------------------ evaluation
    def label_final_weights(self) -> None:
        """The weights generated after training (for eval and export) are evaluation
        ``weights-<step>``: on hardware one recorded job, later read back from the ledger."""
        self._label(f"weights-{self.step:06d}")

    def evaluate(self, split: str = "test") -> dict:
        self.label_final_weights()
        return evaluate(self.model, self.loaded, self.cfg, self.texts, split)


def evaluate(model, loaded: LoadedModel, cfg: TrainConfig, texts: dict[str, str], split="test") -> dict:
    """Perplexity of `model` (a base model or an AdaptedModel) on a WikiText-2 split."""
    max_positions = getattr(loaded.model.config, "max_position_embeddings", None) or getattr(
        loaded.model.config, "n_positions", None
    )
    if max_positions is not None and cfg.eval_window > max_positions:
        raise InputError(
            f"eval window {cfg.eval_window} is longer than the model's {max_positions} positions"
        )
    tokens = tokenize(loaded.tokenizer, texts[split], cfg.eval_tokens)
    model.eval()
    if isinstance(model, AdaptedModel):
        model.materialize()  # generated once, then plain peft forward passes
        fn = model.peft_model
    else:
        fn = model
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        ppl, n, nll = perplexity(fn, tokens, cfg.eval_window, cfg.eval_stride, cfg.eval_batch)
    return {"split": split, "perplexity": ppl, "tokens": n, "nll": nll}


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a run's adapter, generated weights materialised, as a plain peft directory.

    ``PeftModel.from_pretrained(base_model, out_dir)`` loads it with no qpa_qiskit import.
    The directory appears complete or not at all.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty; export into a new directory")
    run = Run(run_dir, resume=True)
    run.label_final_weights()
    with atomic_directory(out) as tmp:
        run.model.save_adapter(tmp, base_model_name=run.loaded.source)
        info = {
            "base_model": run.loaded.name,
            "base_model_path": run.loaded.source,
            "gguf_file": run.loaded.gguf_file,
            "method": run.cfg.method,
            "step": run.step,
            "counts": run.model.counts(),
        }
        (tmp / "qpa_export.json").write_text(json.dumps(info, indent=2))
    return out


def new_output_dir(out, default_pattern: str) -> Path:
    """`out`, or a time-stamped default; refused if it exists and holds anything."""
    out = Path(out or time.strftime(default_pattern))
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose a new directory")
    return out


def compare(cfg: TrainConfig, out=None, methods=("lora", "qpa-lora"), log=print) -> list[dict]:
    """Base model, then each method trained with the same data, steps and seed: test
    perplexity and trainable counts, printed as a table and saved in `out`."""
    out = new_output_dir(out, "runs/compare-%Y%m%d-%H%M%S")

    def for_method(method: str) -> TrainConfig:
        completion = cfg.completion if method.startswith("qpa-") else "none"
        return TrainConfig(**{**dataclasses.asdict(cfg), "method": method, "completion": completion})

    for method in methods:
        for_method(method).validate()
    base = load_model(cfg.model)
    texts = load_wikitext(cfg.data)
    rows = []
    log(f"model {base.name}, data {cfg.data}, {cfg.steps} steps of {cfg.batch_size}x{cfg.block_size} tokens")
    result = evaluate(base.model, base, cfg, texts)
    rows.append({"method": "base", "perplexity": result["perplexity"], "tokens": result["tokens"],
                 "trainable": 0, "generated": 0, "seconds_per_step": None})  # fmt: skip
    log(f"base: test perplexity {result['perplexity']:.3f} ({result['tokens']} tokens)")
    for method in methods:
        mcfg = for_method(method)
        run = Run(out / method, mcfg, loaded=base.fresh_copy(), texts=texts)
        records = run.train()
        result = run.evaluate()
        counts = run.model.counts()
        seconds = sorted(r["seconds"] for r in records)[len(records) // 2] if records else None
        rows.append({"method": method, "perplexity": result["perplexity"], "tokens": result["tokens"],
                     "trainable": counts["trainable"], "generated": counts.get("generated", 0),
                     "qubits": counts.get("qubits"), "seconds_per_step": seconds,
                     "final_loss": records[-1]["loss"] if records else None})  # fmt: skip
        log(f"{method}: test perplexity {result['perplexity']:.3f}, trainable {counts['trainable']}")
    table = ["| method | test perplexity | trainable parameters | adapter weights generated | s/step |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        gen = f"{r['generated']} ({r['qubits']} qubits)" if r["generated"] else "-"
        sec = f"{r['seconds_per_step']:.2f}" if r["seconds_per_step"] else "-"
        table.append(f"| {r['method']} | {r['perplexity']:.3f} | {r['trainable']:,} | {gen} | {sec} |")
    text = "\n".join(table)
    log("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "rows": rows}, indent=2))
    (out / "results.md").write_text(text + "\n")
    return rows
