"""Training runs: one loop for every method, in a folder that survives any stop.

A run folder holds ``config.json`` (the :class:`~qpa_qiskit.train.run_config.RunConfig`,
every field), ``metrics.jsonl`` (one line per optimiser step) and ``checkpoint.pt``
(trainable tensors, optimiser, scheduler, step and every random state, the backend's shot
sampler and the completion's generator included; written atomically). What the folder guarantees is
:class:`~qpa_qiskit.train.folder.RunFolder`'s; :class:`Run` is the trainer in it (batches,
gradient accumulation, step, checkpoints, dev curve) and hands it plain values (a state dict, a
record). Its parts sit below it in the run wing: the checks before anything is written
(:mod:`.checks`), the device and random states (:mod:`.device`), the optimiser and schedule
(:mod:`.optimiser`), a model's perplexity on a split (:mod:`.scoring`), the resume rule
(:mod:`.resume`); what ``qpa eval`` reports (:mod:`.evaluation`) and the export
(:mod:`.export`) sit above it.

* :meth:`Run.create` checks everything that can be checked (the configuration, the model,
  the data, the backend, the account and device width on IBM Quantum) before it writes
  anything, then makes the folder appear whole, with its ``config.json``, or not at all.
* :meth:`Run.open` continues a run with its stored configuration; only the settings in
  :data:`~qpa_qiskit.train.resume.RESUMABLE` may be changed (:mod:`.resume`, the one rule),
  anything else is refused with the field and both values.
* A run open for training holds the folder's lock (``.lock``): a second ``qpa train`` on the
  same folder is refused while the first runs, and the kernel drops the lock if the process
  dies. Temporary files a killed process left behind are removed when the lock is taken.
* A resumed run continues exactly as if it had not stopped (the tests SIGKILL it and compare
  bit for bit).

On an ``ibm:`` backend the run trains with the hardware in the loop: the backend is built
with a :class:`~qpa_qiskit.jobs.HardwareLoop` whose job store is ``<run>/jobs``; each step's
circuit evaluation (where it has one) is one recorded job, and a resumed run replays at most
the step in flight, collecting its recorded job instead of submitting a new one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..adapters import AdaptedModel
from ..backends import QPABackend
from ..data import DEV, blocks, hold_out_dev, tokenize
from ..errors import InputError, StateError
from ..features import BodyFeatures, body_features
from ..hf.state import holds_saved_model, saved_model_as_run
from ..models import LoadedModel, load_model
from .budget import RunBudget, check_cost
from .checks import check_first_evaluation, check_fits_model, check_splits, load_texts
from .device import autocast, random_state, run_device, seed_everything, set_random_state
from .folder import CHECKPOINT, LAYOUT, RunFolder
from .hardware import hardware_loop
from .optimiser import optimiser
from .resume import persisted, resume_config
from .run_config import RunConfig
from .scoring import evaluate


def _stderr(message: str) -> None:
    """A log line that does not break a progress bar."""
    # lazy: tqdm, only when progress is shown
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


class Run:
    """A training run in a folder: :meth:`create` a new one or :meth:`open` an existing one,
    then :meth:`train`, :meth:`evaluate`; :meth:`close` (or a ``with`` block) releases the
    folder. See the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        cfg: RunConfig,
        *,
        loaded: LoadedModel | None,
        texts: dict[str, str] | None,
        log: Callable[[str], None] | None,
        hardware_options: dict[str, bool] | None,
        padded: bool = True,
    ) -> None:
        """Use :meth:`create` or :meth:`open`. `padded`: check the padded lines against the
        model here (:func:`check_fits_model`); :meth:`create` checks them with the data."""
        self.dir = run_dir
        self.cfg = cfg
        self.log = log or _stderr
        self.folder = RunFolder(run_dir, self.log)
        self._texts = None if texts is None else hold_out_dev(texts, cfg.task.dev_share)
        self.device = run_device(cfg)  # a device torch does not see is refused before anything else
        self.hardware = hardware_loop(cfg, run_dir, hardware_options, _stderr)  # ibm: recorded jobs
        backend = (
            QPABackend.from_config(
                cfg.backend, self.hardware, seed=cfg.training.seed, device=str(self.device)
            )
            if cfg.reads_circuit
            else None
        )
        self.loaded = loaded or load_model(cfg.task.model)
        check_fits_model(cfg, self.loaded, padded=padded)
        seed_everything(cfg.training.seed)
        self.model = AdaptedModel(
            self.loaded.model, cfg.adapter, cfg.generator, backend, seed=cfg.training.seed
        )
        self.model.place(self.device)  # initial values drawn on the CPU: the same on every device
        self.params = self.model.trainable_parameters()
        self.features = self._body_features()
        self.optimizer, self.scheduler = optimiser(
            cfg.training, self.params, self.model.circuit_parameter_names()
        )
        self.step = 0
        self.saved_model = False  # a saved QPA model read as a run (Run.open), not a run folder

    def _body_features(self) -> BodyFeatures | None:
        """The cached path of the frozen body (:mod:`qpa_qiskit.features`), where the adapter
        lives only in ``lm_head`` and ``feature_cache`` is on; None (and said why) otherwise."""
        if not self.cfg.training.feature_cache:
            return None
        peft_model = self.model.peft_model
        return body_features(peft_model, self.model.adapter_tensor_names(), self.loaded.features,
                             self.loaded.identity, self.log, self.cfg.adapter.method)  # fmt: skip

    # ------------------------------------------------------------------ create and open
    @classmethod
    def create(
        cls,
        run_dir: str | Path,
        cfg: RunConfig,
        *,
        loaded: LoadedModel | None = None,
        texts: dict[str, str] | None = None,
        log: Callable[[str], None] | None = None,
        hardware_options: dict[str, bool] | None = None,
    ) -> Run:
        """A new run in `run_dir` (absent or empty). Everything is checked first; the folder
        then appears with its ``config.json`` or not at all. The run holds the folder's lock."""
        run_dir = Path(run_dir)
        if not isinstance(cfg, RunConfig):
            raise InputError(f"a run needs a RunConfig, got {type(cfg).__name__}")
        RunFolder.check_new(run_dir)
        run = cls(
            run_dir, cfg, loaded=loaded, texts=texts, log=log, hardware_options=hardware_options, padded=False
        )
        run.check_data()
        check_first_evaluation(run.model)
        if run.hardware is not None:  # account, device and width fail here, before any file
            run.model.generator.quantum.backend.connect()
            run.model.generator.quantum.backend.isa_circuit(run.model.generator.circuit)
        check_cost(run)  # over its QPU-time budget: refused here, before any file
        run.folder.create(cfg, run._placement())
        run.folder.lock()
        return run

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        for_training: bool = True,
        loaded: LoadedModel | None = None,
        texts: dict[str, str] | None = None,
        log: Callable[[str], None] | None = None,
        hardware_options: dict[str, bool] | None = None,
    ) -> Run:
        """The run stored in `run_dir`, at its last checkpoint.

        `overrides` (field name -> value) may change only what a resumed run may change
        (:func:`~qpa_qiskit.train.resume.resume_config`: the ``RESUMABLE`` settings, and
        ``data`` when not training); the same value as stored is accepted for any field. With
        `for_training` the run holds the folder's lock, removes the temporary files a killed
        process left, drops metric lines after the checkpoint and records a new length or device
        in ``config.json`` (:func:`~qpa_qiskit.train.resume.persisted`); otherwise nothing in the
        folder is changed.
        """
        run_dir = Path(run_dir)
        saved = holds_saved_model(run_dir)
        if saved and for_training:
            raise InputError(
                f"{run_dir} holds a saved QPA model (QPAModel.save_pretrained or a Trainer checkpoint), not "
                f"a qpa train run: it has no optimiser state to resume. Evaluate it with 'qpa eval "
                f"{run_dir}', export it with 'qpa export {run_dir} OUT', or train it further in Python "
                "(QPAModel.from_pretrained(base_model, folder, is_trainable=True))"
            )
        if saved:
            stored, trainable, model_rng, step = saved_model_as_run(run_dir)
        else:
            stored = cls.stored_config(run_dir)
        cfg = resume_config(stored, overrides or {}, run_dir, "train" if for_training else "evaluate")
        run = cls(run_dir, cfg, loaded=loaded, texts=texts, log=log, hardware_options=hardware_options)
        if saved:
            run.saved_model = True
            run._restore_tensors(trainable, model_rng, source=run_dir)
            run.step = step
            return run
        if for_training:
            run.folder.lock()
        if run.folder.has_checkpoint:
            run.folder.load_checkpoint(run._restore)
        if for_training:
            run.folder.truncate_metrics(run.step)
            kept = persisted(stored, cfg, run.step)  # a new length, another device: config.json says so
            if kept:
                run.folder.save_config(stored.replace(**kept))
        return run

    @staticmethod
    def stored_config(run_dir: str | Path) -> RunConfig:
        """The configuration a run folder was created with."""
        return RunFolder.stored_config(run_dir)

    def close(self) -> None:
        """Release the hardware session and the folder's lock."""
        if self.hardware is not None:
            self.hardware.close()
        self.folder.unlock()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {
            "step": self.step,
            "trainable": {n: p.detach().to("cpu", copy=True) for n, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self._rng_state(),
        }

    def _rng_state(self) -> dict:
        """Every random state the run draws from (:func:`~.device.random_state`)."""
        return random_state(self.model, self.device)

    def _set_rng_state(self, rng: dict) -> None:
        """Put back what :meth:`_rng_state` took (:func:`~.device.set_random_state`)."""
        set_random_state(self.model, self.device, rng)

    def random_state(self) -> dict:
        """Every random state the run draws from, to put back with :meth:`set_random_state`:
        scoring a run opened once several times, each from the state it was opened in, gives
        what opening it afresh for each would (a study scores dev, test and measures so)."""
        return self._rng_state()

    def set_random_state(self, state: dict) -> None:
        """Put back what :meth:`random_state` took."""
        self._set_rng_state(state)

    def save(self) -> None:
        self.folder.save_checkpoint(self._state())

    def _restore(self, state: dict) -> None:
        """Put a checkpoint's state back: tensors, optimiser, scheduler, step, random states."""
        self._restore_tensors(state["trainable"], source=self.dir / CHECKPOINT)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self._set_rng_state(state["rng"])

    def _restore_tensors(
        self, trainable: dict[str, torch.Tensor], model_rng: Any = None, *, source: Path
    ) -> None:
        """Put back the trainable tensors (and the model's own random states, where given)."""
        if set(trainable) != set(self.params):
            differ = sorted(set(trainable) ^ set(self.params))[:4]
            raise StateError(
                f"{source} holds other tensors than this run trains ({differ}...): it belongs to another "
                "configuration. Restore the matching checkpoint, or delete it to restart the run from step 0"
            )
        with torch.no_grad():
            for name, tensor in trainable.items():
                self.params[name].copy_(tensor)
        if model_rng is not None:
            self.model.rng_state = model_rng

    # ------------------------------------------------------------------ data
    @property
    def texts(self) -> dict[str, str]:
        if self._texts is None:
            self._texts = load_texts(self.cfg, self.log)
        return self._texts

    def train_blocks(self) -> torch.Tensor:
        if not hasattr(self, "_blocks"):
            tokens = tokenize(self.loaded.tokenizer, self.texts["train"], self.cfg.task.train_tokens)
            self._blocks = blocks(tokens, self.cfg.training.block_size)
        return self._blocks

    def _placement(self) -> dict[str, Any]:
        """``{layout.json: ...}`` for a run whose circuit runs on a device: the layout setting, the
        physical qubit of each circuit qubit and their errors as calibrated (nothing otherwise)."""
        quantum = self.model.generator.quantum if self.cfg.reads_circuit else None
        backend = None if quantum is None else quantum.backend
        if backend is None or backend.connect() is None:
            return {}
        placed = backend.placement(self.model.generator.circuit)
        return {LAYOUT: {"backend": backend.name, "setting": self.cfg.backend.layout, **placed}}

    def check_data(self) -> None:
        """The data loads, gives at least one training block, and a test split to score."""
        self.train_blocks()
        check_splits(self.cfg, self.loaded, self.texts)

    def batch(self, step: int, micro: int) -> torch.Tensor:
        """Deterministic batch of an optimiser step: an epoch-wise seeded permutation."""
        t = self.cfg.training
        data = self.train_blocks()
        per_step = t.batch_size * t.grad_accum
        start = (step * per_step + micro * t.batch_size) % len(data)
        epoch = (step * per_step + micro * t.batch_size) // len(data)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(t.seed + epoch))
        idx = torch.cat([order, order])[start : start + t.batch_size]
        return data[idx].to(self.device)

    # ------------------------------------------------------------------ training
    def _label(self, label: str) -> None:
        """Name the circuit evaluations that follow (hardware in the loop: the job label)."""
        if self.hardware is not None:
            self.hardware.label = label

    def accumulate_gradients(self) -> float:
        """The gradients of this step's loss, summed over its micro-batches; returns the loss.

        The generated adapter weights are produced once (one circuit evaluation with its
        gradient's sets, or the last probabilities where ``circuit_every`` skips this step),
        every micro-batch runs with them, and their accumulated gradient goes back through the
        generator once.
        """
        t = self.cfg.training
        self.model.train()
        self._label(f"step-{self.step + 1:06d}")
        generator = self.model.generator
        generated = None if generator is None else self.model.generated_tensors(step=self.step)
        leaves = None
        if generated is not None:
            leaves = {n: g.detach().requires_grad_() for n, g in generated.items()}
        total = 0.0
        for micro in range(t.grad_accum):
            ids = self.batch(self.step, micro)
            with autocast(self.device, t.precision):
                if self.features is not None:  # the body's hidden states computed once, only the head runs
                    out = self.features(input_ids=ids, labels=ids, tensors=leaves)
                elif leaves is None:
                    out = self.model(input_ids=ids, labels=ids)
                else:
                    out = self.model.forward_with(leaves, input_ids=ids, labels=ids)
                loss = out.loss / t.grad_accum
            loss.backward()
            total += loss.item()
        if generated is not None:
            grads = [leaves[n].grad if leaves[n].grad is not None else torch.zeros_like(g)
                     for n, g in generated.items()]  # fmt: skip
            torch.autograd.backward(list(generated.values()), grads)
        return total

    def train_step(self) -> dict:
        """One optimiser step; its metrics line is appended to ``metrics.jsonl``."""
        t = self.cfg.training
        start = time.perf_counter()
        total = self.accumulate_gradients()
        if t.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), t.max_grad_norm)
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.device.type == "cuda":  # the step's kernels finished: its seconds are its own
            torch.cuda.synchronize(self.device)
        record = {"step": self.step, "loss": total, "lr": rates[0], "seconds": time.perf_counter() - start,
                  "device": str(self.device)}  # fmt: skip
        if len(rates) > 1:
            record["circuit_lr"] = rates[1]
        record.update(self.model.diagnostics())
        if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
            record["dev_perplexity"] = self.dev_perplexity()
        self.folder.append_metrics(record)
        return record

    def dev_perplexity(self) -> float:
        """The dev split's perplexity at this step, in the middle of training: every random
        state is put back afterwards (the shots an evaluation draws included), so a run with a
        learning curve trains exactly as one without."""
        state = self._rng_state()
        try:
            self._label(f"dev-{self.step:06d}")
            result = evaluate(self.model, self.loaded, self.cfg.eval, self.texts, DEV,
                              self.cfg.training.precision, features=self.features)  # fmt: skip
        finally:
            self._set_rng_state(state)
        return result["perplexity"]

    def train(self, progress: bool = True, *, desc: str | None = None, nested: bool = False) -> list[dict]:
        """Train to ``training.steps``, checkpointing every ``save_every`` steps and at the end
        (on hardware after every step: every step is paid for). `progress` shows a bar of the
        steps (loss, s/step), named `desc` (default the method); `nested`: it sits below a
        bar already shown (a study's), on a terminal only, and goes when training ends."""
        # lazy: tqdm, only when progress is shown
        from tqdm import tqdm

        if not self.folder.locked:
            raise InputError(f"{self.dir} was opened for evaluation only; open it for training")
        t = self.cfg.training
        records = []
        disable = True if not progress else (None if nested else False)  # None: on a terminal only
        budget = RunBudget.start(self)  # on IBM Quantum: checked before every step
        bar = tqdm(total=t.steps, initial=self.step, desc=desc or self.cfg.adapter.method, unit="step",
                   leave=not nested, disable=disable, file=sys.stderr)  # fmt: skip
        try:
            while self.step < t.steps:
                if budget is not None:
                    budget.before_step(self.step)
                record = self.train_step()
                records.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                bar.update(1)
                if self.hardware or self.step % t.save_every == 0 or self.step == t.steps:
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

    def require_checkpoint(self) -> None:
        if not (self.folder.has_checkpoint or self.saved_model):
            raise InputError(
                f"{self.dir} has no checkpoint yet: it has not been trained. Train it first with "
                f"'qpa train {self.dir} --resume'"
            )

    def counterfactual(self, kind: str) -> torch.Tensor:
        """The probabilities of a counterfactual evaluation (``COUNTERFACTUALS`` of the generator)."""
        if self.cfg.adapter.generator_kind != "qpa":
            raise InputError(
                f"{self.dir} trains {self.cfg.adapter.method!r}, which has no circuit and reads no "
                "probabilities: a counterfactual evaluation (--probabilities) replaces the probabilities a "
                "qpa-* run's mapping reads. Evaluate it without --probabilities"
            )
        return self.model.generator.counterfactual(kind)

    def evaluate(
        self, split: str = "test", counterfactual: str | None = None, *, progress: bool = False
    ) -> dict:
        """Perplexity of the adapted model at this run's step (see :func:`evaluate`); with
        `counterfactual`, of the adapter generated from those probabilities instead; `progress`
        shows a bar of the windows scored (on a terminal, after 2 s)."""
        self.label_final_weights()  # on hardware the permuted counterfactual reads that job too
        probabilities = None if counterfactual is None else self.counterfactual(counterfactual)
        precision = self.cfg.training.precision
        result = evaluate(self.model, self.loaded, self.cfg.eval, self.texts, split, precision, probabilities,
                          progress=progress, features=self.features)  # fmt: skip
        if counterfactual is not None:
            result["probabilities"] = counterfactual
        return result
