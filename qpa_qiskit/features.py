"""The frozen body's features, computed once: hidden states of a causal LM's transformer body
reused by every step and run that adapts only its output embedding (``lm_head``).

For an adapter whose tensors (trained or generated) all sit in the output embedding module
(LoRA, DoRA, VeRA, IA3 and their ``qpa-``/``lowrank-`` versions on ``lm_head``), the body is
frozen: its last hidden state for a token sequence is the same at every step and in every run
that sees the sequence. :class:`BodyFeatures` computes it once and then runs only the head
(the peft ``lm_head`` layer, with generated tensors through ``torch.func.functional_call``)
and the model's own causal-LM loss (``loss_function``: shifted by one, logits upcast to float,
mean over the tokens).

* **Eligibility** (:func:`body_features`): every adapter tensor inside
  ``get_output_embeddings()``; a deterministic body (no dropout > 0, by module or by config);
  logits exactly ``lm_head(last hidden state)`` (no soft-capping or logit scaling, and a probe
  forward pass that agrees). Otherwise the run computes as it always did and says why, once.
* **Key**: the entries are content-addressed: one per token sequence (a training block, an
  evaluation window, a padded line with its attention mask), named by a hash of its token ids
  (so the data, split, token count, block size, window and stride are all in it), within a
  context of the model (name, class, configuration, a fingerprint of the body's weights),
  the precision (autocast state and dtype), the device type and :data:`FORMAT`. A changed key
  is a different entry: nothing is ever reused across keys.
* **Exactness**: each sequence's body pass runs alone (batch of one), so an entry is a pure
  function of its key, whoever computed it and whenever; a resumed run stays bit-exact with
  the cache on. Against the uncached path the figures agree to float rounding.
* **Where**: :class:`FeatureStore`, in memory, shared by every copy of a loaded model
  (:meth:`~qpa_qiskit.models.LoadedModel.fresh_copy`: the runs of a study in one process),
  bounded by ``budget_bytes`` (entries beyond it are computed each time, not stored); and,
  for a study, on disk in ``<study>/features/<context hash>/`` (written atomically; an
  unwritable folder runs without it and says so).
* **Checked**: each file holds a checksum of its values bound to its context and sequence
  (:func:`checksum`), checked at every read: a damaged, altered or swapped file of the right
  shape would otherwise give another figure silently. A file that fails it (or any other check)
  is said, dropped and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import atomic_write

FORMAT = 2  # the entries' layout: a change recomputes every stored entry (2: with a checksum)
DEFAULT_BUDGET = 2 * 1024**3  # bytes of hidden states kept in memory per loaded model
KEY_FILE = "key.json"
DROPOUT_ATTRIBUTES = (
    "attn_pdrop",
    "resid_pdrop",
    "embd_pdrop",
    "attention_dropout",
    "hidden_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "activation_dropout",
)
# configuration settings by which a model's logits are more than lm_head(hidden state)
LOGIT_ATTRIBUTES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


class FeatureStore:
    """Hidden states by (context, sequence hash): in memory up to `budget_bytes`, and in
    `folder` when one is attached (:meth:`use_folder`)."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET, log: Callable[[str], None] | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self.folder: Path | None = None
        self.log = log or (lambda message: None)
        self._memory: dict[tuple[str, str], torch.Tensor] = {}
        self._full_said = False
        self._contexts: set[str] = set()  # contexts whose key file is checked in the folder
        self._said: set[str] = set()
        self.hits = 0
        self.misses = 0

    def say(self, message: str, log: Callable[[str], None]) -> None:
        """`message` in `log`, once per store (a study's runs would repeat it for every run)."""
        if message not in self._said:
            self._said.add(message)
            log(message)

    def use_folder(self, folder: Path | None, log: Callable[[str], None] | None = None) -> None:
        """Keep entries in `folder` too (None: memory only). A folder that cannot be written is
        left out, and said so: the runs go on with the memory cache."""
        if log is not None:
            self.log = log
        if folder is None:
            self.folder = None
            return
        folder = Path(folder)
        if folder == self.folder:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            atomic_write(probe, b"")
            probe.unlink()
        except OSError as exc:  # said once for a study's runs, which all try it
            message = (
                f"feature cache: {folder} is not writable ({type(exc).__name__}: {exc}); running "
                "without the disk cache (features are kept in memory only)"
            )
            self.say(message, self.log)
            self.folder = None
            return
        self.folder = folder
        self._contexts = set()

    def _context_folder(self, context: str, key: dict) -> Path | None:
        """`<folder>/<context>/`, its key file written or checked (a mismatch: not used)."""
        if self.folder is None:
            return None
        where = self.folder / context
        if context in self._contexts:
            return where
        text = json.dumps(key, sort_keys=True, indent=1)
        path = where / KEY_FILE
        try:
            if path.exists():
                if path.read_text(encoding="utf-8") != text:
                    self.log(f"feature cache: {where} was written for another key; recomputing, not using it")
                    return None
            else:
                atomic_write(path, text.encode())
        except OSError as exc:
            self.log(f"feature cache: cannot use {where} ({type(exc).__name__}: {exc}); memory only")
            self.folder = None
            return None
        self._contexts.add(context)
        return where

    def get(self, context: str, key: dict, sequence: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        found = self._memory.get((context, sequence))
        if found is None:
            where = self._context_folder(context, key)
            path = None if where is None else where / f"{sequence}.pt"
            if path is not None and path.exists():
                found, why = _read_entry(path, context, sequence, shape)
                if found is None:  # never the wrong values: dropped, computed again and rewritten
                    self.log(f"feature cache: {path} {why}; dropped, recomputed")
                    with contextlib.suppress(OSError):  # put rewrites it, or says why it cannot
                        path.unlink(missing_ok=True)
                else:
                    self._remember(context, sequence, found)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, context: str, key: dict, sequence: str, hidden: torch.Tensor) -> None:
        self._remember(context, sequence, hidden)
        where = self._context_folder(context, key)
        if where is None:
            return
        hidden = hidden.detach().clone()  # not a view: only its own values are saved
        entry = {"sequence": sequence, "checksum": checksum(context, sequence, hidden), "hidden": hidden}
        buffer = io.BytesIO()
        torch.save(entry, buffer)
        try:
            atomic_write(where / f"{sequence}.pt", buffer.getvalue())
        except OSError as exc:
            self.log(f"feature cache: cannot write {where} ({type(exc).__name__}: {exc}); memory only")
            self.folder = None

    def _remember(self, context: str, sequence: str, hidden: torch.Tensor) -> None:
        size = hidden.numel() * hidden.element_size()
        if self.used_bytes + size > self.budget_bytes:
            if not self._full_said:
                self._full_said = True
                self.log(
                    f"feature cache: its memory budget ({self.budget_bytes / 1024**2:.0f} MiB) is full; "
                    "further features are computed each time they are needed"
                )
            return
        self._memory[(context, sequence)] = hidden
        self.used_bytes += size

    def clear(self) -> None:
        """Drop the entries held in memory (the disk folder keeps its own)."""
        self._memory.clear()
        self.used_bytes = 0


def checksum(context: str, sequence: str, hidden: torch.Tensor) -> str:
    """SHA-256 of the entry's bytes, shape and dtype, and of its context and sequence: a valid
    file under another sequence's (or context's) name does not match."""
    digest = hashlib.sha256(f"{context}/{sequence}:{tuple(hidden.shape)}:{hidden.dtype};".encode())
    digest.update(hidden.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _read_entry(
    path: Path, context: str, sequence: str, shape: tuple[int, ...]
) -> tuple[torch.Tensor | None, str]:
    """(the hidden states stored in `path`, "") if they pass every check, else (None, why not)."""
    try:
        entry = torch.load(path, weights_only=True)
    except Exception as exc:  # truncated, empty, not a torch file
        return None, f"cannot be read ({type(exc).__name__})"
    if not isinstance(entry, dict) or not isinstance(entry.get("checksum"), str):
        return None, "has no checksum (written by an older version, or not by this cache)"
    hidden = entry.get("hidden")
    if not isinstance(hidden, torch.Tensor) or tuple(hidden.shape[:-1]) != shape:
        return None, f"has the wrong shape (not {shape[0]} positions)"
    if entry.get("sequence") != sequence:
        return None, f"holds another sequence's features ({entry.get('sequence')}: a swapped or copied file)"
    if checksum(context, sequence, hidden) != entry["checksum"]:
        return None, "does not match its checksum (damaged or altered)"
    return hidden, ""


def _precision(device_type: str) -> str:
    """The autocast state the body runs under: it is part of what the features depend on."""
    if not torch.is_autocast_enabled(device_type):
        return "none"
    return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")


def _fingerprint(body: nn.Module) -> str:
    """A hash of the body's weights, by name, shape, dtype and a strided sample of values
    (about a thousand per tensor): two bodies with other weights differ in it."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in [*body.named_parameters(), *body.named_buffers()]:
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 1024)
            sample = flat[::step].float().cpu().contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def _sequence_hash(ids: torch.Tensor, mask: torch.Tensor | None) -> str:
    digest = hashlib.sha256(ids.to(torch.int64).cpu().contiguous().numpy().tobytes())
    if mask is not None:
        digest.update(b"mask")
        digest.update(mask.to(torch.int64).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


class BodyFeatures:
    """The body's hidden states from `store` (computed once per sequence), then the head and
    the loss; use :func:`body_features`, which checks that this equals the full model."""

    def __init__(
        self, network: nn.Module, causal_lm: nn.Module, head_name: str, store: FeatureStore, model_name: str
    ) -> None:
        self.network = network  # what the full forward pass runs (the peft model, or the base model)
        self.causal_lm = causal_lm  # the Hugging Face causal LM inside it
        self.body = getattr(causal_lm, causal_lm.base_model_prefix)
        self.head = causal_lm.get_output_embeddings()
        self.head_name = head_name  # the head's name in `network`: generated tensors are named from there
        self.store = store
        config = causal_lm.config
        self.key = {
            "format": FORMAT,
            "model": model_name,
            "class": type(causal_lm).__name__,
            "config": hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest(),
            "weights": _fingerprint(self.body),
        }

    def _context(self, device_type: str) -> tuple[str, dict]:
        key = {**self.key, "device": device_type, "precision": _precision(device_type)}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24], key

    @torch.no_grad()
    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, length, hidden) last hidden states, each row from the store or computed alone."""
        device_type = next(self.body.parameters()).device.type
        context, key = self._context(device_type)
        rows = []
        for row in range(input_ids.shape[0]):
            ids = input_ids[row : row + 1]
            mask = None if attention_mask is None else attention_mask[row : row + 1]
            sequence = _sequence_hash(ids, mask)
            found = self.store.get(context, key, sequence, tuple(ids.shape[1:]))
            if found is None:
                found = self.body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[0]
                self.store.put(context, key, sequence, found)
            rows.append(found.to(input_ids.device))
        return torch.stack(rows)

    def head_logits(
        self, hidden: torch.Tensor, tensors: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The head on hidden states; `tensors` (named as in the network) replace its generated weights."""
        if tensors is None:
            return self.head(hidden)
        prefix = self.head_name + "."
        local = {name.removeprefix(prefix): t for name, t in tensors.items()}
        return torch.func.functional_call(self.head, local, args=(hidden,))

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
        logits_to_keep: int = 0,
    ) -> Any:
        """What ``network(input_ids=..., attention_mask=..., labels=..., logits_to_keep=...)``
        returns (logits and loss), from the cached body; `tensors` as in :meth:`head_logits`.
        `logits_to_keep` as in Hugging Face's causal LMs: the head runs on the last positions
        only (0: all)."""
        hidden = self.hidden(input_ids, attention_mask)
        logits = self.head_logits(hidden[:, -logits_to_keep:] if logits_to_keep else hidden, tensors)
        loss = None
        if labels is not None:
            vocab = self.causal_lm.config.get_text_config().vocab_size
            loss = self.causal_lm.loss_function(logits=logits, labels=labels, vocab_size=vocab)
        # lazy: transformers (seconds), imported by the model already when this runs
        from transformers.modeling_outputs import CausalLMOutput

        return CausalLMOutput(loss=loss, logits=logits)


def _unwrap(network: nn.Module) -> nn.Module:
    """The Hugging Face causal LM inside a peft model (``get_base_model``), or the model itself."""
    get_base = getattr(network, "get_base_model", None)
    return get_base() if callable(get_base) else network


def _why_not(network: nn.Module, causal_lm: nn.Module, adapter_names: list[str]) -> tuple[str | None, str]:
    """(the reason the cached path does not apply or None, the head's name in `network`)."""
    prefix = getattr(causal_lm, "base_model_prefix", None)
    body = getattr(causal_lm, prefix, None) if prefix else None
    get_head = getattr(causal_lm, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if body is None or head is None:
        return f"{type(causal_lm).__name__} has no separate body and output embedding", ""
    head_name = next((n for n, m in network.named_modules() if m is head), None)
    if head_name is None:
        return "the output embedding is not part of the model's modules", ""
    outside = [n for n in adapter_names if not n.startswith(head_name + ".")]
    if outside:
        return f"the adapter has tensors outside {head_name.rsplit('.', 1)[-1]} ({outside[0]}...)", head_name
    config = causal_lm.config.get_text_config()
    for attr in DROPOUT_ATTRIBUTES:
        value = getattr(config, attr, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return f"the body is not deterministic in training mode ({attr}={value})", head_name
    dropout = next((n for n, m in body.named_modules() if isinstance(m, nn.Dropout) and m.p > 0), None)
    if dropout is not None:
        return f"the body is not deterministic in training mode (dropout in {dropout})", head_name
    for attr in LOGIT_ATTRIBUTES:
        value = getattr(config, attr, None)
        if value not in (None, 1, 1.0):
            return f"the model's logits are more than lm_head(hidden state) ({attr}={value})", head_name
    return None, head_name


def body_features(
    network: nn.Module,
    adapter_names: list[str],
    store: FeatureStore,
    model_name: str,
    log: Callable[[str], None],
    what: str,
) -> BodyFeatures | None:
    """The cached path for `network` (a peft model or a plain causal LM) whose adapter tensors
    are `adapter_names` (names in `network`), or None where it does not apply, said once in
    `log` with the reason (`what`: the method, for the log line). A probe checks that the
    cached path's logits equal the full forward pass's."""
    causal_lm = _unwrap(network)
    reason, head_name = _why_not(network, causal_lm, adapter_names)
    features = None
    if reason is None:
        features = BodyFeatures(network, causal_lm, head_name, store, model_name)
        reason = _probe(network, features)
    if reason is not None:
        store.say(f"feature cache: off for {what}: {reason}; the body runs at every step as usual", log)
        return None
    return features


def _probe(network: nn.Module, features: BodyFeatures) -> str | None:
    """The full forward pass and the cached path on one short sequence (not stored): None if
    their logits agree, else why not."""
    parameter = next(network.parameters())
    vocab = features.causal_lm.config.get_text_config().vocab_size
    ids = (torch.arange(8, device=parameter.device) * 7919 % vocab)[None]
    with torch.no_grad(), torch.autocast(parameter.device.type, enabled=False):
        full = network(input_ids=ids).logits.float()
        hidden = features.body(input_ids=ids, use_cache=False).last_hidden_state
        cached = features.head(hidden).float()
    if full.shape != cached.shape or not torch.allclose(full, cached, rtol=1e-4, atol=1e-5):
        gap = (full - cached).abs().max().item() if full.shape == cached.shape else float("nan")
        return f"the model's logits are not lm_head(last hidden state) (probe: differ by {gap:.3g})"
    return None


def describe(store: FeatureStore) -> dict[str, Any]:
    """Counts for a report: hits, misses, memory held."""
    return {"hits": store.hits, "misses": store.misses, "bytes": store.used_bytes}
