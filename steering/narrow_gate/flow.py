"""Cross-modal attention flow and gate detection (Serra et al. 2025, Sec. 4.1).

For layer ``l`` and each image-side key ``j`` (image tokens, ``[BOI]``/``[EOI]`` and the
other specials of the image block), the attention that text queries pay to ``j``, summed
over heads and text queries and normalised over the image-side keys of the example:

    f^l_j = (1/C) (1/|H|) Σ_h Σ_{i ∈ text} A^{l,h}_{ij},     C such that Σ_{j ∈ image side} f^l_j = 1,

with ``A`` the post-softmax attention (``attn_pattern.l``) and "text" the text positions after
the image. ``f`` is averaged over a dataset as a running mean, and reported as shares of four
key groups — ``special`` (BOI and other specials), ``image`` (image tokens but the last),
``last_image`` (the last image token), ``eoi`` — and per key, counted from the end of the
image block (``-1`` = the last image-side key, ``[EOI]`` in native models). The *gate* is the
key with the largest share::

    res = attention_flow(hm, examples)           # examples: prompts with one image each
    res.shares                                   # DataFrame: layer × {special, image, last_image, eoi}
    res.gate()                                   # GateReport(key='eoi', share=0.87, narrow=True, ...)
    res.save("runs/flow")                        # flow_shares.csv, flow_keys.csv, gate.json, flow.png

The text→image-side attention mass (before normalising) is kept too (``res.side_mass``):
native models put little of the text's attention on the image but route most of it via ``[EOI]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ImageSpanError

GROUPS = ("special", "image", "last_image", "eoi")


@dataclass
class GateReport:
    """The key that carries the largest share of the text→image flow."""

    key: str  # "eoi", "last_image", "boi", "special", "image[-k]"
    offset: int  # position counted from the end of the image block (-1 = last)
    share: float  # its mean share over the chosen layers
    narrow: bool  # share >= threshold: one token carries most of the flow
    threshold: float
    layers: list
    runner_up: str = ""
    runner_up_share: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FlowResult:
    """Running means of the flow over a dataset (see the module docstring)."""

    layers: list
    shares_array: np.ndarray  # (n_layers, 4) groups in GROUPS order
    per_key: np.ndarray  # (n_layers, n_offsets): offset o -> key at position (end - 1 - o)
    key_names: list  # name of the key at each offset (from the first example)
    side_mass: np.ndarray  # (n_layers,) mean fraction of text attention on image-side keys
    n_examples: int
    gate_name: str = "eoi"
    meta: dict = field(default_factory=dict)

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

    def gate(self, layers=None, threshold: float = 0.5) -> GateReport:
        """The key with the largest mean share over ``layers`` (default: all analysed layers)."""
        sel = [self.layers.index(L) for L in layers] if layers is not None else list(range(len(self.layers)))
        mean = self.per_key[sel].mean(0)
        order = np.argsort(-mean)
        o = int(order[0])
        r = int(order[1]) if len(order) > 1 else o
        return GateReport(self.key_names[o] if o < len(self.key_names) else f"image[{-1 - o}]", -1 - o, float(mean[o]),
                          bool(mean[o] >= threshold), threshold, [self.layers[i] for i in sel],
                          self.key_names[r] if r < len(self.key_names) else f"image[{-1 - r}]", float(mean[r]))

    def save(self, out) -> list:
        """Write flow_shares.csv, flow_keys.csv, gate.json and flow.png (atomically)."""
        from . import report

        out = Path(out)
        paths = [report.write_frame(self.shares, out / "flow_shares.csv"),
                 report.write_frame(self.key_frame(), out / "flow_keys.csv"),
                 report.write_json(out / "gate.json", {"gate": self.gate().to_dict(), "n_examples": self.n_examples,
                                                       "gate_candidate": self.gate_name, **self.meta})]
        paths.append(report.plot_flow(self, out / "flow.png"))
        return paths


def _key_names(lay, b: int) -> list:
    """Names of the image-side keys of row b, from the end of the block."""
    idx = lay.side[b].nonzero().flatten().tolist()
    names = []
    for o, p in enumerate(reversed(idx)):
        if lay.eoi[b, p]:
            names.append("eoi")
        elif lay.last_image[b, p]:
            names.append("last_image")
        elif lay.image[b, p]:
            names.append(f"image[{-1 - o}]")
        elif o == len(idx) - 1:
            names.append("boi")
        else:
            names.append(f"special[{-1 - o}]")
    return names


@torch.no_grad()
def attention_flow(hm, examples, *, layers=None, batch_size: int = 8, task: str = "vqa", template=None,
                   progress: bool = False) -> FlowResult:
    """Text→image-side attention flow per layer over ``examples`` (see the module docstring).

    ``examples``: dicts as in :mod:`.data` (or prompts with inline image tokens); the prompt
    is built for ``task``. ``layers``: indices (default all).
    """
    import hooks

    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import encode

    layers = layer_window(hm.n_layers, layers=layers)
    if not examples:
        raise ImageSpanError("No examples to measure the attention flow on.")
    sums = np.zeros((len(layers), len(GROUPS)))
    key_sums = np.zeros((len(layers), 0))
    mass = np.zeros(len(layers))
    n, names = 0, None
    it = range(0, len(examples), batch_size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="flow", leave=False)
    for start in it:
        chunk = examples[start : start + batch_size]
        inputs = encode(hm, chunk, task, template)
        lay = image_layout(hm, inputs)
        q = lay.text_after
        if bool((q.sum(1) == 0).any()):
            b = int((q.sum(1) == 0).nonzero()[0])
            raise ImageSpanError(f"Example {start + b} has no text after its image: the flow is read from text "
                                 "queries that follow the image (put the question after the image).")
        store: dict = {}

        def make(L):
            def fn(acts):  # (N, H, K): the selected text queries, row-major
                store[L] = acts.float().sum(1).cpu()
                store["heads"] = acts.shape[1]
                return acts
            return fn

        ivs = [hooks.Edit(f"attn_pattern.{L}", positions=q, fn=make(L)) for L in layers]
        hm.run(inputs, ivs)
        rows = torch.arange(q.shape[0]).repeat_interleave(q.sum(1).cpu())
        n_heads = store["heads"]
        side = lay.side.cpu()
        groups = [lay.categories()[g].cpu() for g in GROUPS]
        if names is None:
            names = _key_names(lay, 0)
        for li, L in enumerate(layers):
            a = store[L]  # (N, K) summed over heads
            per_row = torch.zeros(q.shape[0], a.shape[1]).index_add_(0, rows, a)  # (B, K): Σ_h Σ_i
            n_q = q.sum(1).cpu().float()
            tot = (per_row * side).sum(1)
            mass[li] += float((tot / (n_q * n_heads)).sum())
            f = per_row * side / tot.clamp_min(1e-30)[:, None]  # normalised over image-side keys
            for gi, gm in enumerate(groups):
                sums[li, gi] += float((f * gm).sum())
            for b in range(f.shape[0]):
                vals = f[b][side[b]].flip(0).numpy()  # from the end of the block
                if len(vals) > key_sums.shape[1]:
                    key_sums = np.pad(key_sums, ((0, 0), (0, len(vals) - key_sums.shape[1])))
                key_sums[li, : len(vals)] += vals
        n += len(chunk)
    per_key = key_sums / n  # mean share per key (keys absent in some rows count as 0 there)
    return FlowResult(layers, sums / n, per_key, names, mass / n, n, lay.gate_name,
                      {"adapter": hm.adapter.name, "n_layers": hm.n_layers})
