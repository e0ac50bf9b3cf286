"""Where the papers read representations: each block's input norm, the final norm, the logits.

    from interp.landscape.sites import paper_sites, PAPER_SITE
    sites = paper_sites(hm)        # {0: "model.layers.0.input_layernorm", ..., 32: "final", 33: "logits"}
    sites = paper_sites(hm, "resid_post")   # {1: "resid_post.0", ..., 32: "resid_post.31"}

Doimo et al. 2024 (diegodoimo/geometry_icl_finetuning, ``utils/helpers_extract.py``,
``get_target_layers(option="norm1")``) hook the output of ``model.layers.{i}.input_layernorm``
for ``i = 0..L-1`` (label ``i``), ``model.norm`` (label ``L``) and ``lm_head`` (label ``L+1``);
``analysis/repr_analysis.py`` analyses labels ``1..L+1`` (``range(1, nlayers)`` with
``nlayers = 34`` for Llama-3-8B: 33 points). Label ``i`` is therefore the residual stream after
``i`` blocks, normalised. Valeriani et al. 2023 (diegodoimo/geometry_representations,
``src/model.py``) read the same place in iGPT (``ln_1`` of every block, then ``ln_f``).

With another ``site`` (``resid_post``, ``resid_pre`` ...) the labels follow the same
convention — a representation after ``i`` blocks has label ``i`` — so ``resid_post.{i}`` is
labelled ``i + 1`` (other families keep their index) and curves of different sites line up.
The logits (label ``L + 1``) are read from the model's output at the last real token.
"""
from __future__ import annotations

PAPER_SITE = "input_norm"
_NORM_NAMES = ("input_layernorm", "ln_1", "attention.LayerNorm", "self_attn_layer_norm", "ln1", "norm1",
               "layer_norm1", "attention_norm", "input_norm")


def _module_paths(hm) -> dict:
    return {id(m): n for n, m in hm.model.named_modules()}


def input_norm_modules(hm) -> list:
    """Root-relative module paths of each block's input (pre-attention) norm, in layer order.

    A block's input norm is its child named like ``input_layernorm`` / ``ln_1`` /
    ``attention.LayerNorm`` (ESM) ..., else its first submodule whose class name contains
    ``Norm``. Raises ``ValueError`` for a block without one (post-LN models: pass ``site``)."""
    paths = _module_paths(hm)
    out = []
    for b in hm.resolve_sites("resid_post.*"):
        block = b.module
        base = paths.get(id(block))
        if base is None:
            raise ValueError(f"cannot locate block {b.name!r} among the model's modules; pass another site "
                             "(e.g. --site resid_post).")
        subs = dict(block.named_modules())
        name = next((n for n in _NORM_NAMES if n in subs), None)
        if name is None:
            name = next((n for n, m in subs.items() if n and "norm" in type(m).__name__.lower()), None)
        if name is None:
            raise ValueError(f"block {base!r} has no input norm module; pass another site (e.g. --site resid_post).")
        out.append(f"{base}.{name}")
    return out


def paper_sites(hm, site: str = PAPER_SITE, *, logits: bool = True, first: int = 1) -> dict:
    """``{label: site name}`` with the papers' layer labels (see the module docstring).

    ``site``: ``"input_norm"`` (the papers': block input norms + ``final`` + ``logits``) or a
    per-layer family such as ``"resid_post"``/``"resid_pre"``. ``first``: lowest label kept (1 as
    in ``repr_analysis.py``; 0 keeps the normalised embeddings). ``logits``: keep label ``L+1``."""
    L = hm.n_layers
    if site == PAPER_SITE:
        names = dict(enumerate(input_norm_modules(hm)))
        avail = set(hm.site_names)
        if "final" in avail:
            names[L] = "final"
        if logits:
            names[L + 1] = "logits"
    else:
        shift = 1 if site == "resid_post" else 0
        names = {i + shift: b.name for i, b in enumerate(hm.resolve_sites(f"{site}.*"))}
    return {k: v for k, v in sorted(names.items()) if k >= first}
