"""ESM-2 through fair-esm (``esm.model.esm2.ESM2``): time-first pre-LN blocks ``layers``.

    model = hooks.load("esm2_t6_8M_UR50D.pt")          # local checkpoint (weights_only=True)
    model = hooks.load("esm:esm2_t6_8M_UR50D")         # from the torch hub cache, no download
    model = hooks.wrap(esm_model, alphabet)            # an already-built ESM2
    res = model.run(["MKTAYIAKQR", "GSHM"], [hooks.Cache("resid_post.*", positions="residues")])
    res.cache["resid_post.3"].shape                    # (14, d_model): residues only, CLS/EOS/pad dropped

Inputs: protein strings (tokenised with the alphabet's batch converter: ``<cls> seq <eos>``,
padded on the right), ``(label, sequence)`` pairs, a LongTensor of tokens, a list of token rows
(1-D tensors or id lists, padded here) or ``{"tokens" | "input_ids": ...}``. Spans: ``"cls"``, ``"eos"``, ``"residues"`` (real tokens that
are neither CLS nor EOS; ``<mask>`` counts as a residue). ``token("K")`` selects residues by letter.

Sites (fair-esm layers run in (T, B, E) layout and return ``(x, attn)``):

- ``embed`` is what enters layer 0: ESM2.forward rescales the token embedding by
  ``0.88 / (1 - observed mask ratio)`` (token dropout) and zeroes padding *after*
  ``embed_tokens``, so the ``embed_tokens`` output is not what the blocks see. ``embed`` is
  therefore the input of ``layers.0`` — the same tensor as ``resid_pre.0`` and as fair-esm's
  ``representations[0]``. (Editing one and reading the other in one trace: hooks run in the
  order you declared them.)
- ``resid_post.L`` is fair-esm's ``representations[L + 1]`` except for the last layer, where
  fair-esm returns the *final-normed* state: ``representations[num_layers]`` is ``final``.
- ``head_out.L`` is the input of ``self_attn.out_proj`` split into heads (B×P×H×D).
- ``attn_scores.L`` / ``attn_pattern.L`` (B×H×Q×K, scaled and rotary-applied, padding keys at
  ``finfo.min`` instead of fair-esm's ``-inf``; softmax is unchanged).

Attention: fair-esm computes attention in Python (its ``F.multi_head_attention_forward`` fast
path needs ``rot_emb is None``, which never holds for ESM-2), but exposes no point between the
softmax and the value product. When wrapped, every ``layers.L.self_attn`` instance gets an
instance-level ``forward`` (the class is untouched) that calls the original unless a trace has
registered a handler for that module in :mod:`hooks.attention`; then it reuses fair-esm's own
projections/rotary/masking (``before_softmax=True``) and finishes the softmax and value product
here, with the handlers reading or replacing scores and pattern. Numerically identical when no
handler is registered; :func:`remove_attention_dispatch` restores the modules.
"""
from __future__ import annotations

import argparse
import pickle
import types
from pathlib import Path

import torch

from .. import attention
from ..errors import AttentionNotSupportedError, HookError, UnsupportedModelError
from .base import Adapter, Site

PAD = 1  # ESM-2 always uses the "ESM-1b" alphabet: <cls>=0 <pad>=1 <eos>=2 <unk>=3 ... <mask>=32
_DISPATCH_FLAG = "_interp_attention_dispatch"


# -- attention dispatch (per instance, reversible) ---------------------------------
def _dispatch_forward(self, query, key=None, value=None, key_padding_mask=None, incremental_state=None,
                      need_weights=True, static_kv=False, attn_mask=None, before_softmax=False,
                      need_head_weights=False):
    orig = type(self).forward
    handlers = attention.handlers_for(self)
    if not handlers or before_softmax:
        return orig(self, query, key, value, key_padding_mask=key_padding_mask, incremental_state=incremental_state,
                    need_weights=need_weights, static_kv=static_kv, attn_mask=attn_mask,
                    before_softmax=before_softmax, need_head_weights=need_head_weights)
    if incremental_state is not None or static_kv:
        raise AttentionNotSupportedError("fair-esm attention capture/knockout does not support incremental decoding state.")
    handlers = list(handlers)
    tgt_len, bsz, embed_dim = query.shape
    H = self.num_heads
    # need_head_weights=True keeps fair-esm off its fused fast path, so before_softmax is honoured.
    scores, v = orig(self, query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                     attn_mask=attn_mask, before_softmax=True, need_head_weights=True)
    src_len = scores.shape[-1]
    scores = scores.view(bsz, H, tgt_len, src_len).clamp(min=torch.finfo(scores.dtype).min)
    for h in handlers:
        out = h("scores", scores)
        if out is not None:
            scores = out
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
    for h in handlers:
        out = h("pattern", weights)
        if out is not None:
            weights = out
    probs = torch.nn.functional.dropout(weights, p=self.dropout, training=self.training)
    attn = torch.bmm(probs.reshape(bsz * H, tgt_len, src_len), v)
    attn = self.out_proj(attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim))
    w = None
    if need_weights or need_head_weights:
        w = weights.type_as(attn).transpose(1, 0)  # (H, B, T, S) as fair-esm returns it
        if not need_head_weights:
            w = w.mean(dim=0)
    return attn, w


def install_attention_dispatch(model: torch.nn.Module) -> None:
    """Give each ``layers.L.self_attn`` of ``model`` the dispatching forward (idempotent)."""
    for layer in model.layers:
        mod = layer.self_attn
        if not mod.__dict__.get(_DISPATCH_FLAG):
            mod.forward = types.MethodType(_dispatch_forward, mod)
            mod.__dict__[_DISPATCH_FLAG] = True


def remove_attention_dispatch(model: torch.nn.Module) -> None:
    """Undo :func:`install_attention_dispatch` (the class forward applies again)."""
    for layer in model.layers:
        mod = layer.self_attn
        if mod.__dict__.pop(_DISPATCH_FLAG, False):
            mod.__dict__.pop("forward", None)


def _setup(model) -> None:
    """Runs once per wrap (``Adapter.extra["setup"]``)."""
    if getattr(model, "padding_idx", PAD) != PAD:
        raise UnsupportedModelError(
            f"fair-esm adapter expects the ESM-2 alphabet (padding_idx={PAD}); this model has "
            f"padding_idx={model.padding_idx}."
        )
    install_attention_dispatch(model)


# -- alphabet as a (minimal) tokenizer ------------------------------------------------
class EsmTokenizer:
    """The bits of a tokenizer the hook registry uses, over a fair-esm ``Alphabet``."""

    padding_side = "right"
    unk_token = "<unk>"

    def __init__(self, alphabet):
        self.alphabet = alphabet
        self.pad_token_id = alphabet.padding_idx
        self.cls_token_id = alphabet.cls_idx
        self.eos_token_id = alphabet.eos_idx
        self.mask_token_id = alphabet.mask_idx
        self.unk_token_id = alphabet.unk_idx

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.alphabet.get_idx(tokens)
        return [self.alphabet.get_idx(t) for t in tokens]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        special = {self.pad_token_id, self.cls_token_id, self.eos_token_id}
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return "".join(self.alphabet.get_tok(i) for i in ids if not (skip_special_tokens and i in special))

    def batch_decode(self, rows, skip_special_tokens: bool = False) -> list:
        return [self.decode(r, skip_special_tokens) for r in rows]

    def __repr__(self):
        return f"EsmTokenizer(vocab={len(self.alphabet)})"


def _alphabet(hm):
    tok = hm.tokenizer
    if isinstance(tok, EsmTokenizer):
        return tok.alphabet
    if tok is not None and hasattr(tok, "get_batch_converter"):
        return tok
    return hm.model.alphabet


def _tokenizer(hm) -> EsmTokenizer:
    if not isinstance(hm.tokenizer, EsmTokenizer):  # a raw Alphabet (or none) was given to wrap()
        hm.tokenizer = EsmTokenizer(_alphabet(hm))
    return hm.tokenizer


def esm_spans(hm, ids, am):
    alph = _alphabet(hm)
    is_cls, is_eos = (ids == alph.cls_idx) & am, (ids == alph.eos_idx) & am
    return {"cls": is_cls, "eos": is_eos, "residues": am & ~is_cls & ~is_eos}


# -- backend -----------------------------------------------------------------------------
def prepare(hm, batch, *, prepend_bos=None) -> dict:
    """Sequences / (label, seq) pairs / tokens -> ``{"input_ids", "attention_mask"}`` on the model's device.

    The alphabet always writes ``<cls>`` first (ESM's BOS, position 0): ``prepend_bos`` is accepted
    for a backend-independent call signature and must not be False."""
    if prepend_bos is False:
        raise HookError("fair-esm sequences always start with <cls> (ESM's BOS); prepend_bos=False cannot apply.")
    alph = _tokenizer(hm).alphabet
    if isinstance(batch, str):
        batch = [batch]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(s, str) for s in batch):
        batch = [(str(i), s) for i, s in enumerate(batch)]
    if isinstance(batch, (list, tuple)) and batch and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[1], str) for p in batch
    ):
        _, _, tokens = alph.get_batch_converter()(list(batch))
    elif _token_rows(batch):  # already tokenised rows (with <cls>/<eos>), padded here on the right
        rows = [torch.as_tensor(b, dtype=torch.long) for b in batch]
        tokens = torch.full((len(rows), max(len(r) for r in rows)), alph.padding_idx, dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
    elif isinstance(batch, torch.Tensor):
        tokens = batch if batch.dim() == 2 else batch[None]
    elif isinstance(batch, dict) or hasattr(batch, "keys"):
        tokens = batch.get("tokens", batch.get("input_ids"))
        if not isinstance(tokens, torch.Tensor):
            raise HookError(f"fair-esm batches given as a dict need 'tokens' or 'input_ids'; got keys {sorted(batch)}.")
        am = batch.get("attention_mask")
        if am is not None and not torch.equal(am.bool().cpu(), tokens.ne(alph.padding_idx).cpu()):
            raise HookError("fair-esm masks padding by token (tokens != <pad>); the given attention_mask disagrees.")
    else:
        raise HookError(
            f"Cannot use a {type(batch).__name__} as a fair-esm batch; pass protein strings, (label, sequence) "
            "pairs, a (B, L) LongTensor of tokens or {'tokens': ...}."
        )
    if tokens.is_floating_point() or tokens.dim() != 2:
        raise HookError(f"fair-esm tokens must be a (B, L) integer tensor, got {tuple(tokens.shape)} {tokens.dtype}.")
    tokens = tokens.to(hm.device)
    return {"input_ids": tokens, "attention_mask": tokens.ne(alph.padding_idx)}


def _token_rows(batch) -> bool:
    return isinstance(batch, (list, tuple)) and bool(batch) and all(
        (isinstance(b, torch.Tensor) and b.dim() == 1)
        or (isinstance(b, (list, tuple)) and all(isinstance(i, int) for i in b)) for b in batch)


def forward(hm, inputs: dict, **kw):
    """``model(tokens, **kw)``: fair-esm returns ``{"logits", "representations", ...}``."""
    return hm.model(inputs["input_ids"], **kw)


def call_inputs(args, kwargs):
    tokens = args[0] if args else kwargs.get("tokens")
    if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.dim() != 2:
        return None, None, None
    return tokens, tokens.ne(PAD), tuple(tokens.shape)


def logits_of(output):
    if isinstance(output, dict):
        return output.get("logits")
    return output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)


BACKEND = types.SimpleNamespace(prepare=prepare, forward=forward, call_inputs=call_inputs, logits_of=logits_of)


def _no_generate(hm, batch, interventions=(), **kw):
    raise HookError("ESM-2 is a masked language model and cannot generate; use model.run(...) and read the "
                    "logits (e.g. at <mask> positions).")


ADAPTER = Adapter(
    name="fair_esm",
    class_names=("ESM2",),
    bases=("",),
    layers="layers",
    sites={
        "embed": Site("layers.0", kind="input", layout="PBD"),
        "resid_pre": Site("layers.{L}", kind="input", layout="PBD"),
        "attn_scores": Site("layers.{L}.self_attn", kind="attn", layout="attn"),
        "attn_pattern": Site("layers.{L}.self_attn", kind="attn", layout="attn"),
        "head_out": Site("layers.{L}.self_attn.out_proj", kind="input", layout="heads_PBD"),
        "attn_out": Site("layers.{L}.self_attn", layout="PBD"),
        "resid_mid": Site("layers.{L}.final_layer_norm", kind="input", layout="PBD", inplace=True),
        "mlp_out": Site("layers.{L}.fc2", layout="PBD"),
        "resid_post": Site("layers.{L}", layout="PBD"),
        "final": Site("emb_layer_norm_after", layout="PBD"),
        "logits": Site("lm_head", optional=True),
    },
    attention_backend="fair_esm",
    n_heads=lambda m: m.attention_heads,
    padding_side="right",
    position_ids=False,
    spans=esm_spans,
    extra={"backend": BACKEND, "setup": _setup, "generate": _no_generate, "dummy_batch": lambda hm: ["MKTAYIAK"]},
)


# -- loading -------------------------------------------------------------------------------
def _torch_load(path: Path, unsafe_allow_pickle: bool):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if unsafe_allow_pickle:
            return torch.load(str(path), map_location="cpu", weights_only=False)
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), str(e).splitlines()[0])
        raise HookError(
            f"{path} holds Python objects that weights-only loading refuses ({detail}). Only if you trust the "
            "file, load it with hooks.adapters.fair_esm.load_fair_esm(path, unsafe_allow_pickle=True), which "
            "runs arbitrary pickle code."
        ) from None


def _checkpoint_path(name_or_path) -> Path:
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    if p.suffix == ".pt" or len(p.parts) > 1:
        raise HookError(f"fair-esm checkpoint {str(p)!r} does not exist.")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"{p.name}.pt"
    if not cached.exists():
        raise HookError(
            f"fair-esm model {p.name!r} is not in the torch hub cache ({cached}) and nothing is downloaded. Put "
            f"https://dl.fbaipublicfiles.com/fair-esm/models/{p.name}.pt (and regression/{p.name}-contact-regression.pt) "
            "there, or pass a local .pt path."
        )
    return cached


def load_fair_esm(name_or_path, device=None, *, unsafe_allow_pickle: bool = False):
    """Load a fair-esm ESM-2 checkpoint (local ``.pt`` or a name in the torch hub cache) as a HookedModel.

    Reads with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` (which the
    official files hold); the contact-regression file next to it is used when present.
    ``unsafe_allow_pickle=True`` falls back to full unpickling — only for files you trust.
    """
    import esm.pretrained

    from ..wrapping import wrap

    path = _checkpoint_path(name_or_path)
    data = _torch_load(path, unsafe_allow_pickle)
    if not isinstance(data, dict) or "model" not in data:
        raise HookError(f"{path} is not a fair-esm checkpoint (expected a dict with 'model' and 'cfg'/'args').")
    reg_path = path.with_name(f"{path.stem}-contact-regression.pt")
    reg = _torch_load(reg_path, unsafe_allow_pickle) if reg_path.exists() else None
    name = path.stem
    if not name.startswith("esm2") and data.get("cfg") is not None and getattr(data.get("args"), "arch", None) is None:
        name = f"esm2_{name}"  # ESM-2 format under another file name: fair-esm dispatches on the name
    model, alphabet = esm.pretrained.load_model_and_alphabet_core(name, data, reg)
    model.eval()
    if device is not None:
        model.to(device)
    return wrap(model, EsmTokenizer(alphabet))
