"""Stack-level reading for structural inference (:mod:`hooks.infer`): which parallel lists make up a
layer, which ``output_hidden_states`` tuple belongs to the blocks, the ``final`` and ``logits``
modules, and time-first layouts. The block list itself and the per-block analysis are in
:mod:`hooks.infer`; these helpers only read the module tree and one recording
(:func:`hooks.recording.record`).

    key = _hidden_key(recording.output, recording.recs["model.layers.0"], n_layers)   # "hidden_states"
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch

from .recording import HIDDEN_KEYS


def _depth(path: str) -> int:
    return len(path.split("."))


def _common(a: str, b: str) -> int:
    """Number of leading path components ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        n += 1
    return n


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


def close(a, b) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    scale = max(float(b.abs().max()), 1e-6)
    return bool(torch.allclose(a, b, rtol=0, atol=1e-5 * scale + 1e-7))


def _parallel_lists(model, blocks_path: str, n: int, recs: dict) -> Optional[list]:
    """Per layer, the ``L``-th modules of the sibling ``ModuleList`` s of length ``n`` in call order
    (XLM/Flaubert keep ``attentions``, ``layer_norm1``, ``ffns``, ``layer_norm2`` side by side and
    have no block module, models/xlm/modeling_xlm.py ``XLMModel.forward``), else None."""
    parent, _, _ = blocks_path.rpartition(".")
    root = model.get_submodule(parent) if parent else model
    lists = [f"{parent}.{name}" if parent else name for name, m in root.named_children()
             if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    lists = [p for p in lists if all(recs.get(f"{p}.{L}") is not None and recs[f"{p}.{L}"].calls == 1 for L in range(n))]
    if len(lists) < 2:
        return None
    out = []
    for L in range(n):
        out.append(sorted((f"{p}.{L}" for p in lists), key=lambda q: recs[q].start))
    for L in range(1, n):  # layer L runs after layer L-1
        if recs[out[L][0]].start < recs[out[L - 1][-1]].end:
            return None
    return out


def _final_norm(model, recs, blocks_path, last, hs_last):
    """The final-norm site: a module outside the blocks, run after them, whose output is
    ``hidden_states[-1]``. Preferred: one that reads the last block's output (the usual final norm);
    else any such module (e.g. Inkling-2 mixes earlier block states into the last one before its
    norm). Without hidden states to compare, only a module reading the last block's output counts."""
    reads, other = None, None
    for p, r in recs.items():
        if _under(p, blocks_path) or r.calls != 1 or r.inp is None or r.out is None:
            continue
        if r.start <= last.end - 1 or r.out.shape != (last.out.shape if hs_last is None else hs_last.shape):
            continue  # (multi-stream residuals, e.g. DeepSeek-V4's hyper-connections, collapse to (B, P, D) here)
        if hs_last is not None and not close(r.out, hs_last):
            continue
        if r.inp.shape == last.out.shape and close(r.inp, last.out):
            if reads is None or _depth(p) < _depth(reads.path):
                reads = r
        elif hs_last is not None and (other is None or r.end > other.end):
            other = r  # the latest module giving hidden_states[-1]
    return reads if reads is not None else other


def _time_first_layouts(sites: dict, plans: list, recs: dict, bp: tuple) -> None:
    """Sites whose tensors are time-first ``(P, B, D)`` (XLNet's stack: models/xlnet/modeling_xlnet.py
    transposes ``input_ids`` before embedding) get the ``PBD`` / ``heads_PBD`` layout. The probe batch
    is ``(1, 5)``, so the two orders cannot be confused."""
    B, P = bp
    if B == P:
        return

    def fix(site):
        r = recs.get(site.path)
        t = None if r is None else (r.inp if site.kind == "input" else r.out)
        if t is None or site.layout not in ("BPD", "heads") or tuple(t.shape[:2]) != (P, B):
            return site
        return replace(site, layout="PBD" if site.layout == "BPD" else "heads_PBD")

    for k, v in list(sites.items()):
        sites[k] = fix(v)
    for pl in plans:
        for k, v in list(pl.sites.items()):
            pl.sites[k] = fix(v)


def _logits_module(recs, out_path, logits):
    """The module whose output is the model's logits: ``get_output_embeddings()`` or, where a bias
    or scale is applied after it (ESM's ``lm_head``: ``decoder(x) + bias``), its nearest ancestor
    whose output equals them. Without a match the output embedding stays (e.g. soft-capped logits,
    which no module returns)."""
    if out_path is None or logits is None or recs.get(out_path) is None:
        return out_path
    best, path = None, out_path
    while path:  # the outermost module on the way up that returns the logits (a zero bias ties with the linear)
        r = recs.get(path)
        if r is not None and r.out is not None and close(r.out, logits):
            best = path
        path = path.rpartition(".")[0]
    return best or out_path


def _hidden_key(output, first, n):
    """Which ``output_hidden_states`` tuple belongs to the block list whose first block recorded
    ``first`` (``hidden_states``, or an encoder-decoder's ``encoder_hidden_states`` /
    ``decoder_hidden_states``), else None."""
    for key in HIDDEN_KEYS:
        hs = getattr(output, key, None)
        if not isinstance(hs, (tuple, list)) or len(hs) != n + 1:
            continue
        if first is None or key == "hidden_states" or close(hs[0], first.inp) or close(hs[1], first.out):
            return key
    return None


def _token_offsets(sites: dict, plans: list, recs: dict, first, hs0) -> Optional[int]:
    """Blocks that run on a stream longer than the input (Longformer pads it to a multiple of its
    attention window, models/longformer/modeling_longformer.py ``_pad_to_window_size``; CPM-Ant
    prepends a learned prompt, models/cpmant/modeling_cpmant.py ``CpmAntModel.forward``; ProphetNet's
    decoder appends its n-gram predicting streams, models/prophetnet/modeling_prophetnet.py) while
    ``output_hidden_states`` keep the tokens only: where ``hidden_states[0]`` is the slice
    ``[off, off + P)`` of the first block's input, every site on that stream gets ``token_offset=off``
    (its ops see the tokens' positions only; edits leave the rest as the model made it) and the
    attention sites, whose query/key axes run over the whole stream, are absent. Returns ``off`` or None."""
    x = None if first is None else first.inp
    if x is None or hs0 is None or x.dim() != 3 or hs0.dim() != 3 or x.shape[1] <= hs0.shape[1]:
        return None
    P, S = hs0.shape[1], x.shape[1]
    off = next((o for o in range(S - P + 1) if close(x[:, o:o + P], hs0)), None)
    if off is None:
        return None

    def fix(site):
        r = recs.get(site.path)
        t = None if r is None else (r.inp if site.kind == "input" else r.out)
        if t is not None and t.dim() >= 2 and t.shape[1] == S and site.layout in ("BPD", "heads"):
            return replace(site, token_offset=off)
        return site

    for k, v in list(sites.items()):
        sites[k] = fix(v)
    why = (f"the attention runs over a stream of {S} positions for {P} tokens (internal padding, a prompt or "
           "extra streams): its patterns are not token × token")
    for pl in plans:
        for k, v in list(pl.sites.items()):
            if v.kind == "attn":
                del pl.sites[k]
                pl.absent[k] = why
            else:
                pl.sites[k] = fix(v)
    return off
