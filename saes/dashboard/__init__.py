"""SAE latent dashboards and attention views as static HTML sites (no server, no network).

    import hooks, saes
    model = hooks.load("esm2_t6_8M_UR50D.pt")
    sae = saes.load_sae("runs/esm_sae")
    dash = saes.dashboard(sae, model, "proteins.parquet", out="runs/dash",       # one batched pass
                          annotations={"TRANSMEM": masks, ...})                   # optional, per residue
    dash                      # in a notebook: the sortable index, inline
    dash.latent(12)           # one latent page, inline
    dash.path / "index.html"  # open in any browser; every page links the CSV/JSON it was made from

    from saes.dashboard import attention_view
    attention_view(model, ["The cat sat on the mat"], layers=[0, 1], out="runs/attn")

What a latent page shows (SAEDashboard's layout, ``sae_dashboard/sequence_data_generator.py``
and ``feature_data_generator.py`` in jbloomAus/SAEDashboard): the top-k activating contexts,
random contexts from equal-width activation intervals ("quantile bands") with each interval's
share of tokens, tokens coloured by the band of their activation, the activation histogram,
and the tokens the latent promotes / suppresses through the unembedding (``W_dec @ W_U``; for
ESM the amino-acid logits). With per-residue ``annotations`` (protein tracks), the index gains
each latent's best InterPLM F1 and the top contexts are drawn as whole-sequence activation
traces with the annotation tracks aligned under them.

Cost: one forward per batch up to the SAE's site (the rest of the model is skipped), one SAE
encode; memory holds only the non-zero activations (``O(tokens × L0)``). See
``bench/RESULTS_dashboard.md`` for 4,096 latents × 100k tokens on CPU.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Optional


from .view import HTMLView


class Dashboard:
    """The written site (``path``) and its data (``site``: activations, summaries, annotation scores)."""

    def __init__(self, path: Path, site):
        self.path, self.site = Path(path), site

    @property
    def index_path(self) -> Path:
        return self.path / "index.html"

    def rows(self) -> list:
        """The index table as dicts (also ``data/latents.csv``)."""
        from .site import index_rows

        return index_rows(self.site)

    def latent(self, f: int) -> HTMLView:
        from .site import render_latent

        return HTMLView(render_latent(self.site, int(f), assets=None))

    def _repr_html_(self) -> str:
        from .site import render_index

        return HTMLView(render_index(self.site, self.rows(), assets=None))._repr_html_()

    def __repr__(self) -> str:
        return f"Dashboard({str(self.index_path)!r}, {self.site.acts.n_latents} latents, {len(self.site.pages)} pages)"


def dashboard(sae, model, data, out, *, site: Optional[str] = None, positions=None, annotations: Optional[dict] = None,
              latents=None, top_k: int = 20, n_bands: int = 5, band_size: int = 4, context=(8, 4),
              n_logits: int = 10, logit_vocab=None, model_batch_size: int = 8, text_key=None,
              max_tokens: Optional[int] = None, max_nonzeros: int = 50_000_000, seed: int = 0,
              info: Optional[dict] = None, progress: bool = True) -> Dashboard:
    """Build the static site for ``sae`` (a sae-lens SAE or a directory) on ``model`` over ``data`` in ``out``.

    ``annotations``: ``{track: [bool array per example, one entry per selected position]}``
    (ESM: per residue). ``latents``: which latents get a page (default every one that fired;
    the index lists all). ``logit_vocab``: token ids the logit effects range over (default: the
    20 amino acids for ESM models, the whole vocabulary otherwise). ``max_tokens`` stops
    reading early (recorded on the index). Returns a :class:`Dashboard`.
    """
    from ..errors import ConfigError
    from ..files import load_sae
    from .annotations import align, best_f1
    from .gather import gather
    from .site import SiteData, Vocab, write_site
    from .stats import logit_effects, summarize

    sae_name = None
    if isinstance(sae, (str, Path)):
        sae_name, sae = str(sae), load_sae(sae)
    if top_k < 1 or n_bands < 1 or band_size < 0:
        raise ConfigError(f"top_k and n_bands must be >= 1 and band_size >= 0; got {top_k}, {n_bands}, {band_size}.")
    acts = gather(model, sae, data, site=site, positions=positions, model_batch_size=model_batch_size,
                  text_key=text_key, max_tokens=max_tokens, max_nonzeros=max_nonzeros, progress=progress)
    summary = summarize(acts, top_k=top_k, n_bands=n_bands, band_size=band_size, seed=seed)
    vocab_ids = logit_vocab if logit_vocab is not None else amino_acid_ids(model)
    logits = logit_effects(sae, model, k=n_logits, vocab_ids=vocab_ids) if n_logits > 0 else {}
    best = labels = None
    tracks = list(annotations or {})
    if annotations:
        labels = align(annotations, acts)
        best = best_f1(acts, labels, tracks, summary.max)
    meta = {"title": "SAE dashboard", "sae": sae_name, "site": acts.meta["site"],
            "data": data if isinstance(data, (str, Path)) else type(data).__name__, **(info or {})}
    sd = SiteData(acts, summary, Vocab(model.tokenizer), logits=logits, best=best, labels=labels, tracks=tracks,
                  info={k: (str(v) if isinstance(v, Path) else v) for k, v in meta.items()}, context=tuple(context),
                  n_bands=n_bands, pages=None if latents is None else [int(f) for f in latents])
    path = write_site(sd, out, progress=progress)
    return Dashboard(path, sd)


AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def amino_acid_ids(model) -> Optional[list]:
    """Token ids of the 20 standard amino acids for ESM models (adapter name contains 'esm'), else None."""
    if "esm" not in getattr(model.adapter, "name", ""):
        return None
    tok = model.tokenizer
    conv = getattr(tok, "convert_tokens_to_ids", None)
    if callable(conv):
        ids = [conv(a) for a in AMINO_ACIDS]
    else:
        alph = getattr(tok, "alphabet", None)
        ids = [alph.get_idx(a) for a in AMINO_ACIDS] if alph is not None else []
    ids = [int(i) for i in ids if i is not None]
    return ids if len(ids) == len(AMINO_ACIDS) else None


def attention_view(*args, **kwargs):
    """See :func:`saes.dashboard.attention.attention_view`."""
    from .attention import attention_view as fn

    return fn(*args, **kwargs)


class _CallableModule(types.ModuleType):
    """``saes.dashboard(...)`` calls :func:`dashboard`: importing this sub-package makes the
    attribute ``saes.dashboard`` the module, so the module itself is made callable."""

    def __call__(self, *args, **kwargs):
        return dashboard(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__all__ = ["dashboard", "Dashboard", "HTMLView", "attention_view", "amino_acid_ids"]
