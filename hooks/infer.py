"""Structural inference: the canonical sites of an HF model read off its module tree and dataflow.

Used when no hand-written adapter matches (``hooks.adapters.find_adapter`` falls back to
:func:`infer_adapter`). One recording forward on a few tokens (cost: one forward) gives, for
every module inside the decoder/encoder blocks, its first input and output; the sites are the
modules whose tensors satisfy the residual-stream identities of the block:

* the block list is the ``ModuleList`` whose length is the config's layer count, nearest (in
  the module tree) to ``get_input_embeddings()`` — so a VLM's text stack wins over its vision
  tower;
* ``attn_out`` is the output ``c1`` of the first sub-layer with ``resid_pre + c1`` read by a
  later module ``X`` (the pre-MLP norm or the MLP): with sandwich norms (Gemma-2/3, OLMo-2)
  that is the post-attention norm's output, i.e. what is added to the residual stream;
  ``resid_mid`` is the input of ``X`` (read in place: it is also the residual);
* ``mlp_out`` is the module output ``c2`` with ``resid_post = resid_mid + c2`` (MoE blocks: the
  routed sum, whatever the block adds);
* **parallel** blocks (GPT-J, GPT-NeoX ``use_parallel_residual``, Falcon, Phi, Cohere) have
  ``resid_post = resid_pre + c1 + c2`` and no ``X``: ``resid_mid`` does not exist and
  ``adapter.extra["absent"]`` says so;
* **post-norm** blocks (BERT, RoBERTa, DeBERTa...) have ``resid_mid = LN1(resid_pre + attn_out)``
  and ``resid_post = LN2(resid_mid + mlp_out)``: ``resid_mid`` is the output of ``LN1``;
* **hybrid** stacks: ``attn_scores``/``attn_pattern``/``head_out``/``attn_out`` only on layers
  whose token mixer calls transformers' ``AttentionInterface`` (found by a probe handler
  during the recording forward); Mamba / linear-attention layers keep the residual sites.
* **MoE** blocks: ``mlp_out`` is the routed sum (whatever the block adds); ``router_logits`` is
  the router module's ``(B·P, E)`` output where the model has one (read-only when the router
  returns its expert choice with the logits, as transformers' ``TopKRouter`` s do);
* layers spread over **parallel lists** (XLM/Flaubert: ``attentions[L]``, ``layer_norm1[L]``,
  ``ffns[L]``, ``layer_norm2[L]``, no block module) are read as one block each; blocks that return
  a **list** (OpenAI-GPT) get ``resid_post`` on the module inside that gives its first element;
  **time-first** stacks (XLNet's ``(P, B, D)``) get the ``PBD`` layout;
* ``final`` is the module after the blocks whose output is ``hidden_states[-1]`` (usually the
  final norm reading the last block; Inkling-2 mixes earlier block states in first; DeepSeek-V4's
  multi-stream residual collapses there); ``logits`` the outermost module returning the logits
  (ESM's ``lm_head`` adds a bias after ``get_output_embeddings()``);
* **encoder-decoder** models: the block list nearest the input embeddings is the encoder's, and its
  hidden states are ``encoder_hidden_states`` (``adapter.extra["hidden_states"]``).

Stack-level helpers (parallel lists, final/logits modules, hidden-states tuple, time-first
layouts) live in :mod:`hooks.infer_stack`; the block list and :class:`InferenceError` in
:mod:`hooks.infer_tree`; the per-block analysis (:func:`analyse_block`) in :mod:`hooks.infer_blocks`;
this module runs the recording forward and assembles the :class:`Adapter`.

The block kinds are those of the architectures' own code in transformers (v5.25): sequential
pre-norm ``models/llama/modeling_llama.py`` ``LlamaDecoderLayer``; parallel
``models/gpt_neox/modeling_gpt_neox.py`` (``use_parallel_residual``), ``models/gptj/modeling_gptj.py``,
``models/falcon/modeling_falcon.py``, ``models/phi/modeling_phi.py``, ``models/cohere/modeling_cohere.py``;
sandwich norms ``models/gemma2/modeling_gemma2.py``, ``models/olmo2/modeling_olmo2.py``; post-norm
``models/bert/modeling_bert.py`` (``BertSelfOutput``, ``BertOutput``: Vaswani et al. 2017's
``LayerNorm(x + Sublayer(x))``); MoE ``models/mixtral/modeling_mixtral.py``; hybrids
``models/jamba/modeling_jamba.py``. Site names follow TransformerLens's ``hook_resid_pre/mid/post``,
``hook_attn_out``, ``hook_mlp_out``, ``hook_z`` (transformer_lens/components/transformer_block.py).

Which composition each layer has is stored in ``adapter.extra["composition"]`` (one entry per
layer) and re-checked at load by :mod:`hooks.verify`. Nothing here depends on a family's
argument names: only on module outputs, ``get_input_embeddings``/``get_output_embeddings`` and
the config's layer/head counts.
"""
from __future__ import annotations

from typing import Optional

import torch

from .adapters.base import Adapter, Site
from .infer_blocks import LayerPlan, _head_proj, _is_linear, _plans, _router, analyse_block  # noqa: F401 (re-exported)
from .infer_shared import find_shared_blocks, last_call, per_call_plans, scope_of
from .infer_stack import (_common, _depth, _final_norm, _hidden_key, _logits_module, _parallel_lists,  # noqa: F401
                          _time_first_layouts, _token_offsets, _under, close)
from .infer_tree import (ATTN_NAME, EXPERT_KEYS, LAYER_KEYS, SKIP_TOWERS, InferenceError,  # noqa: F401 (re-exported)
                         _NoBlockList, _path_of, find_blocks)
from .recording import (Rec, _first_int, accepts, call, first_input, first_output,  # noqa: F401 (re-exported)
                        hidden_states_of, n_heads_of, probe_ids, record, restoring_capture_hooks, text_config)


# -- the adapter -------------------------------------------------------------------------------------
def _check_inplace_resid_mid(model, blocks_path, plans, inputs) -> None:
    """``resid_mid`` read in place must be the residual itself: one forward that adds a small vector,
    in place, to each such input must give ``resid_post == edited resid_mid + mlp_out``. A block that
    copies the residual before its MLP would make edits reach only one branch; there ``resid_mid``
    is dropped (with the reason)."""
    checks = {}
    for L, pl in enumerate(plans):
        mid, mlp = pl.sites.get("resid_mid"), pl.sites.get("mlp_out")
        if pl.composition == "sequential" and mid is not None and mid.inplace and mlp is not None:
            checks[L] = (mid.path, mlp.path)
    if not checks:
        return
    got: dict = {}
    handles = []

    def pre(m, args, kwargs, L):
        t = first_input(args, kwargs)
        if t is not None and L not in got:
            with torch.no_grad():
                t.add_(0.01 * t.abs().mean() + 0.01)
            got[L] = {"mid": t.detach().clone()}

    def post(m, args, output, L, key):
        t = first_output(output)
        if t is not None and key not in got.get(L, {"_": 0}):
            got.setdefault(L, {})[key] = t.detach().clone()

    try:
        for L, (mid_path, mlp_path) in checks.items():
            handles.append(model.get_submodule(mid_path).register_forward_pre_hook(
                lambda m, a, k, L=L: pre(m, a, k, L), with_kwargs=True))
            handles.append(model.get_submodule(mlp_path).register_forward_hook(
                lambda m, a, o, L=L: post(m, a, o, L, "mlp")))
            handles.append(model.get_submodule(plans[L].sites["resid_post"].path).register_forward_hook(
                lambda m, a, o, L=L: post(m, a, o, L, "post")))
        with torch.no_grad():
            call(model, inputs)
    except Exception:  # noqa: BLE001 - cannot check: keep the sites, the load-time self-check still runs
        return
    finally:
        for h in handles:
            h.remove()
    for L in checks:
        g = got.get(L, {})
        if {"mid", "mlp", "post"} <= set(g) and not close(g["post"], g["mid"] + g["mlp"]):
            plans[L].sites.pop("resid_mid")
            plans[L].absent["resid_mid"] = ("the residual and the MLP's input are different tensors in this block: "
                                            "an edit at resid_mid could not reach both")


def _last(output):
    hs = getattr(output, "hidden_states", None)
    if isinstance(hs, (tuple, list)) and hs:
        return hs[-1]
    return first_output(output) if isinstance(output, (tuple, torch.Tensor)) else getattr(output, "logits", None)


def _position_and_attention_policy(model, inputs, recorded, probed: bool):
    """(pass position ids?, does the explicit attention path reproduce the model?).

    The wrapped model passes ``position_ids = cumsum(mask) - 1`` (so left padding is correct) only
    if that equals the model's own default on an unpadded row (RoBERTa counts from
    ``padding_idx + 1``: it does not); the recording forward ran probed attention through
    :func:`hooks.attention.explicit_attention`, which must match the stock forward."""
    ref = _last(recorded)
    if not accepts(model, "position_ids") or ref is None:
        return False, True  # (hooks.verify still compares the explicit path with the stock forward)
    ids = inputs["input_ids"]
    pos_ids = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids)
    with torch.no_grad(), restoring_capture_hooks(model):
        with_pos = _last(call(model, inputs, position_ids=pos_ids, output_hidden_states=True))
        if close(with_pos, ref):
            return True, True
        if not probed:  # no explicit attention involved: the positions differ
            return False, True
        stock = _last(call(model, inputs, output_hidden_states=True))
    return close(with_pos, stock), close(stock, ref)


def infer_adapter(model, name: Optional[str] = None) -> Adapter:
    """An :class:`Adapter` for ``model`` from its module tree and one recording forward."""
    from . import attention

    if not hasattr(model, "config") or not hasattr(model, "get_input_embeddings"):
        raise InferenceError(f"{type(model).__name__} is not a transformers PreTrainedModel")
    attention.enable(model)
    try:
        blocks_path, no_list = find_blocks(model), None
        n = len(model.get_submodule(blocks_path))
    except _NoBlockList as e:  # perhaps one shared layer module run once per layer (hooks.infer_shared)
        blocks_path, no_list = None, e
        n = _first_int(text_config(model), LAYER_KEYS)
    emb_mod = model.get_input_embeddings()
    emb_path = _path_of(model, emb_mod)
    out_mod = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_path = _path_of(model, out_mod)
    paths = [p for p, _ in model.named_modules() if p and not any(
        s in part for part in p.lower().split(".") for s in SKIP_TOWERS)]
    ids = probe_ids(model)
    was_training = model.training
    model.eval()
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    try:
        try:
            rec = record(model, paths, inputs)
        except Exception:  # noqa: BLE001 - explicit attention may not fit this model: record without the probe
            rec = record(model, paths, inputs, probe=False)
    finally:
        model.train(was_training)
    recs = rec.recs
    nh = n_heads_of(model)
    if no_list is not None:
        found = find_shared_blocks(recs, n, emb_path)
        if found is None:
            raise InferenceError(f"{no_list}, and no module runs {n} times feeding its own output back in "
                                 "(a layer shared across layers)")
        blocks_path, shared = found
        ne = _first_int(text_config(model), EXPERT_KEYS)
        plans = per_call_plans([(analyse_block(p, recs, nh, n_experts=ne), k) for p, k in shared], recs,
                               scope_of(shared[0][0], recs))
        members, bounds, last_rec = None, [recs[shared[0][0]]], last_call(recs[shared[-1][0]])
    else:
        again = [L for L in range(n) if recs[f"{blocks_path}.{L}"].calls > 1]
        if again:  # e.g. ALBERT with inner_group_num > 1: each of these modules is several layers, interleaved
            raise InferenceError(
                f"the blocks of {blocks_path} run more than once per forward (block {again[0]}: "
                f"{recs[f'{blocks_path}.{again[0]}'].calls} calls), so its {n} modules are not the config's {n} "
                "layers; module hooks would mix their calls")
        plans, members = _plans(model, blocks_path, n, recs, nh)
        bounds = [recs[m[0]] for m in members] if members else [recs[f"{blocks_path}.{L}"] for L in range(n)]
        last_rec = recs[members[-1][-1]] if members else bounds[-1]
        # (a block run once per layer is hooked per call: path hooks could not tell its layers apart)
        _check_inplace_resid_mid(model, blocks_path, plans, inputs)
    hs_key = _hidden_key(rec.output, bounds[0], n)
    hs = hidden_states_of(rec.output, hs_key) if hs_key else None
    sites: dict = {}
    absent: dict = {}
    vlm = hasattr(model.config, "vision_config") or getattr(model.config, "image_token_id", None) is not None
    if emb_path is not None and recs.get(emb_path) is not None and recs[emb_path].calls == 1 and not vlm:
        sites["embed"] = Site(emb_path)
    else:
        sites["embed"] = plans[0].sites["resid_pre"]  # the (merged) sequence entering layer 0
    hs_last = hs[-1] if isinstance(hs, (tuple, list)) and len(hs) == n + 1 else None
    fin = _final_norm(model, recs, blocks_path.rpartition(".")[0] if members else blocks_path, last_rec, hs_last)
    if fin is not None:
        sites["final"] = Site(fin.path)
    else:
        absent["final"] = "no final norm: the last block's output is the final hidden state"
    out_path = _logits_module(recs, out_path, getattr(rec.output, "logits", None))
    if out_path is not None and recs.get(out_path) is not None and recs[out_path].calls >= 1:
        sites["logits"] = Site(out_path)
    else:
        absent["logits"] = "the model has no output embedding (a base model)"
    probed_any = any(r.attn_calls > 0 for r in recs.values())
    pos, explicit_ok = _position_and_attention_policy(model, inputs, rec.output, probed_any)
    can_gen = bool(getattr(model, "can_generate", lambda: False)())
    # encoders are padded on the right and keep their own positions: position ids computed from the mask
    # would move the padding's positions, which leaks into real tokens where padding is not masked (FNet, ConvBERT)
    pos = pos and can_gen
    offset = _token_offsets(sites, plans, recs, bounds[0], hs[0] if isinstance(hs, (tuple, list)) and hs else None)
    for L, pl in enumerate(plans):
        if not explicit_ok:
            for k in ("attn_scores", "attn_pattern"):
                if pl.sites.pop(k, None) is not None:
                    pl.absent[k] = ("hooks.attention's explicit attention does not reproduce this model's attention "
                                    "(checked on the recording forward): capture/knockout would change the model")
        for k, why in pl.absent.items():
            absent[f"{k}.{L}"] = why
    comp = [pl.composition for pl in plans]
    kinds = sorted({c for c in comp})
    extra_vlm: dict = {}
    spans = None
    if vlm:  # processor batches and pixel values through the VLM backend; spans from the config's token ids
        from .adapters import _vlm, vlm_spans

        extra_vlm = {"backend": _vlm}
        spans = vlm_spans.spans  # the family's image/boi/eoi/text ids: hooks/adapters/vlm_spans.py's table
    _time_first_layouts(sites, plans, recs, tuple(ids.shape))
    return Adapter(
        name=name or f"inferred:{model.config.model_type}",
        layers=blocks_path,
        sites=sites,
        model_types=(model.config.model_type,),
        attention_backend="hf",
        n_heads=lambda m, nh=nh: nh,
        padding_side=None if can_gen else "right",
        position_ids=pos,
        notes=f"inferred from the module tree ({', '.join(kinds)} blocks)",
        spans=spans,
        extra={**extra_vlm, "layer_sites": [pl.sites for pl in plans], "absent": absent, "composition": comp,
               "norms": [pl.norms for pl in plans], "inferred": True, "hidden_states": hs_key,
               "shared_block": no_list is not None, "token_offset": offset,
               # the recording forward ran every probed attention through hooks.attention's explicit path:
               # hooks.verify compares its last hidden state with the stock forward's on the same ids
               "explicit_reference": (ids.detach().cpu(), hs[-1].detach().cpu())
               if probed_any and isinstance(hs, (tuple, list)) and hs else None},
    )
