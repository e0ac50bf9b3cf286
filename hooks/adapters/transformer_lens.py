"""TransformerLens ``HookedTransformer``: canonical sites on TL's own HookPoints.

    model = hooks.load("tl:gpt2")                        # HookedTransformer.from_pretrained (needs weights)
    model = hooks.wrap(HookedTransformer(cfg, tokenizer=tok))   # or any built HookedTransformer
    with model.trace(["The cat sat", "A dog"]) as tr:
        acts = tr.cache("resid_post.*", positions="last")
        tr.knockout(layers=[1], queries="last", keys=0, mode="zero")
    out = model.generate(["Once upon"], max_new_tokens=10)

Hook points are plain ``nn.Module`` s; we register ordinary torch forward hooks on them and
never call TL's ``add_hook``/``reset_hooks``, so hooks added through TL (``run_with_hooks``,
``add_hook``) and ours coexist and neither removes the other's.

Sites and their TL semantics (TransformerLens 3.9):

- ``embed`` = ``hook_embed`` (token embedding only; ``resid_pre.0`` adds ``hook_pos_embed`` for
  absolute positions), ``resid_pre/mid/post`` = ``blocks.L.hook_resid_*`` (no ``resid_mid`` in
  attn-only or parallel-attention models), ``attn_out`` / ``mlp_out`` = ``blocks.L.hook_*_out``.
- ``head_out.L`` = ``blocks.L.attn.hook_z`` (already B×P×H×D).
- ``attn_scores.L`` = ``hook_attn_scores``: scaled QK *after* the causal/padding mask (masked
  entries are ``-inf``, TL's ``IGNORE``); ``attn_pattern.L`` = ``hook_pattern`` (post-softmax,
  NaN rows of fully-masked left-padding queries set to 0). Knockout and attention caching use them.
- ``final`` = output of the ``ln_final`` module (after the affine weights; TL's
  ``ln_final.hook_normalized`` is *before* them). ``logits`` = ``unembed`` output (before
  ``output_logits_soft_cap`` on the few models that have one).

Padding: strings are tokenised with the BOS policy shared with HF models
(:func:`hooks.hf_backend.encode_texts`; BOS first by default, TL's ``default_prepend_bos``) and
padded on the tokenizer's side (generation pads left); the explicit ``attention_mask`` is always
passed, so TL computes absolute positions from it (``cumsum - 1``: the first real token is
position 0 under left padding too) and masks padded keys. ``transformer_lens`` is imported only
inside functions here: importing :mod:`hooks` never imports it.
"""
from __future__ import annotations

import types

import torch

from .. import hf_backend
from ..errors import HookError
from .base import Adapter, Site


# -- backend -----------------------------------------------------------------------------
def _tokenizer(hm):
    tok = hm.tokenizer if hm.tokenizer is not None else getattr(hm.model, "tokenizer", None)
    if hm.tokenizer is None and tok is not None:
        hm.tokenizer = tok  # token("...") selectors and decoding use it
    return tok


def prepare(hm, batch, *, padding_side=None, prepend_bos=None) -> dict:
    """Texts / token ids (a (B, P) tensor or a list of rows) / ``{"input_ids", "attention_mask"}`` -> inputs.

    Texts and token rows are padded on ``padding_side`` (default: the tokenizer's, else right).
    Texts follow the BOS policy of :mod:`hooks.hf_backend` (BOS first by default, as
    ``to_tokens`` with ``default_prepend_bos``), tokenized by the same function as HF models so
    a text has the same ids on both backends.
    """
    if isinstance(batch, str):
        batch = [batch]
    rows = None
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(s, str) for s in batch):
        if _tokenizer(hm) is None:
            raise HookError("This HookedTransformer has no tokenizer; pass token ids (a LongTensor or "
                            "{'input_ids': ..., 'attention_mask': ...}) or build it with tokenizer=...")
        rows = [torch.tensor(r, dtype=torch.long)
                for r in hf_backend.encode_texts(_tokenizer(hm), batch, hf_backend.bos_policy(hm, prepend_bos))]
    elif isinstance(batch, (list, tuple)) and batch and all(
            (isinstance(b, torch.Tensor) and b.dim() == 1) or isinstance(b, (list, tuple)) for b in batch):
        rows = [torch.as_tensor(b, dtype=torch.long) for b in batch]
    if rows is not None:
        tok = _tokenizer(hm)
        side = padding_side or hm.adapter.padding_side or getattr(tok, "padding_side", None) or "right"
        pad = getattr(tok, "pad_token_id", None)
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), pad if pad is not None else 0, dtype=torch.long)
        am = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(L - len(r), L) if side == "left" else slice(0, len(r))
            ids[i, sl], am[i, sl] = r, 1
    elif isinstance(batch, torch.Tensor):
        ids = batch if batch.dim() == 2 else batch[None]
        am = torch.ones_like(ids)
    elif isinstance(batch, dict) or hasattr(batch, "keys"):
        ids = batch.get("input_ids", batch.get("tokens"))
        if not isinstance(ids, torch.Tensor):
            raise HookError(f"TransformerLens batches given as a dict need 'input_ids'; got keys {sorted(batch)}.")
        am = batch.get("attention_mask")
        am = torch.ones_like(ids) if am is None else am
    else:
        raise HookError(f"Cannot use a {type(batch).__name__} as a batch; pass texts, a (B, P) LongTensor of "
                        "tokens or {'input_ids': ..., 'attention_mask': ...}.")
    if ids.is_floating_point() or ids.dim() != 2 or am.shape != ids.shape:
        raise HookError(f"Token ids must be a (B, P) integer tensor with a same-shaped attention_mask; got "
                        f"{tuple(ids.shape)} {ids.dtype} and mask {tuple(am.shape)}.")
    dev = hm.device
    return {"input_ids": ids.to(dev), "attention_mask": am.to(dev)}


def forward(hm, inputs: dict, **kw):
    """``model(tokens, attention_mask=...)`` -> logits (or whatever ``return_type`` asks for)."""
    return hm.model(inputs["input_ids"], attention_mask=inputs["attention_mask"], **kw)


def call_inputs(args, kwargs):
    """(ids, full attention mask, (B, q)) of a HookedTransformer call, KV-cache aware."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None, None, None  # strings: TL tokenises internally; positions fall back to "all real"
    if x.is_floating_point():  # start_at_layer: a residual stream, not tokens
        ids, shape = None, tuple(x.shape[:2])
    else:
        ids = x if x.dim() == 2 else x[None]
        shape = tuple(ids.shape)
    am = kwargs.get("attention_mask")
    cache = kwargs.get("past_kv_cache")
    if am is not None and cache is not None and kwargs.get("start_at_layer") is None:
        prev = getattr(cache, "previous_attention_mask", None)  # TL appends the new mask to it
        if prev is not None:
            am = torch.cat([prev.to(am.device, am.dtype), am], 1)
    if am is not None and (am.dim() != 2 or am.shape[0] != shape[0] or am.shape[1] < shape[1]):
        am = None
    return ids, am, shape


def logits_of(output):
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    return output[0] if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor) else None


BACKEND = types.SimpleNamespace(prepare=prepare, forward=forward, call_inputs=call_inputs, logits_of=logits_of)


# -- generation ------------------------------------------------------------------------------
@torch.no_grad()
def generate(hm, batch, interventions=(), *, max_new_tokens: int = 20, do_sample: bool = False,
             temperature: float = 1.0, eos_token_id=None, **kw):
    """Greedy/sampled generation with TL's KV cache, interventions active at every step.

    Prompts are left-padded; exactly ``max_new_tokens`` tokens are produced per row unless
    ``eos_token_id`` is given (rows that emitted it keep producing it).
    """
    from transformer_lens import TransformerLensKeyValueCache

    from ..model import GenerateResult, as_interventions, merge_caches

    prepend_bos = kw.pop("prepend_bos", None)
    if kw:
        raise HookError(f"Unsupported generate options for TransformerLens: {sorted(kw)}.")
    ivs = as_interventions(interventions)
    model = hm.model
    inputs = prepare(hm, batch, padding_side="left", prepend_bos=prepend_bos)
    ids, am = inputs["input_ids"], inputs["attention_mask"]
    B, prompt_len = ids.shape
    kv = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, B)
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    seqs, cur, cur_mask = ids, ids, am
    with hm.generating(prompt_len):  # lets apply_to / windows resolve on each step
        with hm.trace() as tr:
            results = [tr.add(iv) for iv in ivs]
            for _ in range(max_new_tokens):
                logits = model(cur, attention_mask=cur_mask, past_kv_cache=kv)[:, -1].float()
                if do_sample:
                    nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1)[:, 0]
                else:
                    nxt = logits.argmax(-1)
                if eos_token_id is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                    done |= nxt == eos_token_id
                seqs = torch.cat([seqs, nxt[:, None]], 1)
                cur, cur_mask = nxt[:, None], torch.ones_like(nxt[:, None])
                if eos_token_id is not None and bool(done.all()):
                    break
    cache = merge_caches(results)  # {site: tensor} plus per-step position masks, as HookedModel.generate returns
    tok = _tokenizer(hm)
    texts = tok.batch_decode(seqs[:, prompt_len:], skip_special_tokens=True) if tok is not None else None
    return GenerateResult(seqs, texts, prompt_len, cache)


# -- adapter ---------------------------------------------------------------------------------
ADAPTER = Adapter(
    name="transformer_lens",
    class_names=("HookedTransformer",),
    bases=("",),
    layers="blocks",
    sites={
        "embed": Site("hook_embed"),
        "resid_pre": Site("blocks.{L}.hook_resid_pre"),
        "attn_scores": Site("blocks.{L}.attn.hook_attn_scores", layout="attn"),
        "attn_pattern": Site("blocks.{L}.attn.hook_pattern", layout="attn"),
        "head_out": Site("blocks.{L}.attn.hook_z"),
        "attn_out": Site("blocks.{L}.hook_attn_out"),
        "resid_mid": Site("blocks.{L}.hook_resid_mid", optional=True),
        "mlp_out": Site("blocks.{L}.hook_mlp_out"),
        "resid_post": Site("blocks.{L}.hook_resid_post"),
        "final": Site("ln_final", optional=True),
        "logits": Site("unembed"),
    },
    attention_backend="tl",
    n_heads=lambda m: m.cfg.n_heads,
    position_ids=False,
    extra={"backend": BACKEND, "generate": generate},
)


# -- loading ------------------------------------------------------------------------------------
def load_tl(name_or_model, *, dtype=None, device=None, **from_pretrained_kwargs):
    """``HookedTransformer.from_pretrained(name)`` (or a built HookedTransformer) as a HookedModel."""
    from ..wrapping import wrap

    if isinstance(name_or_model, torch.nn.Module):
        model = name_or_model
        if dtype is not None and dtype != "auto":
            model.to(dtype)
        if device is not None:
            model.to(device)
    else:
        from transformer_lens import HookedTransformer

        kw = dict(from_pretrained_kwargs)
        if dtype is not None and dtype != "auto":
            kw["dtype"] = dtype
        if device is not None:
            kw["device"] = device
        try:
            model = HookedTransformer.from_pretrained(str(name_or_model), **kw)
        except (ValueError, OSError) as e:
            msg = str(e).split(". Valid official model names")[0]
            raise HookError(
                f"TransformerLens could not load {str(name_or_model)!r}: {msg[:300]}. Use a name from "
                "transformer_lens.loading.OFFICIAL_MODEL_NAMES with its weights in the HF cache, or build a "
                "HookedTransformer yourself and call interp.wrap(model) (hooks.wrap in scripts that import hooks only)."
            ) from None
    return wrap(model, getattr(model, "tokenizer", None))
