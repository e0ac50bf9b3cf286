"""ESM-2 through transformers (``EsmForMaskedLM`` / ``EsmModel``), pre-LN blocks.

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


ADAPTER = Adapter(
    name="esm",
    model_types=("esm",),
    bases=("esm", ""),
    layers="encoder.layer",
    sites={
        "embed": Site("embeddings"),
        "resid_pre": Site("encoder.layer.{L}", kind="input"),
        "attn_scores": Site("encoder.layer.{L}.attention.self", kind="attn", layout="attn"),
        "attn_pattern": Site("encoder.layer.{L}.attention.self", kind="attn", layout="attn"),
        "head_out": Site("encoder.layer.{L}.attention.output.dense", kind="input", layout="heads"),
        "attn_out": Site("encoder.layer.{L}.attention.output.dense"),
        "resid_mid": Site("encoder.layer.{L}.LayerNorm", kind="input", inplace=True),
        "mlp_out": Site("encoder.layer.{L}.output.dense"),
        "resid_post": Site("encoder.layer.{L}"),
        "final": Site("encoder.emb_layer_norm_after"),
        "logits": Site("/lm_head", optional=True),
    },
    attention_backend="hf",
    padding_side="right",
    position_ids=False,
    spans=esm_spans,
)
