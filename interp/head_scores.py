"""Previous-token and induction scores per attention head, read from the attention weights.

    from interp.head_scores import score_heads
    df = score_heads("runs/demo-lm/model", symbols=range(3, 67), bos=1)   # path or a HF causal LM
    df   # layer, head, prev_token, induction ; df.attrs: chance levels, sequence length

Both scores are averages of attention *weights* on a probe batch of random tokens repeated
twice, ``[bos, r1..rn, r1..rn]`` (Olsson et al. 2022, "In-context Learning and Induction
Heads", transformer-circuits.pub/2022/in-context-learning-and-induction-heads: the
"prefix matching" score on repeated random tokens; Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits", for the previous-token head):

* **previous-token score**: mean over destination positions ``i >= 1`` of ``A[i, i-1]``;
* **induction score**: mean over destinations ``i`` in the second copy of ``A[i, i-n+1]``,
  the position right after the earlier occurrence of token ``i``.

Reference code: TransformerLens ``transformer_lens/head_detector.py``
(``get_previous_token_head_detection_pattern``, ``get_induction_head_detection_pattern``,
``compute_head_attention_similarity_score`` with ``error_measure="mul"``) scores the same
stripes but divides by *all* ``T`` rows (rows with nothing to match count as 0); on a probe with
distinct tokens its scores are ours times ``(T-1)/T`` (previous token) and ``n/T`` (induction),
which ``tests/circuits/test_induction.py`` checks. The ARENA induction-head exercise takes the
mean of ``pattern.diagonal(offset=1 - n)``, which also includes the two first-copy rows
``n-1, n``; we average over the second copy only, where there is something to match.

Chance is uniform causal attention: destination ``i`` puts ``1/(i+1)`` on each allowed key;
``df.attrs`` holds that averaged over the same destinations. The weights come from
transformers' eager attention (``output_attentions=True``) on a fresh eager copy of the model,
with none of our hooks involved, so these scores are an independent check on what patching
(:mod:`interp.patching`) attributes to each head.
"""
from __future__ import annotations

import copy

import torch


def repeated_random_tokens(symbols, n: int = 64, length: int = 10, *, bos: int | None = None, seed: int = 0):
    """``(n, [1] + 2*length)`` token ids: ``[bos,] r, r`` with ``r`` drawn uniformly from ``symbols``."""
    sym = torch.as_tensor(list(symbols), dtype=torch.long)
    if sym.numel() < 2 or length < 2:
        raise ValueError(f"Need at least 2 symbols and length >= 2, got {sym.numel()} symbols, length {length}.")
    g = torch.Generator().manual_seed(seed)
    r = sym[torch.randint(0, sym.numel(), (n, length), generator=g)]
    parts = ([torch.full((n, 1), int(bos), dtype=torch.long)] if bos is not None else []) + [r, r]
    return torch.cat(parts, 1)


def attention_patterns(model, input_ids: torch.Tensor, attention_mask=None) -> list:
    """Per-layer ``(B, heads, T, T)`` attention weights from transformers' eager attention.
    ``model``: a directory saved with ``save_pretrained``, an HF causal LM or a
    :class:`hooks.HookedModel` wrapping one (copied, not changed; our hooks are not used)."""
    from hooks import HookedModel

    if isinstance(model, HookedModel):
        model = model.model
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model, attn_implementation="eager")
    else:
        model = copy.deepcopy(model)
        model.set_attn_implementation("eager")
    model.eval()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    att = getattr(out, "attentions", None)
    if not att or any(a is None for a in att):
        raise ValueError(f"{type(model).__name__} returned no attention weights with output_attentions=True; "
                         "pass a transformers causal LM that supports eager attention.")
    return [a.float() for a in att]


def previous_token_scores(patterns) -> torch.Tensor:
    """``(layers, heads)``: mean attention from each position ``i >= 1`` to ``i - 1`` (every row
    counts: use unpadded probes such as :func:`repeated_random_tokens`)."""
    return torch.stack([a.diagonal(-1, dim1=-2, dim2=-1).mean((0, 2)) for a in patterns])


def induction_scores(patterns, length: int, offset: int = 1) -> torch.Tensor:
    """``(layers, heads)`` on ``[bos] r r`` (``offset=1``; 0 without bos): mean attention from each
    position ``i`` of the second copy to ``i - length + 1``."""
    first = offset + length  # the second copy's first position
    T = patterns[0].shape[-1]
    if T != offset + 2 * length:
        raise ValueError(f"Patterns cover {T} positions but [bos] r r with length {length} and offset {offset} has "
                         f"{offset + 2 * length}; pass the length of r (and offset=0 when there is no bos).")
    return torch.stack([a.diagonal(-(length - 1), dim1=-2, dim2=-1)[..., first - (length - 1):].mean((0, 2))
                        for a in patterns])


def chance_levels(length: int, offset: int = 1) -> dict:
    """Uniform causal attention's scores: mean of ``1/(i+1)`` over each score's destinations."""
    T = offset + 2 * length
    prev = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)
    ind = sum(1 / (i + 1) for i in range(offset + length, T)) / length
    return {"prev_token": prev, "induction": ind}


def score_heads(model, symbols, *, bos: int | None = None, n: int = 64, length: int = 10, seed: int = 0):
    """A ``DataFrame`` (``layer, head, prev_token, induction``) on :func:`repeated_random_tokens`;
    ``df.attrs``: ``chance_prev_token``, ``chance_induction``, ``length``, ``sequences``."""
    import pandas as pd

    ids = repeated_random_tokens(symbols, n, length, bos=bos, seed=seed)
    pats = attention_patterns(model, ids)
    offset = 0 if bos is None else 1
    prev, ind = previous_token_scores(pats), induction_scores(pats, length, offset)
    L, H = prev.shape
    df = pd.DataFrame({"layer": [layer for layer in range(L) for _ in range(H)],
                       "head": [h for _ in range(L) for h in range(H)],
                       "prev_token": prev.flatten().tolist(), "induction": ind.flatten().tolist()})
    df.attrs.update({f"chance_{k}": v for k, v in chance_levels(length, offset).items()})
    df.attrs.update({"length": length, "sequences": n})
    return df


def leading_heads(df, column: str, layer: int, rel: float = 0.5) -> set:
    """Heads of ``layer`` whose ``column`` is above ``rel`` times that layer's maximum (and above 0):
    the "top head(s)" when several heads share a job, e.g. redundant induction heads."""
    sub = df[df["layer"] == layer]
    top = float(sub[column].max())
    return {int(h) for h, v in zip(sub["head"], sub[column]) if top > 0 and v > rel * top}
