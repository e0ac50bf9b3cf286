"""HookedModel: a wrapped model with canonical sites, traces, runs and generation.

    model = hooks.load("gpt2")                    # or hooks.wrap(hf_model, tokenizer)
    model.sites                                   # {"embed": "B×P×768", "resid_pre.0": ..., ...}
    res = model.run(["Hello world"], interventions=[Cache("resid_post.*", positions="last")])
    res.cache["resid_post.11"].shape              # (1, 768)
    out = model.generate(["Once"], interventions=[Steer("resid_post.6", vector=v, scale=8)],
                         max_new_tokens=20)

The per-forward batch context and generation bookkeeping are in :mod:`hooks.model_context`, the
clean reference runs of Ablate/Patch in :mod:`hooks.model_references` (mixins of
:class:`HookedModel`), KV-cache recognition in :mod:`hooks.kv_cache` (re-exported here).
"""
from __future__ import annotations

import threading

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from . import attention, hf_backend
from . import positions as P
from . import sites as S
from .errors import SpecError
from .interventions import Cache, Intervention, Knockout, load_spec
from .kv_cache import cache_length, find_kv_cache, past_length  # noqa: F401 (re-exported)
from .model_context import BatchContextMixin
from .model_references import ReferenceRunsMixin
from .trace import Trace


ATTN_SITES = ("attn_scores", "attn_pattern")


@dataclass
class RunResult:
    output: Any
    logits: Optional[torch.Tensor]
    cache: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)


@dataclass
class GenerateResult:
    sequences: torch.Tensor
    texts: Optional[list]
    prompt_len: int
    cache: dict = field(default_factory=dict)


class HookedModel(BatchContextMixin, ReferenceRunsMixin):
    """A model plus its adapter: canonical sites, traces and batched runs."""

    def __init__(self, model: torch.nn.Module, tokenizer=None, adapter=None):
        from .adapters import find_adapter

        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter or find_adapter(model)
        setup = self.adapter.extra.get("setup")
        if setup is not None:  # one-off per-wrap preparation declared by the adapter
            setup(model)
        self.backend = self.adapter.extra.get("backend", hf_backend)
        self._table = S.build_table(model, self.adapter)
        self.n_layers = S.n_layers(model, self.adapter)
        backend_kind = self.adapter.attention_backend
        self.attention_enabled = attention.enable(model) if backend_kind == "hf" else backend_kind is not None
        if backend_kind != "hf" or not self.attention_enabled:
            self._table = {k: v for k, v in self._table.items() if v.kind != "attn" or self.attention_enabled}
        self.lock = threading.RLock()  # forwards share per-call state (batch context): one at a time
        self._ctx: Optional[P.BatchContext] = None
        self._ctx_users = 0
        self._ctx_handle = None
        self._suspended = 0
        self._gen: dict = {}
        self._prev_ids = None
        self._shapes = None
        self.prepend_bos = hf_backend.PREPEND_BOS  # texts start with BOS (hooks.hf_backend); per call: prepend_bos=

    # -- info ----------------------------------------------------------------------
    def __repr__(self):
        return f"HookedModel({type(self.model).__name__}, adapter={self.adapter.name}, layers={self.n_layers})"

    @property
    def device(self) -> torch.device:
        # skip weights accelerate offloaded (device_map "disk"/"cpu" offload keeps them on "meta")
        return next((p.device for p in self.model.parameters() if p.device.type != "meta"), torch.device("cpu"))

    @property
    def site_names(self) -> list:
        return list(self._table)

    @property
    def sites(self) -> dict:
        """Canonical sites with their shapes (B batch, P positions, K keys), from one dry run."""
        if self._shapes is None:
            self._shapes = self._dry_run_shapes()
        out = {k: self._shapes.get(k, "?") for k in self._table}
        out.update({k: f"absent: {why}" for k, why in getattr(self._table, "absent", {}).items()})  # hooks.verify
        return out

    def module_names(self) -> list:
        return [n for n, _ in self.model.named_modules() if n]

    def resolve_sites(self, names) -> list:
        if not self.attention_enabled:
            wanted = [names] if isinstance(names, str) else list(names)
            if any(isinstance(n, str) and n.split(".")[0] in ATTN_SITES for n in wanted):
                attention.require(self.model, False)  # AttentionNotSupportedError with the fix
        return S.resolve(self._table, self.model, names)

    def deepest_site(self, names) -> Optional[str]:
        """The canonical site among ``names`` that runs last (None if a raw path is involved)."""
        order = {k: i for i, k in enumerate(self._table)}
        bs = self.resolve_sites(names)
        if not bs or any(b.name not in order for b in bs):
            return None
        return max(bs, key=lambda b: order[b.name]).name

    def knockout_bindings(self, iv: Knockout) -> list:
        layers = iv.layers
        if layers == "all" or layers is None:
            layers = list(range(self.n_layers))
        elif isinstance(layers, int):
            layers = [layers]
        layers = [int(L) for L in layers]
        for L in layers:
            if not -self.n_layers <= L < self.n_layers:
                raise SpecError(f"Knockout layer {L} is out of range: this model has {self.n_layers} layers (0..{self.n_layers - 1}).")
        kind = "attn_pattern" if iv.mode == "zero" else "attn_scores"
        if not self.attention_enabled:
            attention.require(self.model, False)
        return self.resolve_sites([f"{kind}.{L % self.n_layers}" for L in layers])

    # -- running --------------------------------------------------------------------
    def prepare(self, batch, *, prepend_bos=None) -> dict:
        """Model inputs of a batch; texts follow the BOS policy (``prepend_bos``: this call's, else
        ``self.prepend_bos``; see :mod:`hooks.hf_backend`)."""
        if prepend_bos is None:
            return self.backend.prepare(self, batch)
        return self.backend.prepare(self, batch, prepend_bos=prepend_bos)

    def forward(self, inputs: dict, **kw):
        return self.backend.forward(self, inputs, **kw)

    def logits_of(self, output):
        return self.backend.logits_of(output)

    def trace(self, batch=None, *, grad: bool = False, stop_after=None, **forward_kwargs) -> Trace:
        """Context manager; see :mod:`hooks.trace`. ``stop_after=SITE`` ends the forward once
        that site has run (its interventions included): caches fill, ``output`` is ``None``."""
        return Trace(self, batch, grad=grad, stop_after=stop_after, **forward_kwargs)

    def run(self, batch, interventions=(), *, grad: bool = False, stop_after=None, **forward_kwargs) -> RunResult:
        """One forward with interventions (a list, or a spec file / YAML string).

        ``stop_after="resid_post.3"`` skips everything after that site (for extraction)."""
        ivs = as_interventions(interventions)
        with self.trace(batch, grad=grad, stop_after=stop_after, **forward_kwargs) as tr:
            results = [tr.add(iv) for iv in ivs]
        return RunResult(tr.output, tr.logits, merge_caches(results), tr.inputs)

    def iter_run(self, data, interventions=(), *, batch_size: int = 8, progress: bool = True, text_key=None,
                 grad: bool = False, stop_after=None, **forward_kwargs):
        """Yield one :class:`RunResult` per batch of ``data`` (texts, sequences, a Dataset or a file)."""
        from .data import iter_batches

        ivs = as_interventions(interventions)
        for batch in iter_batches(data, batch_size, text_key=text_key, progress=progress):
            yield self.run(batch, ivs, grad=grad, stop_after=stop_after, **forward_kwargs)

    def cache_dataset(self, data, sites, positions="all", *, batch_size: int = 8, progress: bool = True,
                      dtype=None, text_key=None, prepend_bos=None) -> dict:
        """Selected activations over a whole dataset, flat ``(N, ...)`` per site, kept on CPU.

        Only the selected positions of each batch are moved to CPU, so device memory is
        bounded by one batch; ``result.rows[site]`` gives the example index of each row.
        """
        from .ops import CacheResult

        parts: dict = {}
        rows: list = []
        offset = 0
        for res in self.iter_run(data, [Cache(sites, positions, layout="flat", dtype=dtype)], batch_size=batch_size,
                                 stop_after=self.deepest_site(sites),
                                 progress=progress, text_key=text_key, prepend_bos=prepend_bos):
            for k, v in res.cache.items():
                parts.setdefault(k, []).append(v)
            m = next(iter(res.cache.masks.values()))
            rows.append(torch.arange(m.shape[0]).repeat_interleave(m.sum(1)) + offset)
            offset += m.shape[0]
        out = CacheResult()
        for k, v in parts.items():
            out[k] = torch.cat(v)
        out.rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        return out

    @torch.no_grad()
    def generate(self, batch, interventions=(), *, max_new_tokens: int = 20, do_sample: bool = False, **gen_kwargs) -> GenerateResult:
        """Greedy (or sampled) generation with interventions active at every step.

        Each intervention's ``apply_to`` decides whether it acts on prompt positions
        (``"prompt"``), on generated tokens (``"new"``) or both (``"all"``, default); its
        position selector is resolved on the whole sequence at every step, so ``"last"``
        is the newest token and ``"all"`` covers prompt and new tokens.
        """
        gen = self.adapter.extra.get("generate")
        if gen is not None:
            return gen(self, batch, interventions, max_new_tokens=max_new_tokens, do_sample=do_sample, **gen_kwargs)
        ivs = as_interventions(interventions)
        prepend_bos = gen_kwargs.pop("prepend_bos", None)
        side = self.adapter.padding_side
        if self.tokenizer is not None and side is None:
            old = self.tokenizer.padding_side
            self.tokenizer.padding_side = "left"
        try:
            inputs = self.prepare(batch, prepend_bos=prepend_bos)
        finally:
            if self.tokenizer is not None and side is None:
                self.tokenizer.padding_side = old
        prompt_len = inputs["input_ids"].shape[1]
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        with self.lock, self.generating(prompt_len), self.trace() as tr:
            results = [tr.add(iv) for iv in ivs]
            if pad is not None:
                gen_kwargs.setdefault("pad_token_id", pad)
            seqs = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample, **gen_kwargs)
        cache = merge_caches(results)
        texts = None
        if self.tokenizer is not None:
            texts = self.tokenizer.batch_decode(seqs[:, prompt_len:], skip_special_tokens=True)
        return GenerateResult(seqs, texts, prompt_len, cache)

    # -- helpers -----------------------------------------------------------------------
    def _dry_run_shapes(self) -> dict:
        dummy = self.adapter.extra.get("dummy_batch")
        batch = dummy(self) if dummy else torch.tensor([[min(3, self._vocab() - 1)] * 4])
        names = list(self._table)
        res = self.run(batch, [Cache(names, "all", layout="padded")])
        shapes = {}
        for k, v in res.cache.items():
            if isinstance(v, torch.Tensor):
                dims = [str(d) for d in v.shape]
                dims[0] = "B"
                b = self._table[k]
                if b.layout == "attn":
                    dims[2], dims[3] = "P", "P"
                else:
                    dims[1] = "P"
                shapes[k] = "×".join(dims)
        return shapes

    def _vocab(self) -> int:
        cfg = getattr(self.model, "config", None)
        v = getattr(cfg, "vocab_size", None) or getattr(getattr(cfg, "text_config", None), "vocab_size", None)
        return int(v or 10)


def merge_caches(results):
    from .ops import CacheResult

    out = CacheResult()
    for r in results:
        if r is not None:
            out.update(r)
            out.masks.update(r.masks)
    return out


def as_interventions(x) -> list:
    if x is None:
        return []
    if isinstance(x, Intervention):
        return [x]
    if isinstance(x, (str, dict)) or hasattr(x, "__fspath__"):
        return load_spec(x)
    out = list(x)
    if any(not isinstance(i, Intervention) for i in out):
        return load_spec(out)
    return out


_as_interventions = as_interventions  # backwards-compatible private name
