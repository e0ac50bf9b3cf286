"""Position selectors, resolved per batch row and correct under left and right padding.

A selector picks token positions in each row of a batch. Integer and slice selectors count
**real tokens** (those with ``attention_mask == 1``), so ``0`` is the first real token and
``-1`` the last one whatever the padding side; boolean masks are absolute ``(B, P)`` masks
over the padded batch. Accepted selectors::

    "all"                      every real token
    "last"                     last real token of each row (the newest token when generating)
    3, -2                      the 4th / second-to-last real token of each row
    slice(1, None), "1:"       real tokens 1.. (string slices also work in JSON/YAML)
    [0, 2, 5]                  those real-token indices in every row
    [[0, 2], [1]]              per-row real-token indices
    token("Answer"), token(42) positions holding that token (string or id)
    {"token": "Answer"}        the same, JSON/YAML form
    "image", "text", "boi", "eoi"    modality spans of VLM adapters ("video" where the family has
                                     one); a span the model lacks is an error saying why
                                     (hooks/adapters/vlm_spans.py)
    "residues", "cls", "eos"         ESM spans (residues = real tokens minus CLS/EOS)
    torch.BoolTensor (B, P)    absolute mask over the padded batch

Single-position selectors (an int, ``"last"``, ``"cls"``, ``"eos"``, ``"boi"``, ``"eoi"``)
select exactly one position per row; caches of them have shape ``(B, ...)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .errors import PositionError, SpecError

SINGLE_SPANS = ("cls", "eos", "boi", "eoi")
_SLICE_RE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?$")


@dataclass(frozen=True)
class token:  # noqa: N801 - reads like a selector keyword
    """Select the positions holding a token, given as a string or an id.

    A string matches every single-token form of it: the token itself, and the word with or
    without a leading space (``"dog"`` and ``" dog"`` are different GPT-2 tokens). A row where
    the token does not occur is an error naming the rows, unless ``missing="skip"`` (those
    rows then select nothing)::

        tr.cache("resid_post.3", positions=token("dog"))
        tr.cache("resid_post.3", positions=token("dog", missing="skip"))
    """

    value: Any
    missing: str = "error"

    def __post_init__(self):
        if self.missing not in ("error", "skip"):
            raise SpecError(f"token(..., missing={self.missing!r}): use 'error' (default) or 'skip'.")

    def to_json(self):
        return {"token": self.value} if self.missing == "error" else {"token": self.value, "missing": self.missing}


@dataclass
class BatchContext:
    """What position selectors need to know about the batch running now.

    ``attention_mask`` covers the whole sequence so far (``L`` positions); the activations
    being hooked cover the window ``[window_start, L)`` (the new token while generating).
    ``span_fn`` returns span masks (``"image"``, ``"residues"``, ...), each ``(B, L)``.
    """

    attention_mask: torch.Tensor  # (B, L) bool
    input_ids: Optional[torch.Tensor] = None  # (B, L) full ids when known
    window_start: int = 0
    prompt_len: Optional[int] = None  # padded prompt length while generating
    span_fn: Any = None  # () -> {name: (B, L) bool mask}, computed lazily
    tokenizer: Any = None
    memo: dict = None

    def __post_init__(self):
        self.memo = {}
        self._spans = None

    def get_spans(self) -> dict:
        if self._spans is None:
            self._spans = self.span_fn() if self.span_fn is not None else {}
        return self._spans

    @property
    def length(self) -> int:
        return self.attention_mask.shape[1]

    @property
    def batch_size(self) -> int:
        return self.attention_mask.shape[0]

    @property
    def generating(self) -> bool:
        return self.prompt_len is not None

    def unpadded(self) -> bool:
        """True when every position is a real token (no padding anywhere)."""
        u = self.memo.get("unpadded")
        if u is None:
            u = self.memo["unpadded"] = bool(self.attention_mask.all())
        return u

    def rank(self) -> torch.Tensor:
        """Index of each position among its row's real tokens (-1 at padding)."""
        m = self.attention_mask.long()
        return torch.where(self.attention_mask, m.cumsum(1) - 1, torch.full_like(m, -1))


def normalize(sel: Any) -> Any:
    """Turn JSON/YAML forms into Python selectors (``"1:3"`` → ``slice(1, 3)``)."""
    if isinstance(sel, str):
        m = _SLICE_RE.match(sel)
        if m:
            parts = [int(p) if p not in ("", None) else None for p in m.groups()]
            return slice(*parts)
        return sel
    if isinstance(sel, dict):
        if "token" in sel and set(sel) <= {"token", "missing"}:
            return token(sel["token"], sel.get("missing", "error"))
        if set(sel) == {"slice"}:
            return slice(*sel["slice"])
        raise SpecError(f"Unknown position selector {sel!r}; use {{'token': ...}} or {{'slice': [start, stop, step]}}.")
    if isinstance(sel, tuple):
        return list(sel)
    return sel


def to_json(sel: Any) -> Any:
    """JSON/YAML form of a selector (tensors are not serialisable)."""
    if isinstance(sel, slice):
        return {"slice": [sel.start, sel.stop, sel.step]}
    if isinstance(sel, token):
        return sel.to_json()
    if isinstance(sel, torch.Tensor):
        raise SpecError("A boolean-mask position selector cannot be written to JSON/YAML; use indices or spans.")
    return sel


def is_single(sel: Any) -> bool:
    """True when the selector picks exactly one position per row."""
    sel = normalize(sel)
    return (isinstance(sel, int) and not isinstance(sel, bool)) or sel == "last" or sel in SINGLE_SPANS


def _rank_select(ctx: BatchContext, wanted: torch.Tensor) -> torch.Tensor:
    """Mask of positions whose real-token rank equals ``wanted[b]`` (per row, -1 = none)."""
    return ctx.attention_mask & (ctx.rank() == wanted[:, None])


def _token_ids(value, tokenizer) -> set:
    """Every single-token id a token selector's value stands for (see :class:`token`)."""
    if not isinstance(value, str):
        return {int(value)}
    if tokenizer is None:
        raise SpecError(f"token({value!r}) needs a tokenizer; pass a token id instead.")
    unk = getattr(tokenizer, "unk_token_id", None)
    out = set()
    tid = tokenizer.convert_tokens_to_ids(value)
    if tid is not None and (unk is None or tid != unk or value == getattr(tokenizer, "unk_token", None)):
        out.add(int(tid))
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):
        for form in (value, " " + value.lstrip()):
            try:
                enc = encode(form, add_special_tokens=False)
            except Exception:  # noqa: BLE001 - a tokenizer that cannot encode: keep what we have
                continue
            if len(enc) == 1 and (unk is None or enc[0] != unk):
                out.add(int(enc[0]))
    if not out:
        raise SpecError(f"token({value!r}) is not a single token of this tokenizer (nor is {' ' + value!r}); "
                        "select a single token, or pass a token id or a mask.")
    return out


def resolve(sel: Any, ctx: BatchContext, *, check: bool = True) -> torch.Tensor:
    """Resolve a selector to a ``(B, L)`` boolean mask over the whole sequence.

    ``check=False`` skips range checks (used for decode steps, where the selected prompt
    position lies outside the current window and nothing is to be done).
    """
    sel = normalize(sel)
    am = ctx.attention_mask
    n_real = am.sum(1)
    B, L = am.shape
    if isinstance(sel, bool):
        raise SpecError("A position selector cannot be a bool; use 'all' or a mask.")
    if isinstance(sel, int):
        if check:
            for b in range(B):
                n = int(n_real[b])
                if not -n <= sel < n:
                    raise PositionError(
                        f"Position {sel} is out of range for batch row {b}, which has {n} real tokens "
                        f"(valid positions {-n}..{n - 1})."
                    )
        wanted = torch.where(torch.tensor(sel < 0), n_real + sel, torch.full_like(n_real, sel))
        return _rank_select(ctx, wanted)
    if isinstance(sel, str):
        if sel == "all":
            return am.clone()
        if sel == "last":
            if ctx.unpadded():
                out = torch.zeros_like(am)
                out[:, -1] = True
                return out
            return _rank_select(ctx, n_real - 1)
        spans = ctx.get_spans()
        if sel in spans:
            mask = spans[sel].to(am.device)
            if mask.shape[1] < L:  # generated tokens are text
                fill = sel == "text"
                mask = torch.cat([mask, am.new_full((B, L - mask.shape[1]), fill)], 1)
            mask = mask[:, :L] & am
            if check and sel in SINGLE_SPANS and ctx.window_start == 0:
                counts = mask.sum(1)
                for b in range(B):
                    if int(counts[b]) != 1:
                        raise PositionError(
                            f"Span {sel!r} should mark one position per row but marks {int(counts[b])} in row {b}; "
                            "check the input (one image per prompt, special tokens kept) or use a mask selector."
                        )
            return mask
        why = getattr(spans, "absent", {}).get(sel)
        if why:
            raise SpecError(f"positions={sel!r}: this model has no {sel!r} span: {why}.")
        known = ["all", "last", *sorted(spans)]
        raise SpecError(
            f"Unknown position selector {sel!r}. This model knows {known}; token strings need token('...'), "
            "slices are written 'start:stop'."
        )
    if isinstance(sel, slice):
        if sel.step is not None and sel.step <= 0:
            raise SpecError("Slice selectors need a positive step.")
        out = torch.zeros_like(am)
        rank = ctx.rank()
        for b in range(B):
            start, stop, step = sel.indices(int(n_real[b]))
            r = rank[b]
            out[b] = am[b] & (r >= start) & (r < stop) & ((r - start) % step == 0)
        return out
    if isinstance(sel, token):
        if ctx.input_ids is None:
            raise PositionError("token(...) selectors need input ids; this forward was called with embeddings only.")
        tids = _token_ids(sel.value, ctx.tokenizer)
        ids = ctx.input_ids.to(am.device)[:, :L]
        out = torch.zeros_like(am)
        for t in tids:
            out |= ids == int(t)
        out &= am
        if sel.missing == "error":
            absent = [b for b in range(B) if not bool(out[b].any())]
            if absent:
                raise PositionError(
                    f"token({sel.value!r}) does not occur in batch row(s) {absent} (token ids tried: {sorted(tids)}). "
                    f"Check the prompts, or use token({sel.value!r}, missing='skip') to select nothing in those rows."
                )
        return out
    if isinstance(sel, torch.Tensor):
        if sel.dtype != torch.bool or sel.dim() != 2:
            raise SpecError(f"A tensor selector must be a (batch, positions) bool mask, got {tuple(sel.shape)} {sel.dtype}.")
        if sel.shape[0] != B or sel.shape[1] > L:
            raise PositionError(f"Mask selector has shape {tuple(sel.shape)} but the batch is {B}×{L}.")
        mask = sel.to(am.device)
        if mask.shape[1] < L:
            mask = torch.cat([mask, mask.new_zeros(B, L - mask.shape[1])], 1)
        return mask & am
    if isinstance(sel, list):
        per_row = sel if sel and all(isinstance(s, (list, tuple)) for s in sel) else [sel] * B
        if len(per_row) != B:
            raise PositionError(f"Per-row position lists have {len(per_row)} rows but the batch has {B}.")
        out = torch.zeros_like(am)
        rank = ctx.rank()
        for b, idx in enumerate(per_row):
            n = int(n_real[b])
            for i in idx:
                if not -n <= int(i) < n:
                    if check:
                        raise PositionError(
                            f"Position {i} is out of range for batch row {b}, which has {n} real tokens "
                            f"(valid positions {-n}..{n - 1})."
                        )
                    continue
                out[b] |= am[b] & (rank[b] == (int(i) % n))
        return out
    raise SpecError(f"Cannot use {sel!r} ({type(sel).__name__}) as a position selector; see hooks.positions.")


def window(mask: torch.Tensor, ctx: BatchContext, apply_to: str = "all") -> torch.Tensor:
    """Restrict a full-sequence mask to the current window and the generation phase.

    ``apply_to``: ``"all"`` (prompt and generated tokens), ``"prompt"`` (prompt positions
    only) or ``"new"`` (generated tokens only). Outside generation everything is prompt.
    """
    if apply_to not in ("all", "prompt", "new"):
        raise SpecError(f"apply_to must be 'all', 'prompt' or 'new', got {apply_to!r}.")
    if apply_to != "all":
        pl = ctx.prompt_len if ctx.prompt_len is not None else ctx.length
        pos = torch.arange(ctx.length, device=mask.device)
        keep = pos < pl if apply_to == "prompt" else pos >= pl
        mask = mask & keep
    return mask[:, ctx.window_start:]
