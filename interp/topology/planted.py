"""Planted answers for the topology pipeline: circles that persist or flatten, and a small
trained LM with near-identity blocks inserted (used by the tests, the notebook and the bench).

    >>> from interp.topology.planted import planted_circles, build_planted_redundancy_lm
    >>> clouds = planted_circles([2, 5, None], n_layers=7, born_at=[3])  # beta_1 = 3 3 2 3 3 2 2
    >>> identity_blocks = build_planted_redundancy_lm("runs/planted")     # e.g. [2, 3]
"""
from __future__ import annotations

import numpy as np

__all__ = ["planted_circles", "build_planted_redundancy_lm"]


def planted_circles(flatten_at, n_layers: int, *, n_points: int = 24, dim: int = 8, born_at=(), seed: int = 0) -> list:
    """One (N, dim) cloud per layer with one component per entry of ``flatten_at`` and ``born_at``.

    A component of ``flatten_at`` is a circle of ``n_points`` evenly spaced points, unrolled into a
    segment with the same spacing from layer ``flatten_at[c]`` on (``None``: never); one of
    ``born_at`` is a segment that closes into a circle at layer ``born_at[j]``. Components are far
    apart (their kNN graphs never touch) and every layer is randomly rotated and shifted
    (distances kept). With ``k = 4`` each circle is a triangulated band (beta_1 = 1), each segment
    contractible; at ``max_dim = 3`` each segment end is a spurious H3 class (a 5-clique truncated
    to its boundary), at ``max_dim = 4`` there are none.
    """
    rng = np.random.default_rng(seed)
    theta = 2 * np.pi * np.arange(n_points) / n_points
    circle = np.c_[np.cos(theta), np.sin(theta)]
    step = 2 * np.sin(np.pi / n_points)  # the circle's chord: same nearest-neighbour spacing
    segment = np.c_[step * np.arange(n_points), np.zeros(n_points)]
    shapes = [(f, "flatten") for f in flatten_at] + [(g, "born") for g in born_at]
    clouds = []
    for layer in range(n_layers):
        parts = []
        for c, (t, kind) in enumerate(shapes):
            is_circle = (t is None or layer < t) if kind == "flatten" else layer >= t
            pts = np.zeros((n_points, dim))
            pts[:, :2] = circle if is_circle else segment
            pts[:, 2 + c % (dim - 2)] += 100.0 * (c + 1)
            parts.append(pts)
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        clouds.append(np.concatenate(parts) @ q + rng.normal(size=dim))
    return clouds


def build_planted_redundancy_lm(path, *, n_trained: int = 3, insert_at: int = 2, n_identity: int = 2,
                                steps: int = 120, seed: int = 0, hidden_size: int = 48) -> list:
    """Train a tiny Llama on the toy copy task (:mod:`interp.toy_lm`), insert ``n_identity``
    near-identity blocks (fresh blocks whose attention and MLP output projections are scaled by
    1e-3) before trained block ``insert_at``, save it at ``path``; return the identity blocks'
    indices. ~5 s on 2 cores."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hooks.loading import save_pretrained_atomic
    from interp.toy_lm import make_tokenizer, sample_texts

    torch.manual_seed(seed)
    tok = make_tokenizer()
    kw = dict(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              tie_word_embeddings=True)
    small = LlamaForCausalLM(LlamaConfig(num_hidden_layers=n_trained, **kw))
    opt = torch.optim.AdamW(small.parameters(), lr=5e-3)
    small.train()
    for step in range(steps):
        enc = tok(sample_texts(32, seed=seed * 100_003 + step), return_tensors="pt", padding=True)
        loss = small(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    big = LlamaForCausalLM(LlamaConfig(num_hidden_layers=n_trained + n_identity, **kw))
    src_sd, sd = small.state_dict(), big.state_dict()
    order = list(range(insert_at)) + [None] * n_identity + list(range(insert_at, n_trained))
    for key in sd:
        if ".layers." not in key:
            sd[key] = src_sd[key]
    for j, src in enumerate(order):
        pre = f"model.layers.{j}."
        for key in [k for k in sd if k.startswith(pre)]:
            if src is not None:
                sd[key] = src_sd[f"model.layers.{src}." + key[len(pre):]]
            elif key.endswith(("o_proj.weight", "down_proj.weight")):
                sd[key] = sd[key] * 1e-3
    big.load_state_dict(sd)
    big.eval()
    save_pretrained_atomic(big, tok, path)
    return [j for j, s in enumerate(order) if s is None]
