"""Logit lens and direct logit attribution (DLA).

    from interp.lens import logit_lens, top_tokens, dla, to_str_tokens
    lens = logit_lens(model, ["The Eiffel Tower is in"], sites="resid_post.*")  # {site: (B, vocab)} at the last token
    top_tokens(model, lens, k=5)           # DataFrame: site, rank, token, logit
    table = dla(model, texts, answers=[" Paris"], distractors=[" Rome"], heads=True)
    table.groupby("component")["contribution"].sum()   # per-head / per-layer shares of the logit diff

**Logit lens** (nostalgebraist 2020, "interpreting GPT: the logit lens"): a residual is read
as if it were the last layer's, through the model's own final norm and unembedding modules
(TransformerLens ``ActivationCache.apply_ln_to_stack`` + ``W_U``). At the last layer this
*is* the model's logits.

**DLA** (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits";
TransformerLens ``ActivationCache.decompose_resid`` / ``stack_head_results`` with
``apply_ln_to_stack``): the final residual at the last real token is the sum of the
embedding, every attention output (per head + the output-projection bias) and every MLP
output. The final norm is linearised by freezing its scale at the real residual (RMSNorm:
``gain * c / rms(x)``; LayerNorm: ``gain * (c - mean(c)) / std(x)``, its bias a component
of its own), then each component is dotted with ``W_U[answer] - W_U[distractor]``. The
contributions sum to the model's logit difference exactly (up to float rounding).
Requires a pre-norm residual stream (GPT-2, Llama, Mistral, Qwen, Gemma, TransformerLens).
"""
from __future__ import annotations

import math

import torch

from hooks import Cache
from hooks.errors import SpecError

from .metrics import last_real_index, token_ids


def to_str_tokens(model, x) -> list:
    """Tokens as strings: ``x`` is a text, a 1-D id sequence, or a batch (list of texts / 2-D ids)."""
    from .patching.common import str_tokens

    if isinstance(x, str):
        x = model.prepare([x])["input_ids"][0]
    if isinstance(x, torch.Tensor) and x.dim() == 2 or (isinstance(x, list) and x and not isinstance(x[0], int)):
        return [to_str_tokens(model, r) for r in x]
    return str_tokens(model, x)


def _module(model, site):
    bs = model.resolve_sites(site)
    if not bs:
        raise SpecError(f"This model has no {site!r} site, which the lens needs.")
    return bs[0].module


def unembed(model, resid: torch.Tensor) -> torch.Tensor:
    """Final norm then unembedding of residual vectors ``(..., d_model)``."""
    norm, head = _module(model, "final"), _module(model, "logits")
    with torch.no_grad():
        return head(norm(resid.to(model.device)))


@torch.no_grad()
def logit_lens(model, batch, sites="resid_post.*", positions="last") -> dict:
    """``{site: logits}`` of each residual site read through the final norm and unembedding."""
    res = model.run(batch, [Cache(sites, positions, device=None)])
    return {s: unembed(model, v) for s, v in res.cache.items()}


def top_tokens(model, lens: dict, k: int = 5, row: int = 0):
    """A DataFrame ``site, rank, token, logit`` of the top-``k`` tokens of one row of a lens."""
    import pandas as pd

    from .patching.common import str_tokens

    out = []
    for s, lg in lens.items():
        v = lg[row] if lg.dim() == 2 else lg[row, -1]
        vals, ids = v.float().topk(k)
        for r, (t, x) in enumerate(zip(str_tokens(model, ids), vals.tolist())):
            out.append({"site": s, "rank": r, "token": t, "logit": x})
    return pd.DataFrame(out)


def _norm_parts(norm: torch.nn.Module, x: torch.Tensor):
    """``(gain, bias, centre, scale)`` of the final norm frozen at residuals ``x`` (N, d)."""
    eps = next((float(getattr(norm, a)) for a in ("variance_epsilon", "eps", "epsilon") if hasattr(norm, a)), 0.0)
    kind = type(norm).__name__.lower()
    d = x.shape[-1]
    ones = torch.ones(d, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        if "rms" in kind:
            gain = norm(ones[None])[0].float() * math.sqrt(1 + eps)
            return gain, None, False, torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
        if "layernorm" in kind or isinstance(norm, torch.nn.LayerNorm):
            w = getattr(norm, "weight", None)
            w = getattr(norm, "w", None) if w is None else w
            b = getattr(norm, "bias", None)
            b = getattr(norm, "b", None) if b is None else b
            gain = ones.float() if w is None else w.float()
            xc = x.float() - x.float().mean(-1, keepdim=True)
            return gain, (None if b is None else b.float()), True, torch.sqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    raise SpecError(f"DLA needs an RMSNorm or LayerNorm final norm; this model has {type(norm).__name__}.")


def _unembed_matrix(head: torch.nn.Module):
    w = getattr(head, "weight", None)
    if w is not None:
        return w.float(), (None if getattr(head, "bias", None) is None else head.bias.float())  # (V, d)
    if hasattr(head, "W_U"):  # TransformerLens Unembed
        return head.W_U.T.float(), head.b_U.float()
    raise SpecError(f"Cannot read unembedding weights from {type(head).__name__}.")


@torch.no_grad()
def dla(model, batch, *, answers, distractors=None, heads: bool = False):
    """Per-component contributions to ``logit(answer) - logit(distractor)`` at the last real token
    (``distractors=None``: to ``logit(answer)``). A DataFrame with ``example, component, layer,
    head, contribution``; ``df.attrs["logit_diff"]`` holds the model's own values per example."""
    import pandas as pd

    n = model.n_layers
    inputs = model.prepare(batch)
    sites = ["resid_pre.0"] + [f"{k}.{L}" for L in range(n) for k in ("attn_out", "mlp_out")]
    if heads:
        sites += [f"head_out.{L}" for L in range(n)]
    res = model.run(inputs, [Cache(sites, "all", layout="padded", device=None)])
    B = inputs["attention_mask"].shape[0]
    last = last_real_index(inputs["attention_mask"]).to(model.device)
    ar = torch.arange(B, device=model.device)
    at = {s: res.cache[s][ar, last].float() for s in sites}
    norm, head = _module(model, "final"), _module(model, "logits")
    W, bU = _unembed_matrix(head)
    a = token_ids(model, answers, "answer").to(W.device)
    direction = W[a] if distractors is None else W[a] - W[token_ids(model, distractors, "distractor").to(W.device)]
    comps = [("embed", None, None, at["resid_pre.0"])]
    for L in range(n):
        if heads:
            comps += _head_components(model, L, at[f"head_out.{L}"])
        else:
            comps.append(("attn", L, None, at[f"attn_out.{L}"]))
        comps.append(("mlp", L, None, at[f"mlp_out.{L}"]))
    resid = sum(c[3] for c in comps)
    gain, nbias, centre, scale = _norm_parts(norm, resid)
    rows = []
    for name, L, h, c in comps:
        v = c - c.mean(-1, keepdim=True) if centre else c
        contrib = ((v * gain / scale) * direction).sum(-1)
        rows += [(b, name, L, h, float(contrib[b])) for b in range(B)]
    const = []
    if nbias is not None:
        const.append(("final_norm_bias", (nbias[None] * direction).sum(-1)))
    if bU is not None:
        bd = bU[a] if distractors is None else bU[a] - bU[token_ids(model, distractors, "distractor").to(W.device)]
        const.append(("unembed_bias", bd.expand(B)))
    for name, v in const:
        rows += [(b, name, None, None, float(v[b])) for b in range(B)]
    df = pd.DataFrame(rows, columns=["example", "component", "layer", "head", "contribution"])
    df["layer"] = pd.array(df["layer"], dtype="Int64")
    df["head"] = pd.array(df["head"], dtype="Int64")
    logits = res.logits[ar, last].float()
    own = logits.gather(1, a[:, None])[:, 0]
    if distractors is not None:
        own = own - logits.gather(1, token_ids(model, distractors, "distractor").to(W.device)[:, None])[:, 0]
    df.attrs["logit_diff"] = own.tolist()
    return df


def _head_components(model, L, z):
    """Per-head outputs of layer ``L`` (through the output projection) plus its bias, from ``z`` (B, H, D)."""
    proj = model.resolve_sites(f"head_out.{L}")[0]
    if proj.kind != "input":
        raise SpecError("Per-head DLA needs head_out.L to be the input of the output projection (HF models).")
    B, H, D = z.shape
    mod = proj.module
    with torch.no_grad():
        zero = mod(torch.zeros(1, H * D, dtype=z.dtype, device=z.device)).float()[0]
        out = []
        for h in range(H):
            zh = torch.zeros_like(z)
            zh[:, h] = z[:, h]
            out.append(("head", L, h, mod(zh.reshape(B, H * D)).float() - zero))
    if zero.abs().max() > 0:
        out.append(("attn_bias", L, None, zero.expand(B, -1)))
    return out
