"""Cross-modal attention flow and gate detection (Serra et al. 2025, Sec. 4.1).

The authors' definition (RitAreaSciencePark/Narrow-gate ``paper_experiments/Fig3_CrossAttention.py``:
``cross_attention_patterns`` + ``plot_cross_attention``, on the dataset-mean pattern of
``src/activations.py::extract_cache(extract_avg_pattern=True)``): for layer ``l`` and key ``j``,
the attention text queries after the image pay to ``j``, averaged over text queries, summed
over heads and averaged over the dataset,

    R^l_j = mean_examples (1/|H|) Σ_h mean_{i ∈ text} A^{l,h}_{ij},

then normalised over the *flow keys* (image tokens, in-block specials such as Pixtral's
``[IMG_BREAK]``, and ``[EOI]``; BOS, ``[BOI]`` and headers before the first image token are
left out): ``f^l_j = R^l_j / Σ_{j' ∈ flow keys} R^l_{j'}``. ``A`` is the post-softmax
attention; keys are aligned across examples by their offset from the end of the image block.
``f`` is reported as shares of four groups — ``special`` (in-block specials), ``image``
(image tokens but the last), ``last_image``, ``eoi`` (the [EOI] set: one token, Emu3's pair)
— and per key, counted from the end of the block (``-1`` = the last key, ``[EOI]`` in native
models). ``side_mass`` is ``Σ_{flow keys} R^l`` (the text's attention on the image, per query
and head). The *gate* is the key with the largest share, averaged over layers *weighted by
their* ``side_mass`` (a layer where the text barely looks at the image does not count like
one where it looks there half the time)::

    res = attention_flow(hm, examples)           # examples: prompts with one image each
    res.shares                                   # DataFrame: layer × {special, image, last_image, eoi, side_mass}
    res.gate()                                   # GateReport(key='eoi', share=0.87, narrow=True, ...)
    res.save("runs/flow")                        # flow_shares.csv, flow_keys.csv, gate.json, flow.png

``normalize="per_example"`` is our earlier variant (each example normalised over every
image-side key, BOI included, then averaged); ``gate(weights="uniform")`` the unweighted mean.
``backend="stream"`` (default) computes the sums inside the attention function in chunks of
queries (:mod:`.flow_attention`: no ``(B, H, Q, K)`` pattern is stored); ``"materialize"``
captures ``attn_pattern.L`` (any backend the hook registry supports).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError, ImageSpanError, TaskError

GROUPS = ("special", "image", "last_image", "eoi")
NORMALIZE = ("authors", "per_example")
BACKENDS = ("stream", "materialize")


@dataclass
class GateReport:
    """The key that carries the largest share of the text→image flow."""

    key: str  # "eoi", "last_image", "special[-k]", "image[-k]"
    offset: int  # position counted from the end of the image block (-1 = last); Emu3's eoi pair: -1
    share: float  # its mean share over the chosen layers (weighted by side_mass unless weights="uniform")
    narrow: bool  # share >= threshold: one token carries most of the flow
    threshold: float
    layers: list
    runner_up: str = ""
    runner_up_share: float = 0.0
    weights: str = "mass"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FlowResult:
    """Dataset means of the flow (see the module docstring)."""

    layers: list
    shares_array: np.ndarray  # (n_layers, 4) groups in GROUPS order
    per_key: np.ndarray  # (n_layers, n_offsets): offset o -> key at position (end - 1 - o)
    key_names: list  # name of the key at each offset (from the first example)
    side_mass: np.ndarray  # (n_layers,) text attention on the flow keys, per query and head
    n_examples: int
    gate_name: str = "eoi"
    meta: dict = field(default_factory=dict)
    normalize: str = "authors"

    @property
    def shares(self):
        import pandas as pd

        df = pd.DataFrame(self.shares_array, columns=list(GROUPS), index=pd.Index(self.layers, name="layer"))
        df["side_mass"] = self.side_mass
        return df

    def key_frame(self):
        import pandas as pd

        cols = [f"{-1 - o}:{n}" for o, n in enumerate(self.key_names)]
        return pd.DataFrame(self.per_key[:, : len(cols)], columns=cols, index=pd.Index(self.layers, name="layer"))

    def _candidates(self) -> tuple:
        """(names, offsets, (n_layers, n_cand) shares): flow keys, plus the [EOI] set as one key when it has several."""
        names, offs, cols = [], [], []
        eoi = [o for o, n in enumerate(self.key_names) if n == "eoi" or n.startswith("eoi[")]
        for o in range(self.per_key.shape[1]):
            n = self.key_names[o] if o < len(self.key_names) else f"image[{-1 - o}]"
            if n in ("boi",) or n.startswith("pre["):
                continue  # outside the normalisation (BOI, headers)
            if len(eoi) > 1 and o in eoi:
                continue
            names.append(n)
            offs.append(-1 - o)
            cols.append(self.per_key[:, o])
        if len(eoi) > 1:
            names.insert(0, "eoi")
            offs.insert(0, -1 - min(eoi))
            cols.insert(0, self.per_key[:, eoi].sum(1))
        return names, offs, np.stack(cols, 1)

    def gate(self, layers=None, threshold: float = 0.5, weights: str = "mass") -> GateReport:
        """The key with the largest mean share over ``layers`` (default all), layers weighted by
        ``side_mass`` (``weights="mass"``, default) or equally (``"uniform"``)."""
        if weights not in ("mass", "uniform"):
            raise TaskError(f"gate(weights=...) must be 'mass' or 'uniform', got {weights!r}.")
        sel = [self.layers.index(L) for L in layers] if layers is not None else list(range(len(self.layers)))
        names, offs, vals = self._candidates()
        w = np.asarray(self.side_mass, dtype=float)[sel] if weights == "mass" else np.ones(len(sel))
        if not w.sum() > 0:
            w = np.ones(len(sel))
        mean = (vals[sel] * w[:, None]).sum(0) / w.sum()
        order = np.argsort(-mean)
        o = int(order[0])
        r = int(order[1]) if len(order) > 1 else o
        return GateReport(names[o], offs[o], float(mean[o]), bool(mean[o] >= threshold), threshold,
                          [self.layers[i] for i in sel], names[r], float(mean[r]), weights)

    def save(self, out) -> list:
        """Write flow_shares.csv, flow_keys.csv, gate.json and flow.png (atomically)."""
        from . import report

        out = Path(out)
        paths = [report.write_frame(self.shares, out / "flow_shares.csv"),
                 report.write_frame(self.key_frame(), out / "flow_keys.csv"),
                 report.write_json(out / "gate.json", {"gate": self.gate().to_dict(), "n_examples": self.n_examples,
                                                       "gate_candidate": self.gate_name, "normalize": self.normalize,
                                                       **self.meta})]
        paths.append(report.plot_flow(self, out / "flow.png"))
        return paths


def _key_names(lay, b: int) -> list:
    """Names of the image-side keys of row b, from the end of the block."""
    idx = lay.side[b].nonzero().flatten().tolist()
    flow = lay.flow_keys[b]
    eoi_seen = 0
    names = []
    for o, p in enumerate(reversed(idx)):
        if lay.eoi[b, p]:
            names.append("eoi" if eoi_seen == 0 else f"eoi[{-1 - o}]")
            eoi_seen += 1
        elif lay.last_image[b, p]:
            names.append("last_image")
        elif lay.image[b, p]:
            names.append(f"image[{-1 - o}]")
        elif not flow[p]:
            names.append("boi" if o == len(idx) - 1 else f"pre[{-1 - o}]")
        else:
            names.append(f"special[{-1 - o}]")
    return names


class _Accumulator:
    """Running sums of the flow over batches (see :func:`accumulate`)."""

    def __init__(self, n_layers: int, normalize: str):
        self.normalize = normalize
        self.groups = np.zeros((n_layers, len(GROUPS)))
        self.keys = np.zeros((n_layers, 0))
        self.total = np.zeros(n_layers)  # Σ_examples Σ_{flow keys} r_b
        self.n = 0

    def add(self, li: int, per_row: torch.Tensor, n_q: torch.Tensor, n_heads: int, lay) -> None:
        """``per_row`` (B, K): Σ_h Σ_{i ∈ text} A of layer index ``li`` for the rows of ``lay``."""
        side = lay.side.cpu()
        r = per_row.double() / (n_q.double() * n_heads)[:, None]  # mean over text queries and heads
        norm = lay.flow_keys.cpu() if self.normalize == "authors" else side
        tot = (r * norm).sum(1)
        if self.normalize == "authors":
            f, self.total[li] = r, self.total[li] + float(tot.sum())
        else:  # per-example normalisation over every image-side key, then averaged
            f = r * side / tot.clamp_min(1e-30)[:, None]
            self.total[li] += float(tot.sum())
        cats = lay.categories()
        for gi, g in enumerate(GROUPS):
            m = cats[g].cpu() & (norm if self.normalize == "authors" else side)
            self.groups[li, gi] += float((f * m).sum())
        for b in range(f.shape[0]):
            vals = f[b][side[b]].flip(0).numpy()  # from the end of the block
            if len(vals) > self.keys.shape[1]:
                self.keys = np.pad(self.keys, ((0, 0), (0, len(vals) - self.keys.shape[1])))
            self.keys[li, : len(vals)] += vals

    def result(self) -> tuple:
        """``(group shares, per-key shares, side_mass)`` of the dataset mean."""
        mass = self.total / self.n
        if self.normalize == "authors":
            denom = np.where(self.total > 0, self.total, 1.0)[:, None]
            return self.groups / denom, self.keys / denom, mass
        return self.groups / self.n, self.keys / self.n, mass


def flow_from_sums(sums: dict, n_q: torch.Tensor, n_heads: int, lay, layers, normalize: str = "authors"):
    """The flow of one batch from per-layer ``(B, K)`` sums ``Σ_h Σ_{i ∈ text} A`` (for known-answer tests)."""
    acc = _Accumulator(len(layers), normalize)
    for li, L in enumerate(layers):
        acc.add(li, sums[L], n_q, n_heads, lay)
    acc.n = int(n_q.shape[0])
    shares, keys, mass = acc.result()
    return FlowResult(list(layers), shares, keys, _key_names(lay, 0), mass, acc.n, lay.gate_name,
                      normalize=normalize)


def _materialized_sums(hm, inputs, layers, q) -> dict:
    import hooks

    store: dict = {}

    def make(L):
        def fn(acts):  # (N, H, K): the selected text queries, row-major
            store[L] = acts.float().sum(1).cpu()
            store["heads"] = acts.shape[1]
            return acts
        return fn

    hm.run(inputs, [hooks.Edit(f"attn_pattern.{L}", positions=q, fn=make(L)) for L in layers])
    rows = torch.arange(q.shape[0]).repeat_interleave(q.sum(1).cpu())
    out = {"heads": store["heads"]}
    for L in layers:
        a = store[L]
        out[L] = torch.zeros(q.shape[0], a.shape[1]).index_add_(0, rows, a)
    return out


@torch.no_grad()
def attention_flow(hm, examples, *, layers=None, batch_size: int = 8, task: str = "vqa", template=None,
                   progress: bool = False, normalize: str = "authors", backend: str = "stream",
                   chunk: int = 256) -> FlowResult:
    """Text→image attention flow per layer over ``examples`` (see the module docstring).

    ``examples``: dicts as in :mod:`.data` (or prompts with inline image tokens); the prompt
    is built for ``task``. ``layers``: indices (default all). ``backend``: ``"stream"``
    (in-attention sums, chunks of ``chunk`` queries) or ``"materialize"``.
    """
    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import encode

    if normalize not in NORMALIZE:
        raise TaskError(f"Unknown flow normalisation {normalize!r}; use one of {NORMALIZE}.")
    if backend not in BACKENDS:
        raise TaskError(f"Unknown flow backend {backend!r}; use one of {BACKENDS}.")
    layers = layer_window(hm.n_layers, layers=layers)
    if not examples:
        raise DatasetError("No examples to measure the attention flow on.")
    acc = _Accumulator(len(layers), normalize)
    names, lay = None, None
    from hooks.progress import track

    for start in track(range(0, len(examples), batch_size), "flow", total=len(examples), unit="ex",
                       step=lambda s: len(examples[s : s + batch_size]), enabled=progress):
        chunk_ex = examples[start : start + batch_size]
        inputs = encode(hm, chunk_ex, task, template)
        lay = image_layout(hm, inputs)
        q = lay.text_after
        if bool((q.sum(1) == 0).any()):
            b = int((q.sum(1) == 0).nonzero()[0])
            raise ImageSpanError(f"Example {start + b} has no text after its image: the flow is read from text "
                                 "queries that follow the image (put the question after the image).")
        if backend == "stream" and getattr(hm, "attention_enabled", True) and hasattr(hm.model, "config"):
            from .flow_attention import text_key_sums

            sums = text_key_sums(hm, inputs, layers, q, chunk=chunk)
        else:
            sums = _materialized_sums(hm, inputs, layers, q)
        if names is None:
            names = _key_names(lay, 0)
        n_q = q.sum(1).cpu()
        for li, L in enumerate(layers):
            acc.add(li, sums[L], n_q, sums["heads"], lay)
        acc.n += len(chunk_ex)
    shares, keys, mass = acc.result()
    return FlowResult(layers, shares, keys, names, mass, acc.n, lay.gate_name,
                      {"adapter": hm.adapter.name, "n_layers": hm.n_layers, "backend": backend}, normalize)
