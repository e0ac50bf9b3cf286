"""ESM-2 through transformers (``EsmForMaskedLM`` / ``EsmModel``): a thin override on the inferred table.

Token layout: ``<cls> residues... <eos> <pad>...``, padded on the right (rotary positions
count from the first token). Spans: ``"cls"``, ``"eos"``, ``"residues"`` (real tokens that
are neither CLS nor EOS — masked residues count as residues).
"""
from .base import Adapter, Site

CLS, PAD, EOS = 0, 1, 2  # ESM-2 vocabulary


def esm_spans(hm, ids, am):
    tok = hm.tokenizer
    cls = getattr(tok, "cls_token_id", None) if tok is not None else None
    eos = getattr(tok, "eos_token_id", None) if tok is not None else None
    cls = CLS if cls is None else cls
    eos = EOS if eos is None else eos
    is_cls, is_eos = (ids == cls) & am, (ids == eos) & am
    return {"cls": is_cls, "eos": is_eos, "residues": am & ~is_cls & ~is_eos}


# Inference (hooks.infer) finds ESM-2's pre-LN blocks, attention, MLP, final norm and LM head (the
# table is the one this file spelled out before; tests/hooks/test_inference.py checks it). What it
# cannot know: the stream entering layer 0 is ``embeddings`` (token dropout rescaling) rather than the
# word embedding alone, and which tokens are CLS/EOS.
ADAPTER = Adapter(
    name="esm",
    model_types=("esm",),
    bases=("esm", ""),
    layers="encoder.layer",
    sites={"embed": Site("embeddings")},
    spans=esm_spans,
    extends_inferred=True,  # (inference also gives right padding and no position ids: ESM cannot generate)
)
