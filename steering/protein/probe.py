"""Linear probes: is a planted feature linearly readable from each layer's residual stream?

    res = probe_layers(model, tokenizer, toy_records(1000, seed=1))
    res["f1"]["ZN_FING"]["resid_post.2"]     # held-out per-residue F1

Activations come from ``hooks`` (``Cache("embed"/"resid_post.*", "residues", layout="flat")``),
labels from :func:`steering.protein.align.residue_token_mask` on the same batch, so this also
checks that our token alignment matches what ``hooks`` selects. A logistic regression
(standardised inputs, L2, sklearn) per feature and layer is fit on the first proteins and scored
(F1 at 0.5) on the rest. The same check InterPLM (Simon & Zou 2024) and Garcia & Ansuini (2025)
use as a ceiling for SAE latents.
"""
from __future__ import annotations

import numpy as np
import torch

from .align import encode_sequences, residue_token_mask
from .toy_world import PLANTED


@torch.no_grad()
def residue_activations(hm, sequences, sites, masks: dict, batch_size: int = 128) -> tuple:
    """``({site: (N_res, d)}, {track: (N_res,) bool})`` over every residue of ``sequences``."""
    from hooks import Cache

    acts = {s: [] for s in sites}
    labels = {t: [] for t in masks}
    for i in range(0, len(sequences), batch_size):
        batch = encode_sequences(sequences[i:i + batch_size])
        res = hm.run(batch.inputs, [Cache(list(sites), "residues", layout="flat")])
        sel = res.cache.masks[sites[0]].cpu()
        if not torch.equal(sel, batch.residues()):
            raise AssertionError("hooks' residue span and steering.protein.align disagree")
        for s in sites:
            acts[s].append(res.cache[s].float().cpu())
        for t, m in masks.items():
            labels[t].append(residue_token_mask(m[i:i + batch_size], batch)[sel])
    return ({s: torch.cat(v).numpy() for s, v in acts.items()},
            {t: torch.cat(v).numpy() for t, v in labels.items()})


def probe_layers(model, tokenizer, records, *, tracks=PLANTED, train_frac: float = 0.6, seed: int = 0,
                 max_iter: int = 300, max_train_rows: int = 20000) -> dict:
    """Held-out F1 of a logistic-regression probe per planted feature and layer (embed + resid_post.L)."""
    import hooks
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    hm = hooks.wrap(model, tokenizer)
    sites = ["embed"] + [f"resid_post.{i}" for i in range(hm.n_layers)]
    seqs = [r.sequence for r in records]
    masks = {t: [] for t in tracks}
    for r in records:
        for t in tracks:
            m = np.zeros(len(r.sequence), bool)
            for f in r.features:
                if f.type == t:
                    m[f.start:f.end] = True
            masks[t].append(m)
    n_train = int(len(records) * train_frac)
    X, Y = residue_activations(hm, seqs, sites, masks)
    row_of = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    tr, te = row_of < n_train, row_of >= n_train
    if tr.sum() > max_train_rows:  # bound the fitting cost: a seeded subset of the training residues
        keep = np.random.default_rng(seed).choice(np.flatnonzero(tr), max_train_rows, replace=False)
        tr = np.zeros_like(tr)
        tr[keep] = True
    f1 = {t: {} for t in tracks}
    for s in sites:
        sc = StandardScaler().fit(X[s][tr])
        xtr, xte = sc.transform(X[s][tr]), sc.transform(X[s][te])
        for t in tracks:
            clf = LogisticRegression(max_iter=max_iter, random_state=seed).fit(xtr, Y[t][tr])
            f1[t][s] = float(f1_score(Y[t][te], clf.predict(xte)))
    return {"f1": f1, "sites": sites, "n_train_proteins": n_train, "n_test_proteins": len(records) - n_train,
            "n_train_residues": int(tr.sum()), "n_test_residues": int(te.sum()), "positives_test": {t: int(Y[t][te].sum()) for t in tracks}}
