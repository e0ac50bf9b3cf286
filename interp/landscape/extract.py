"""Last-prompt-token representations at every layer, plus the answer-letter logits.

One forward per batch through the hook registry caches the representation sites at ``"last"``
(the last *real* token, padding-correct) and reads the logits of the answer letters at the same
position. The default sites are the papers' (:func:`interp.landscape.sites.paper_sites`): the
output of each block's input norm, the final norm and the full logits row, labelled ``1..L+1``
as in Doimo et al. 2024 (``utils/helpers_extract.py``, ``analysis/repr_analysis.py`` of
diegodoimo/geometry_icl_finetuning). Prompts are batched by token length (longest first, so an out-of-memory error shows
up on the first batch) and only the selected rows leave the device, so device memory is
bounded by one batch. With left padding the model is asked for the last position's logits
only (``logits_to_keep=1``), which avoids a (B, P, vocab) logits tensor.

    from interp.landscape.extract import extract_representations, save_representations
    reps = extract_representations(hm, prompts, letter_ids, batch_size=16)   # paper's sites
    reps.layers[12].shape, reps.letter_logits.shape        # (N, d_model), (N, 4); keys: paper labels
    reps = extract_representations(hm, prompts, letter_ids, sites=paper_sites(hm, "resid_post"))
    save_representations("runs/x/reps/5shot.safetensors", reps)   # atomic, safetensors
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["Representations", "extract_representations", "save_representations", "load_representations",
           "fingerprint"]

KEY = "layer"


@dataclass
class Representations:
    """Per-layer (N, d) float tensors on CPU, the (N, n_letters) letter logits, and metadata."""

    layers: dict
    letter_logits: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.letter_logits.shape[0])


def fingerprint(*parts) -> str:
    """sha256 of the JSON dump of ``parts`` (prompts, model id, configs ...)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def extract_representations(hm, prompts: Sequence[str], letter_ids: Sequence[int], *, sites: dict | None = None,
                            batch_size: int = 8, dtype: torch.dtype | None = None, progress: bool = False,
                            meta: dict | None = None) -> Representations:
    """Run ``prompts`` through the hooked model ``hm``; returns :class:`Representations`.

    ``sites``: ``{label: site name}`` (default :func:`~interp.landscape.sites.paper_sites`);
    the site name ``"logits"`` means the full logits row at the last real token.
    ``letter_ids``: the token id of each answer letter (:func:`~interp.landscape.prompts.letter_token_ids`).
    ``dtype``: storage dtype of the representations; ``None`` keeps the model's floating dtype
    (bf16 activations are stored exactly, at half the size of float32). Letter logits are float32.
    """
    import hooks

    from .sites import paper_sites

    sites = paper_sites(hm) if sites is None else dict(sites)
    label_of = {v: k for k, v in sites.items()}
    want_logits = "logits" in label_of
    cache_sites = [v for v in sites.values() if v != "logits"]
    if not prompts:
        raise ValueError("no prompts to extract representations from.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    tok = hm.tokenizer
    letter_idx = torch.as_tensor(list(letter_ids), dtype=torch.long)
    forced = hm.adapter.padding_side
    left = forced in (None, "left") and tok is not None
    lengths = [len(ids) for ids in tok(list(prompts), add_special_tokens=True)["input_ids"]] if tok is not None \
        else [len(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    kw = {"logits_to_keep": 1} if left and _accepts(hm.model, "logits_to_keep") else {}
    layers: dict = {}
    letter_logits = torch.empty(len(prompts), len(letter_idx), dtype=torch.float32)
    old_side = getattr(tok, "padding_side", None)
    if left:
        tok.padding_side = "left"
    from hooks.progress import track

    starts = track(range(0, len(order), batch_size), "extract", total=len(order), unit="prompt",
                   step=lambda s: len(order[s:s + batch_size]), enabled=progress)
    try:
        for s in starts:
            rows = order[s:s + batch_size]
            res = hm.run([prompts[i] for i in rows], [hooks.Cache(cache_sites, positions="last")] if cache_sites
                         else [], **kw)
            idx = torch.as_tensor(rows)

            def put(L, t):
                t = t.detach().to("cpu", dtype or t.dtype)
                if L not in layers:
                    layers[L] = torch.empty(len(prompts), t.shape[-1], dtype=t.dtype)
                layers[L][idx] = t

            for name, t in (res.cache.items() if cache_sites else ()):
                put(label_of[name], t)
            logits = res.logits
            if logits is None:
                raise ValueError("the model returned no logits; letter accuracy needs a causal LM head "
                                 "(load it with AutoModelForCausalLM).")
            if logits.shape[1] == 1:
                last = logits[:, 0]
            else:
                am = res.inputs["attention_mask"].bool()
                pos = am.shape[1] - 1 - am.flip(1).long().argmax(1)
                last = logits[torch.arange(len(rows), device=logits.device), pos]
            letter_logits[idx] = last[:, letter_idx.to(last.device)].detach().float().cpu()
            if want_logits:
                put(label_of["logits"], last)
    finally:
        if left:
            tok.padding_side = old_side
    layers = {L: layers[L] for L in sorted(layers)}
    return Representations(layers, letter_logits, {"sites": {str(k): v for k, v in sites.items()}, **dict(meta or {})})


def save_representations(path, reps: Representations) -> Path:
    """Write ``reps`` to one safetensors file (``layer.<label>`` tensors, ``letter_logits``,
    metadata as JSON) atomically: a temp file in the same directory, then ``os.replace``."""
    from safetensors.torch import save_file

    from hooks.io import atomic_path

    tensors = {f"{KEY}.{L}": t.contiguous() for L, t in reps.layers.items()}
    tensors["letter_logits"] = reps.letter_logits.contiguous()
    with atomic_path(path) as tmp:  # safetensors writes 0600; atomic_path gives the umask's mode
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(reps.meta, default=str)})
    return Path(path)


def load_representations(path, *, layers: bool = True) -> Representations:
    """Read a file written by :func:`save_representations` (``layers=False``: only the letter
    logits and the metadata, without reading the per-layer tensors)."""
    from safetensors import safe_open

    want_layers = layers
    layers, letter_logits = {}, None
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        for k in f.keys():
            if k == "letter_logits":
                letter_logits = f.get_tensor(k)
            elif k.startswith(f"{KEY}.") and want_layers:
                layers[int(k.rsplit(".", 1)[1])] = f.get_tensor(k)
    if letter_logits is None:
        raise ValueError(f"{path} is not a representation file (no 'letter_logits'); delete it to re-extract.")
    return Representations({L: layers[L] for L in sorted(layers)}, letter_logits, meta)
