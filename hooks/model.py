"""HookedModel: a wrapped model with canonical sites, traces, runs and generation.

    model = hooks.load("gpt2")                    # or hooks.wrap(hf_model, tokenizer)
    model.sites                                   # {"embed": "B×P×768", "resid_pre.0": ..., ...}
    res = model.run(["Hello world"], interventions=[Cache("resid_post.*", positions="last")])
    res.cache["resid_post.11"].shape              # (1, 768)
    out = model.generate(["Once"], interventions=[Steer("resid_post.6", vector=v, scale=8)],
                         max_new_tokens=20)
"""
from __future__ import annotations

import contextlib
import threading

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from . import attention, hf_backend
from . import ops as O
from . import positions as P
from . import sites as S
from .errors import HookError, SpecError
from .interventions import Cache, Intervention, Knockout, load_spec
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


class HookedModel:
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

    # -- batch context ------------------------------------------------------------
    def forget_window(self) -> None:
        """Forget the token ids seen so far. A forward whose window starts where the previous
        forward's ids ended (a decode step with a cache) is read as that run's continuation, so
        ``token()`` selectors and spans see the whole sequence; call this before a cached forward
        that continues a *different* batch (e.g. a suffix run over a shared prefix).

            hm.forget_window()
            hm.run({"input_ids": suffix, "attention_mask": mask}, ivs, cache=prefix_cache)
        """
        self._prev_ids = None

    def _acquire_context_hook(self):
        if self._ctx_users == 0:
            self._ctx_handle = self.model.register_forward_pre_hook(self._set_context, with_kwargs=True)
        self._ctx_users += 1

    def _release_context_hook(self):
        self._ctx_users -= 1
        if self._ctx_users == 0 and self._ctx_handle is not None:
            self._ctx_handle.remove()
            self._ctx_handle = None
            self._ctx = None

    def _set_context(self, module, args, kwargs):
        ids, am, shape = self.backend.call_inputs(args, kwargs)
        if shape is None:
            self._ctx = None
            return None
        B, q = shape
        O.TOKEN_ROWS.set(B)  # token-flattened sites (MoE router logits) are (B·q, E)
        # Masks are resolved on the CPU (one small copy per forward) so that selecting
        # positions never synchronises the device inside a hook.
        if am is None:  # e.g. transformers' generate drops an all-ones mask: count the cached past
            am = torch.ones(B, self._past_length(args, kwargs, q) + q, dtype=torch.bool)
        else:
            am = am.detach().to("cpu", torch.bool)
        L = am.shape[1]
        start = L - q
        if self._gen:
            self._gen["seen"] = L
        if ids is not None:
            prev = self._prev_ids
            if start == 0 or prev is None or prev.shape[1] != start or prev.shape[0] != ids.shape[0]:
                full = ids
            else:
                full = torch.cat([prev.to(ids.device), ids], 1)
            self._prev_ids = full
        else:
            full = None
        self._ctx = P.BatchContext(
            attention_mask=am,
            input_ids=full,
            window_start=start,
            prompt_len=self._gen.get("prompt_len"),
            span_fn=(lambda f=full, m=am: self.spans(None if f is None else f.cpu(), m)),
            tokenizer=self.tokenizer,
        )
        return None

    def _past_length(self, args, kwargs, q: int) -> int:
        """Cached positions before this forward when the model got no attention mask.

        Read from the KV cache object whatever transformers calls its argument; inside our
        own generation (:meth:`generating`) a forward with no visible cache counts the
        positions fed so far (a window shorter than what was seen continues it; one at
        least as long re-feeds the sequence, as ``use_cache=False`` does)."""
        kind, obj = find_kv_cache(args, kwargs)
        n = cache_length(kind, obj)
        seen = int(self._gen.get("seen", 0)) if self._gen else 0
        if kind is not None and n is not None and not (n == 0 and 0 < q < seen):
            return n  # (a cache reading 0 after our own prompt keeps its state elsewhere: RecurrentGemma)
        if self._gen:  # our own generation, no readable cache: the positions fed so far are known
            return seen if 0 < q < seen else 0
        if n is None:
            raise HookError(
                f"This forward got a KV cache of type {type(obj).__name__} without an attention mask, and the "
                "cache does not say how many positions it holds (get_seq_length() is missing or fails). Pass "
                "attention_mask covering past + new positions, or use a transformers Cache object."
            )
        return 0

    def _fallback_context(self, x: torch.Tensor) -> P.BatchContext:
        return P.BatchContext(attention_mask=torch.ones(x.shape[:2], dtype=torch.bool))

    def spans(self, input_ids, attention_mask) -> dict:
        """Named position spans of a batch (VLM modalities, ESM residues/cls/eos)."""
        if self.adapter.spans is None or input_ids is None:
            return {}
        return self.adapter.spans(self, input_ids, attention_mask.bool())

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

    @contextlib.contextmanager
    def generating(self, prompt_len: int):
        """Mark forwards inside the block as generation steps of a prompt of ``prompt_len``
        (padded) positions, so ``apply_to`` and windows resolve. Used by custom generators."""
        old = self._gen
        self._gen = {"prompt_len": int(prompt_len)}
        try:
            yield
        finally:
            self._gen = old

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

    # -- statistics used by Ablate / Patch -----------------------------------------------
    def _collect_rows(self, batch, bindings, positions) -> dict:
        """Per-row selected activations of a clean run: {site: [tensor (n_b, ...)]}."""
        self._suspended += 1
        try:
            with Trace(self, batch, internal=True) as tr:
                res = tr.add(Cache([b.name for b in bindings], positions, layout="flat"))
        finally:
            self._suspended -= 1
        out = {}
        for b in bindings:
            counts = res.masks[b.name].sum(1).tolist()
            out[b.name] = list(torch.split(res[b.name], counts))
        return out

    def _reference_stats(self, iv, bindings) -> dict:
        from .data import iter_batches as _iter

        def iter_batches(ref, **kw):
            if isinstance(ref, (dict, torch.Tensor)):  # one prepared batch
                return iter([ref])
            return _iter(ref, **kw)

        if iv.how == "mean":
            sums, n = {}, 0
            for batch in iter_batches(iv.reference, batch_size=8, progress=False):
                rows = self._collect_rows(batch, bindings, "all")
                for name, rs in rows.items():
                    flat = torch.cat(rs).double()
                    sums[name] = sums.get(name, 0) + flat.sum(0)
                n += sum(r.shape[0] for r in next(iter(rows.values())))
            if n == 0:
                raise SpecError("Ablate(how='mean') got an empty reference.")
            return {k: (v / n).float() for k, v in sums.items()}
        rows: dict = {}
        for batch in iter_batches(iv.reference, batch_size=8, progress=False):
            for name, rs in self._collect_rows(batch, bindings, "all").items():
                rows.setdefault(name, []).extend(rs)
        if not rows or not next(iter(rows.values())):
            raise SpecError("Ablate(how='resample') got an empty reference.")
        return rows

    def _patch_source(self, iv, bindings) -> dict:
        src = iv.source
        input_keys = {"input_ids", "tokens", "pixel_values", "inputs_embeds", "text", "images"}
        is_cache = (isinstance(src, dict) and bool(src) and not input_keys & set(src)
                    and all(isinstance(v, (torch.Tensor, list)) for v in src.values()))
        if is_cache:
            masks = getattr(src, "masks", {})
            out = {}
            for b in bindings:
                if b.name not in src:
                    raise SpecError(f"Patch source cache has no {b.name!r} (it has {sorted(src)}).")
                t = src[b.name]
                if isinstance(t, list):
                    raise SpecError(f"Patch source {b.name!r} holds a list (generation cache); patch from a single forward.")
                m = masks.get(b.name)
                if m is not None and m.dim() == 2 and t.dim() >= 2 and t.shape[:2] == m.shape:  # padded
                    from .ops import to_canon

                    t = to_canon(t, "attn") if b.layout == "attn" else t
                    out[b.name] = [t[i][m[i].to(t.device)] for i in range(t.shape[0])]
                elif m is not None and t.shape[0] == int(m.sum()):  # flat
                    out[b.name] = list(torch.split(t, m.sum(1).tolist()))
                else:  # one per row
                    out[b.name] = [t[i : i + 1] for i in range(t.shape[0])]
            return out
        positions = iv.source_positions if iv.source_positions is not None else iv.positions
        return self._collect_rows(src, bindings, positions)

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


def find_kv_cache(args, kwargs):
    """The KV cache among a forward's arguments, recognised by what it is, not by its name.

    transformers renamed the argument (``past_key_values`` -> ``cache`` in 5.25), so we look
    at every argument: a cache object answers ``get_seq_length()``; the legacy format is a
    tuple of per-layer ``(key, value)`` tensors of shape ``(B, H, past, D)``. Returns
    ``(kind, obj)`` with kind ``"cache"``, ``"legacy"``, ``"unknown"`` (an object whose class
    calls itself a cache but offers neither) or ``(None, None)`` when there is none.
    """
    for v in list(kwargs.values()) + list(args):
        if v is None or isinstance(v, (torch.Tensor, bool, int, float, str)):
            continue
        if callable(getattr(v, "get_seq_length", None)):
            return "cache", v
        if isinstance(v, (tuple, list)) and v and isinstance(v[0], (tuple, list)) and len(v[0]) >= 2 \
                and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in v[0][:2]):
            return "legacy", v
        if "cache" in type(v).__name__.lower():
            return "unknown", v
    return None, None


def cache_length(kind, obj) -> Optional[int]:
    """Positions held by a cache :func:`find_kv_cache` found: 0 without one, None when unreadable."""
    if kind == "cache":
        try:
            return int(obj.get_seq_length())
        except Exception:  # noqa: BLE001 - e.g. a cache of only linear-attention/SSM layers (transformers < 5.2x)
            return None
    if kind == "legacy":
        return int(obj[0][0].shape[-2])
    if kind == "unknown":
        return None
    return 0


def past_length(args, kwargs) -> Optional[int]:
    """Positions already in the KV cache of this forward call: 0 without a cache, None when a
    cache is there but its length cannot be read."""
    return cache_length(*find_kv_cache(args, kwargs))


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
