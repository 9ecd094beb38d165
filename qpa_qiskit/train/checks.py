"""What a run checks before it writes anything, for a configuration alone: the backend, the
device, the model's context, the adapter on a copy of the model, the first circuit evaluation and
the data; and the data a run reads (:func:`load_texts`).

:meth:`~qpa_qiskit.train.Run.create` checks these before its folder appears, a study checks its
whole grid with :func:`check_config` before any run trains, and an opened run checks the model's
context again (another device, other evaluation settings).
"""

from __future__ import annotations

from collections.abc import Callable

from ..adapters import AdaptedModel
from ..backends import QPABackend
from ..data import DEV, blocks, check_line_structure, hold_out_dev, load_wikitext, tokenize
from ..errors import InputError
from ..models import LoadedModel
from .device import run_device
from .run_config import RunConfig


def model_positions(loaded: LoadedModel) -> int | None:
    """How many positions the model can attend to (None: not stated)."""
    config = loaded.model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_fits_model(cfg: RunConfig, loaded: LoadedModel, *, padded: bool = True) -> None:
    """Training blocks, evaluation windows and (with ``eval_protocol="padded-lines"``) padded
    lines, with a prefix's virtual tokens, must fit the model's context: a longer one reads
    positions the model has no embedding for. The message names every option that can make
    it fit, with its bound. Checked before a run's folder is written and before an opened run
    is scored. `padded` False leaves the padded lines out: :meth:`Run.create` checks them with
    the data (:func:`check_splits`), after the line structure their protocol needs."""
    positions = model_positions(loaded)
    if positions is None:
        return
    prefix = cfg.adapter.prefix_tokens if cfg.adapter.tuner == "prefix" else 0
    lengths = {"block_size": (cfg.training.block_size, 1), "eval_window": (cfg.eval.eval_window, 2)}
    if padded and cfg.eval.eval_protocol == "padded-lines":
        lengths["padded_block"] = (cfg.eval.padded_block, 2)
    over = {name: length for name, (length, _) in lengths.items() if length + prefix > positions}
    if not over:
        return
    fixes = [
        f"--{name.replace('_', '-')} at most {positions - prefix}"
        for name in over
        if positions - prefix >= lengths[name][1]
    ]
    longest = max(length for length, _ in lengths.values())
    if prefix and positions - longest >= 1:
        fixes.append(f"--prefix-tokens at most {positions - longest}")
    elif prefix and not fixes:
        fixes.append(
            f"fewer --prefix-tokens (at most {positions - 2}) with a shorter --block-size and --eval-window"
        )
    what = " and ".join(f"{name} {length}" for name, length in over.items())
    extra = f" with the {prefix} prefix tokens" if prefix else ""
    raise InputError(
        f"{what}{extra} is longer than the {positions} positions of {loaded.name}; use " + ", or ".join(fixes)
    )


def check_config(
    cfg: RunConfig,
    loaded: LoadedModel,
    texts: dict[str, str] | None = None,
    *,
    data: bool = True,
    device: bool = True,
) -> None:
    """What :meth:`Run.create` checks before it writes anything, for a configuration alone (a
    study checks its whole grid with it before any run trains): the backend (its spec, the
    noise scale against the device), the run's device and precision, the model's context, the
    adapter on a copy of the model (targets, sizes, chunk size and qubits), and the data.
    Nothing is written and the IBM Quantum account is not opened. `texts`: the data already
    loaded; `data` False skips the data check (already done for these data settings); `device`
    False skips the device's (the runs train on other machines: a Ray cluster's nodes)."""
    if device:
        run_device(cfg)  # a device torch does not see here, or bf16 where it has none
    backend = QPABackend.from_config(cfg.backend, seed=cfg.training.seed) if cfg.reads_circuit else None
    check_fits_model(cfg, loaded)
    seed = cfg.training.seed
    model = AdaptedModel(loaded.fresh_copy().model, cfg.adapter, cfg.generator, backend, seed=seed)
    check_first_evaluation(model)
    if not data:
        return
    texts = texts if texts is not None else load_texts(cfg, lambda m: None)
    tokens = tokenize(loaded.tokenizer, texts["train"], cfg.task.train_tokens)
    blocks(tokens, cfg.training.block_size)
    check_splits(cfg, loaded, texts)


def check_first_evaluation(model: AdaptedModel) -> None:
    """The circuit evaluated once at its initial angles, its random state put back: what the
    first step's evaluation would refuse (a noise scale that makes a probability invalid on the
    chosen qubits, a qubit whose readout mitigation has nothing to correct, a device too narrow)
    is refused before anything is written or trained. Not on IBM Quantum, where an evaluation is
    a job to pay for: there the account, the device and the transpilation are checked."""
    quantum = model.generator.quantum if model.cfg.generator_kind == "qpa" else None
    if quantum is None or quantum.backend.runs_remotely:
        return
    backend = quantum.backend
    state = backend.rng_state
    try:
        backend.probabilities(quantum.circuit, quantum.theta.detach().cpu().numpy())
    finally:
        backend.rng_state = state


def check_splits(cfg: RunConfig, loaded: LoadedModel, texts: dict[str, str]) -> None:
    """The valid and test splits have tokens to score (and lines, for padded-lines); the dev
    split, where the run has one, at least one evaluation window."""
    for split in ("valid", "test"):
        if len(tokenize(loaded.tokenizer, texts[split], 2)) < 2:
            raise InputError(f"the {split} split of {cfg.task.data} has fewer than 2 tokens to score")
    if DEV in texts:
        window = cfg.eval.eval_window
        have = len(tokenize(loaded.tokenizer, texts[DEV], window))
        if have < window:
            raise InputError(
                f"the dev split of {cfg.task.data} (--dev-share {cfg.task.dev_share:g}) has {have} tokens, "
                f"fewer than one evaluation window of {window} (the minimum); give a larger --dev-share or "
                "a shorter --eval-window"
            )
    if cfg.eval.eval_protocol == "padded-lines":
        check_line_structure(texts["test"], f"the test split of {cfg.task.data}")
        check_fits_model(cfg, loaded)


def load_texts(cfg: RunConfig, log: Callable[[str], None]) -> dict[str, str]:
    """The run's splits: WikiText-2 with its dev split held out (:func:`~qpa_qiskit.data.hold_out_dev`)."""
    return hold_out_dev(load_wikitext(cfg.task.data, log=log), cfg.task.dev_share, log)
