"""Circuit discovery by patching: batched activation-patching sweeps, attribution patching
and path patching, with one tidy output schema (``site, layer, head, position, effect``).

    from interp.patching import activation_patching, attribution_patching
    df = activation_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                             answers=ans, distractors=dis)            # metric="logit_diff"
    atp = attribution_patching(model, clean, corrupt, sites="head_out", by="layer,head",
                               answers=ans, distractors=dis)
    heatmaps(df, "out/")                                              # labelled PNGs

Shell: ``interp sweep --model M --data pairs.jsonl --sites attn_out --by layer,head --out DIR``.
"""
from .common import prepare_pairs, str_tokens
from .sweep import COLUMNS, activation_patching, sweep

__all__ = ["activation_patching", "sweep", "prepare_pairs", "str_tokens", "COLUMNS"]
