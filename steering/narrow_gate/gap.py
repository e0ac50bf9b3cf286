"""The modality gap per layer (Serra et al. 2025, Sec. 3), with the authors' protocol.

Protocol (RitAreaSciencePark/Narrow-gate ``paper_experiments/Fig2_CosSim_Hom.py``, token
sets from ``src/activations.py``): *text* representations are read in image→text prompts
(``{image} {text}``: one random text token per example, BOS excluded — ``text_tokens[1:]``),
*image* representations in separate text→image prompts (``{text} {image}``: one random image
token per example); the residual is ``resid_post.L``. Two measures per layer:

* cosine similarity between image and text tokens of *different* examples (the strict lower
  triangle of the image × text block, ``src/metrics/residual_stream.py::_correlation_single_layer``):
  median and quartiles of ``|cos|``;
* homogeneity of Advanced-Density-Peaks clusters w.r.t. the modality (Gride intrinsic
  dimension, k-NN log-densities with k = 16, ADP with Z = 1.65, as in ``Fig2_CosSim_Hom.py``);
  residuals are L2-normalised (the authors use dadapy's cosine metric: same neighbours).
  Homogeneity 1: no cluster mixes image and text tokens.

``protocol="same_prompt"`` is our earlier variant: ``tokens_per_example`` text and image
tokens from the task prompt itself (BOS included), cosine over same-example pairs, signed.

    gap = modality_gap(hm, examples)          # DataFrame: layer × {cos_median, cos_q1, cos_q3, cos_iqr,
    gap.to_csv("gap.csv")                     #   homogeneity, n_clusters, intrinsic_dim, ...}

Examples need an ``image`` and a text (``captions`` joined, else ``question``, else
``label_name``), or ready prompts ``image_text`` / ``text_image`` (the toy world ships them).
Uses :mod:`geometry` (imported here, lazily) for Gride, densities and ADP.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import NarrowGateError

Z_AUTHORS, K_AUTHORS = 1.65, 16
PROTOCOLS = ("authors", "same_prompt")


def _sample_positions(mask: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    out = torch.zeros_like(mask)
    for b in range(mask.shape[0]):
        idx = mask[b].nonzero().flatten()
        out[b, idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return out


@torch.no_grad()
def collect_modality_tokens(hm, examples, *, layers=None, tokens_per_example: int = 16, batch_size: int = 8,
                            task: str = "vqa", template=None, seed: int = 0):
    """Residuals of up to ``tokens_per_example`` text and image tokens per example.

    Returns ``(reps, modality, example_index)``: ``reps[L]`` is ``(N, d)`` float32 on CPU,
    ``modality`` is ``(N,)`` with 1 = image, 0 = text.
    """
    import hooks

    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import encode

    layers = layer_window(hm.n_layers, layers=layers)
    g = torch.Generator().manual_seed(seed)
    reps = {L: [] for L in layers}
    mods, owners = [], []
    for start in range(0, len(examples), batch_size):
        inputs = encode(hm, examples[start : start + batch_size], task, template)
        lay = image_layout(hm, inputs)
        img = _sample_positions(lay.image.cpu(), tokens_per_example, g)
        txt = _sample_positions(lay.text.cpu(), tokens_per_example, g)
        sel = (img | txt).to(lay.image.device)
        res = hm.run(inputs, [hooks.Cache([f"resid_post.{L}" for L in layers], positions=sel, layout="flat",
                                          dtype=torch.float32)])
        for L in layers:
            reps[L].append(res.cache[f"resid_post.{L}"])
        m = sel.cpu()
        mods.append(img[m].long())
        owners.append(torch.arange(m.shape[0]).repeat_interleave(m.sum(1)) + start)
    return {L: torch.cat(v) for L, v in reps.items()}, torch.cat(mods), torch.cat(owners)


def _text_of(e: dict) -> str:
    if e.get("captions"):
        return " ".join(map(str, e["captions"][:5]))
    for k in ("question", "label_name", "answer"):
        if e.get(k):
            return str(e[k])
    raise NarrowGateError("A modality-gap example has no text (captions, question or label_name).")


def modality_prompts(hm, examples: list) -> tuple:
    """``(image→text, text→image)`` prompts of each example (the authors' two prompt orders)."""
    from .tasks import image_placeholder

    it, ti = [], []
    for e in examples:
        if "image_text" in e and "text_image" in e:
            it.append(e["image_text"])
            ti.append(e["text_image"])
            continue
        if "input_ids" in e:
            raise NarrowGateError("The authors' modality-gap protocol needs two prompt orders per example; "
                                  "pre-tokenised examples have one. Use protocol='same_prompt' or give "
                                  "'image_text'/'text_image' prompts.")
        img, txt = image_placeholder(hm), _text_of(e)
        it.append(f"{img} {txt}")
        ti.append(f"{txt} {img}")
    return it, ti


def _first(mask: torch.Tensor) -> torch.Tensor:
    idx = torch.arange(mask.shape[1]).expand_as(mask)
    first = torch.where(mask, idx, mask.shape[1]).amin(1)
    return idx == first[:, None]


@torch.no_grad()
def collect_authors_tokens(hm, examples, *, layers=None, batch_size: int = 8, seed: int = 0):
    """One random text token (BOS excluded) of each image→text prompt and one random image token of
    each text→image prompt. Returns ``(reps, modality, example_index)`` like :func:`collect_modality_tokens`;
    rows are all text tokens (examples in order), then all image tokens."""
    import hooks

    from .ablations import layer_window
    from .layout import image_layout
    from .tasks import encode_prompts

    layers = layer_window(hm.n_layers, layers=layers)
    g = torch.Generator().manual_seed(seed)
    it, ti = modality_prompts(hm, examples)
    out = {}
    for name, prompts in (("text", it), ("image", ti)):
        reps = {L: [] for L in layers}
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            # task "caption": Chameleon's processor without a trailing <sep>, as the authors' flickr inputs
            inputs = encode_prompts(hm, prompts[start : start + batch_size], [e.get("image") for e in chunk], "caption")
            lay = image_layout(hm, inputs)
            if name == "text":
                cand = lay.text.cpu() & ~_first(lay.text.cpu())  # the authors' text_tokens[1:]: no BOS
            else:
                cand = lay.image.cpu() & ~lay.gate.cpu()
            if bool((cand.sum(1) == 0).any()):
                raise NarrowGateError(f"An example has no {name} token to sample in its {name}-last prompt.")
            sel = _sample_positions(cand, 1, g).to(lay.image.device)
            res = hm.run(inputs, [hooks.Cache([f"resid_post.{L}" for L in layers], positions=sel, layout="flat",
                                              dtype=torch.float32)])
            for L in layers:
                reps[L].append(res.cache[f"resid_post.{L}"])
        out[name] = {L: torch.cat(v) for L, v in reps.items()}
    n = len(examples)
    reps = {L: torch.cat([out["text"][L], out["image"][L]]) for L in layers}
    mod = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    owner = torch.cat([torch.arange(n), torch.arange(n)])
    return reps, mod, owner


def authors_cosine_stats(X: torch.Tensor, modality: torch.Tensor) -> dict:
    """Median and quartiles of ``|cos(image_i, text_j)|`` over i > j (different examples), as the
    authors' ``_correlation_single_layer`` (quartiles by sorted index ``int(n·0.25)``)."""
    Xn = torch.nn.functional.normalize(X.double(), dim=-1)
    img, txt = Xn[modality == 1], Xn[modality == 0]
    if len(img) < 2 or len(img) != len(txt):
        raise NarrowGateError("The cosine gap needs one image and one text token per example, at least 2 examples.")
    block = img @ txt.T
    v = block[torch.tril(torch.ones_like(block), diagonal=-1).bool()].abs()
    srt = v.sort().values
    q1, q3 = float(srt[int(len(srt) * 0.25)]), float(srt[int(len(srt) * 0.75)])
    return {"cos_median": float(v.median()), "cos_q1": q1, "cos_q3": q3, "cos_iqr": q3 - q1, "n_pairs": int(len(v))}


def cosine_stats(X: torch.Tensor, modality: torch.Tensor, owner: torch.Tensor) -> dict:
    """Median / quartiles of cos(text token, image token) over same-example pairs."""
    Xn = torch.nn.functional.normalize(X.float(), dim=-1)
    vals = []
    for e in owner.unique():
        m = owner == e
        t, i = Xn[m & (modality == 0)], Xn[m & (modality == 1)]
        if len(t) and len(i):
            vals.append((t @ i.T).flatten())
    if not vals:
        raise NarrowGateError("No example has both text and image tokens; the modality gap needs both.")
    v = torch.cat(vals).numpy()
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"cos_median": float(med), "cos_q1": float(q1), "cos_q3": float(q3), "cos_iqr": float(q3 - q1),
            "n_pairs": int(len(v))}


def adp_homogeneity(X: torch.Tensor, modality: torch.Tensor, *, Z: float = Z_AUTHORS, k: int = K_AUTHORS,
                    maxk: int = 64,
                    gride_ranks=(8, 16)) -> dict:
    """Homogeneity of ADP clusters of L2-normalised residuals w.r.t. the modality labels."""
    from geometry import compute_clustering_adp, compute_density_knn, compute_id_gride, homogeneity, knn

    Xn = torch.nn.functional.normalize(X.double(), dim=-1)
    Xn, inv = torch.unique(Xn, dim=0, return_inverse=True)  # identical points break the estimators
    first = torch.full((len(Xn),), len(inv), dtype=torch.long).scatter_reduce(0, inv, torch.arange(len(inv)), "amin")
    mod = modality[first]
    n = len(Xn)
    maxk = min(maxk, n - 1)
    if n < 2 * gride_ranks[1] or maxk < max(k, gride_ranks[1]):
        raise NarrowGateError(f"Only {n} distinct token representations; the ADP analysis needs at least "
                              f"{2 * gride_ranks[1]} (use more examples or tokens_per_example).")
    nb = knn(Xn, maxk, device="cpu")
    d = compute_id_gride(nb, n1=gride_ranks[0], n2=gride_ranks[1]).id
    dens = compute_density_knn(nb, k=k, intrinsic_dim=d)
    adp = compute_clustering_adp(nb, dens, Z=Z)
    return {"homogeneity": homogeneity(mod.numpy(), adp.labels.cpu().numpy()), "n_clusters": int(adp.n_clusters),
            "intrinsic_dim": float(d), "n_points": int(n)}


def modality_gap(hm, examples, *, layers=None, tokens_per_example: int = 16, adp: bool = True, Z: float = Z_AUTHORS,
                 batch_size: int = 8, task: str = "vqa", template=None, seed: int = 0, protocol: str = "authors"):
    """Per-layer cosine statistics and ADP homogeneity (see the module docstring); a DataFrame.

    ``tokens_per_example`` and ``task`` apply to ``protocol="same_prompt"`` only (the authors
    take one token of each modality per example, from their own prompts).
    """
    import pandas as pd

    if protocol not in PROTOCOLS:
        raise NarrowGateError(f"Unknown modality-gap protocol {protocol!r}; use one of {PROTOCOLS}.")
    if protocol == "authors":
        reps, mod, owner = collect_authors_tokens(hm, examples, layers=layers, batch_size=batch_size, seed=seed)
    else:
        reps, mod, owner = collect_modality_tokens(hm, examples, layers=layers, tokens_per_example=tokens_per_example,
                                                   batch_size=batch_size, task=task, template=template, seed=seed)
    rows = []
    for L, X in reps.items():
        cos = authors_cosine_stats(X, mod) if protocol == "authors" else cosine_stats(X, mod, owner)
        row = {"layer": L, **cos}
        if adp:
            row.update(adp_homogeneity(X, mod, Z=Z))
        rows.append(row)
    df = pd.DataFrame(rows).set_index("layer")
    df.attrs["protocol"] = protocol
    return df
