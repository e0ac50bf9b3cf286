"""The load-time self-check: every residual site is proven against the model's own outputs.

``hooks.wrap``/``hooks.load`` call :func:`self_check` by default (``verify=False`` skips it).
It runs ONE forward on a few tokens with every residual site cached and
``output_hidden_states=True``, then checks

* ``resid_pre.0 == hidden_states[0]``, ``resid_post.L == hidden_states[L+1]`` (the last layer:
  ``resid_post`` or ``final`` equals ``hidden_states[-1]``) and ``resid_pre.L == resid_post.L-1``;
* the block's composition (``adapter.extra["composition"]``, default sequential):
  sequential ``resid_mid == resid_pre + attn_out`` and ``resid_post == resid_mid + mlp_out``;
  parallel ``resid_post == resid_pre + attn_out + mlp_out``; post-norm
  ``resid_mid == LN1(resid_pre + attn_out)`` and ``resid_post == LN2(resid_mid + mlp_out)``;
  hybrid layers ``resid_mid == resid_pre + mixer_out``.

A site that fails is removed from the model's table with a :class:`SiteCheckWarning` naming it
and why (``model.site_report`` keeps the reasons; asking for the site later raises an error
that repeats it): never silently wrong. Comparisons allow a few ulps of the model's dtype.

    hm = hooks.wrap(model)                  # checked
    hm.site_report                          # {"removed": {...}, "absent": {...}, "checked": 37}
"""
from __future__ import annotations

import warnings

import torch

from .recording import first_output, hidden_states_of, restoring_capture_hooks


class SiteCheckWarning(UserWarning):
    """A canonical site failed the load-time self-check and was removed."""


def _tol(t: torch.Tensor) -> float:
    eps = torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0
    return max(eps, 1.2e-7) * 16


def same(a, b) -> bool:
    """Equal up to a few ulps of the tensors' dtype, relative to their scale."""
    if a is None or b is None or tuple(a.shape) != tuple(b.shape):
        return False
    a32, b32 = a.detach().float(), b.detach().float()
    scale = max(float(b32.abs().max()), float(a32.abs().max()), 1e-6)
    return bool(((a32 - b32).abs() <= _tol(a) * scale).all())


def close_rel(a, b, tol) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(b.abs().max()), 1e-6)
    return bool(((a.float() - b.float()).abs() <= tol * scale).all())


def normalised(x, h) -> bool:
    """``h`` is ``x`` normalised per position (RMS or layer norm without parameters, any eps)."""
    if x is None or h is None or x.shape != h.shape:
        return False
    x32, h32 = x.detach().float(), h.detach().float()
    for a in (x32, x32 - x32.mean(-1, keepdim=True)):
        cos = torch.nn.functional.cosine_similarity(a, h32, dim=-1)
        if bool((cos > 1 - 1e-5).all()):
            return True
    return False


def _as_sequence(norm):
    """``norm`` applied to real-token rows ``(N, D)`` of a padded batch as one ``(1, N, D)`` sequence
    (I-BERT's integer layer norm reduces over axis 2), or to a ``(B, P, D)`` tensor as it is."""
    def call(t):
        return first_output(norm(t[None])).squeeze(0) if t.dim() == 2 else first_output(norm(t))
    return call


def _batch(hm):
    dummy = hm.adapter.extra.get("dummy_batch")
    if dummy is not None:
        return dummy(hm)
    from .recording import probe_ids

    return probe_ids(hm.model, n=5)


def _hf_like(hm) -> bool:
    from . import hf_backend

    mod = getattr(hm.backend, "__name__", "")
    return hm.backend is hf_backend or mod.endswith("_vlm") or (
        getattr(hm.model, "config", None) is not None and hasattr(hm.model, "get_input_embeddings")
        and hm.adapter.attention_backend == "hf")


def self_check(hm, *, warn: bool = True, batch=None) -> dict:
    """Check the residual sites of ``hm`` on one forward; remove the failing ones (with a warning).

    ``batch``: what to run (default: a few ordinary token ids, or the adapter's dummy batch)."""
    from .interventions import Cache
    from .sites import SiteTable

    table = hm._table
    kinds = ("embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mixer_out", "final")
    names = [k for k in table if k.split(".")[0] in kinds]
    # (HookedModel drops attention bindings into a plain dict when attention is unreachable: keep the reasons)
    absent0 = {**(hm.adapter.extra.get("absent") or {}), **getattr(table, "absent", {})}
    report = {"removed": {}, "absent": absent0, "checked": 0, "skipped": None}
    if not names:
        report["skipped"] = "no residual sites"
        hm._table = SiteTable(table, absent=absent0)
        hm.site_report = report
        return report
    kw = {"output_hidden_states": True} if _hf_like(hm) else {}
    try:
        with restoring_capture_hooks(hm.model):
            res = hm.run(_batch(hm) if batch is None else batch, [Cache(names, "all", layout="padded")], **kw)
    except Exception as e:  # noqa: BLE001 - report, never hide
        report["skipped"] = f"the self-check forward failed: {type(e).__name__}: {e}"
        hm._table = SiteTable(table, absent=absent0)
        if warn:
            warnings.warn(f"hooks: could not run the site self-check ({report['skipped']}); sites are unverified. "
                          "Pass verify=False to skip it.", SiteCheckWarning, stacklevel=3)
        hm.site_report = report
        return report
    c = res.cache
    real = batch.get("attention_mask") if isinstance(batch, dict) else None
    if isinstance(real, torch.Tensor) and real.dim() == 2 and not bool(real.all()):
        # a padded batch: compare at real tokens only (padding rows are the model's business, e.g. XLM
        # zeroes them after each layer while its layer norm's output does not)
        real = real.bool()
        c = {k: (v[real.to(v.device)] if v.shape[:2] == real.shape else v) for k, v in c.items()}
    else:
        real = None
    hs = hidden_states_of(res.output, hm.adapter.extra.get("hidden_states") or "hidden_states") if kw else None
    if real is not None and isinstance(hs, (tuple, list)):
        hs = [h[real.to(h.device)] if h.shape[:2] == real.shape else h for h in hs]
    n = hm.n_layers
    bad: dict = {}

    def fail(name, why):
        if name in table and name not in bad:
            bad[name] = why

    def get(name):
        return c.get(name)

    # 1. the residual stream against output_hidden_states
    if isinstance(hs, (tuple, list)) and len(hs) == n + 1:
        # most models return (embeddings, block outputs...); some (Mamba) return (block outputs..., final norm)
        shift = 0
        if get("resid_pre.0") is not None and not same(get("resid_pre.0"), hs[0]) and all(
                get(f"resid_post.{L}") is not None and same(get(f"resid_post.{L}"), hs[L]) for L in range(n)):
            shift = 1
            report["hidden_states"] = "the model's hidden_states start at the first block's output"
        if not shift and get("resid_pre.0") is not None and not same(get("resid_pre.0"), hs[0]):
            fail("resid_pre.0", "differs from output_hidden_states[0] (the input of the first block)")
        for L in range(n):
            r = get(f"resid_post.{L}")
            if r is None:
                continue
            if L < n - 1 and not same(r, hs[L + 1 - shift]):
                fail(f"resid_post.{L}", f"differs from output_hidden_states[{L + 1 - shift}]")
            report["checked"] += 1
        last, fin = get(f"resid_post.{n - 1}"), get("final")
        if not (same(last, hs[n]) or same(fin, hs[n])):
            if last is not None and fin is None and normalised(last, hs[n]):
                report["hidden_states"] = f"output_hidden_states[{n}] is a parameter-free norm of resid_post.{n - 1}"
            elif last is not None and fin is None:
                fail(f"resid_post.{n - 1}", f"differs from output_hidden_states[{n}]")
            elif fin is not None:
                fail("final", f"differs from output_hidden_states[{n}] (and so does resid_post.{n - 1})")
    elif kw:
        report["hidden_states"] = f"the model returned {0 if hs is None else len(hs)} hidden states for {n} layers"
    for L in range(1, n):
        a, b = get(f"resid_pre.{L}"), get(f"resid_post.{L - 1}")
        if a is not None and b is not None and f"resid_post.{L - 1}" not in bad and not same(a, b):
            fail(f"resid_pre.{L}", f"differs from resid_post.{L - 1} (the previous block's output)")

    # 1b. attention sites: hooks.attention's explicit path must reproduce the model's own attention
    ref = hm.adapter.extra.get("explicit_reference")
    if ref is not None and batch is None and isinstance(hs, (tuple, list)) and hs:
        ids, last = ref
        inp = res.inputs.get("input_ids") if isinstance(res.inputs, dict) else None
        if inp is not None and torch.equal(inp.cpu(), ids) and not close_rel(hs[-1].cpu(), last, 1e-4):
            err = float((hs[-1].cpu().float() - last.float()).abs().max())
            for k in [k for k in table if k.split(".")[0] in ("attn_scores", "attn_pattern")]:
                fail(k, "hooks.attention's explicit attention does not reproduce this model's attention "
                        f"(max |Δ| of the last hidden state {err:.1e}); capture/knockout would change the model")
    # 2. the block's own composition
    comp = hm.adapter.extra.get("composition")
    norms = hm.adapter.extra.get("norms")
    for L in range(n):
        kind = comp[L] if comp is not None else "sequential"
        pre, mid, post = get(f"resid_pre.{L}"), get(f"resid_mid.{L}"), get(f"resid_post.{L}")
        att, mlp, mix = get(f"attn_out.{L}"), get(f"mlp_out.{L}"), get(f"mixer_out.{L}")
        first = att if att is not None else mix
        first_name = f"attn_out.{L}" if att is not None else f"mixer_out.{L}"
        if pre is None or post is None:
            continue
        report["checked"] += 1
        if kind == "parallel":
            if first is not None and mlp is not None and not same(pre + first + mlp, post):
                why = "resid_pre + attn_out + mlp_out != resid_post (parallel block)"
                fail(first_name, why)
                fail(f"mlp_out.{L}", why)
        elif kind == "post_norm" and norms is not None and len(norms[L]) == 2:
            n1, n2 = (_as_sequence(hm.model.get_submodule(p)) for p in norms[L])
            try:
                with torch.no_grad():
                    if first is not None and mid is not None and not same(n1(pre + first), mid):
                        fail(first_name, f"LN1(resid_pre + attn_out) != resid_mid ({norms[L][0]})")
                    if mlp is not None and mid is not None and not same(n2(mid + mlp), post):
                        fail(f"mlp_out.{L}", f"LN2(resid_mid + mlp_out) != resid_post ({norms[L][1]})")
            except Exception as e:  # noqa: BLE001 - a norm that cannot be called alone: unproven, so removed
                for k in (first_name, f"mlp_out.{L}"):
                    fail(k, f"post-norm composition could not be checked ({type(e).__name__}: {e})")
        elif kind in ("sequential", "single"):
            ok1 = mid is None or first is None or same(pre + first, mid)
            ok2 = mid is None or mlp is None or same(mid + mlp, post)
            if mid is None and first is not None and mlp is not None:
                if not same(pre + first + mlp, post):
                    fail(first_name, "resid_pre + attn_out + mlp_out != resid_post")
                    fail(f"mlp_out.{L}", "resid_pre + attn_out + mlp_out != resid_post")
            elif not ok1 and ok2:
                fail(first_name, f"resid_pre + {first_name.split('.')[0]} != resid_mid (while resid_mid + mlp_out == resid_post)")
            elif ok1 and not ok2:
                fail(f"mlp_out.{L}", "resid_mid + mlp_out != resid_post (while resid_pre + attn_out == resid_mid)")
            elif not ok1 and not ok2:
                if first is not None and mlp is not None and same(pre + first + mlp, post):
                    fail(f"resid_mid.{L}", "is not resid_pre + attn_out (attn_out + mlp_out do add up to resid_post)")
                else:
                    why = "resid_pre + attn_out != resid_mid and resid_mid + mlp_out != resid_post"
                    for k in (f"resid_mid.{L}", first_name, f"mlp_out.{L}"):
                        fail(k, why)
            if kind == "single" and mid is None and mlp is None and first is not None and not same(pre + first, post):
                fail(first_name, "resid_pre + mixer output != resid_post")

    if bad:
        absent = dict(report["absent"])
        absent.update({k: f"removed by the load-time self-check: {why}" for k, why in bad.items()})
        hm._table = SiteTable({k: v for k, v in table.items() if k not in bad}, absent=absent)
        hm._shapes = None
        report["removed"] = bad
        report["absent"] = absent
        if warn:
            lines = "; ".join(f"{k}: {why}" for k, why in bad.items())
            warnings.warn(f"hooks: {len(bad)} site(s) of {type(hm.model).__name__} failed the load-time self-check "
                          f"and were removed: {lines}", SiteCheckWarning, stacklevel=3)
    elif not isinstance(table, SiteTable):
        hm._table = SiteTable(table, absent=report["absent"])
    hm.site_report = report
    return report
