"""Splice an SAE into a model through the registry's ``Edit``: reconstruct, read, clamp latents.

    import hooks, saes
    sae = saes.load_sae("runs/esm_sae")
    # steering: latent 123 clamped to 8.0 on residues 10..29, everything else untouched
    edit = saes.splice(sae, positions="10:30", clamp={123: 8.0})
    out = model.run(seqs, [edit])
    # reading latents (error term on, nothing clamped: the model's output is unchanged)
    sp = saes.SAESplice(sae, keep_latents=True)
    model.run(seqs, [hooks.Edit("resid_post.3", "residues", sp)])
    sp.latents[0].shape            # (residues in the batch, d_sae), row-major like Cache(layout="flat")

With ``error_term=True`` (default) the site's activation becomes
``x + decode(f') - decode(f)`` where ``f = encode(x)`` and ``f'`` is ``f`` with the clamps
and scales applied — the SAE's reconstruction error is added back, so only the changed
latents move the model (Marks et al. 2024, "Sparse feature circuits"); with nothing
clamped the activations, and hence the logits, are exactly unchanged. With
``error_term=False`` the activation is replaced by ``decode(f')`` (what "loss recovered"
measures). Positions are any :mod:`hooks.positions` selector; a ``SAESplice`` works on
any hooked model (LLMs, a VLM's language model, ESM-2) and while generating
(``apply_to="new"``).
"""
from __future__ import annotations

from typing import Optional

import torch

from .errors import ConfigError
from .files import positions_of, site_of

_RUNTIME_NORM = ("layer_norm", "constant_norm_rescale")  # encode() stores stats that decode() consumes


def _latent_map(d: Optional[dict], d_sae: int, what: str) -> dict:
    out = {}
    for k, v in (d or {}).items():
        i = int(k)
        if not 0 <= i < d_sae:
            raise ConfigError(f"{what} latent {k} is out of range: this SAE has {d_sae} latents (0..{d_sae - 1}).")
        out[i] = float(v)
    return out


class SAESplice:
    """``fn`` for :class:`hooks.Edit`: maps selected activations ``(N, ...)`` through the SAE.

    ``clamp={latent: value}`` sets latents, ``scale={latent: factor}`` multiplies them (after
    clamping); ``keep_latents=True`` appends each call's latents ``(N, d_sae)`` (before the
    clamps) to ``self.latents`` on ``latents_device``.
    """

    def __init__(self, sae, *, error_term: bool = True, clamp: Optional[dict] = None, scale: Optional[dict] = None,
                 keep_latents: bool = False, latents_device="cpu"):
        self.sae, self.error_term = sae, bool(error_term)
        d_sae = int(sae.cfg.d_sae)
        self.clamp, self.scale = _latent_map(clamp, d_sae, "clamp"), _latent_map(scale, d_sae, "scale")
        self.keep_latents, self.latents_device = keep_latents, latents_device
        self.latents: list = []
        self._hook_z = getattr(sae.cfg, "reshape_activations", "none") == "hook_z"

    def _edit(self, f: torch.Tensor) -> torch.Tensor:
        f = f.clone()
        for i, v in self.clamp.items():
            f[:, i] = v
        for i, s in self.scale.items():
            f[:, i] = f[:, i] * s
        return f

    def __call__(self, acts: torch.Tensor) -> torch.Tensor:
        changes = bool(self.clamp or self.scale)
        sae = self.sae
        x = acts if self._hook_z else acts.reshape(acts.shape[0], -1)
        d_in = int(sae.W_dec.shape[-1])
        width = x.shape[-1] if not self._hook_z or x.dim() < 2 else x.shape[-2] * x.shape[-1]
        if width != d_in and x.shape[-1] != d_in:
            from .errors import ActivationError

            raise ActivationError(
                f"This SAE reads {d_in}-dimensional activations but the site it is spliced into gives "
                f"{width} (activations {tuple(acts.shape)}). Use the SAE trained on this model and site "
                "(its cfg.d_in and hook name), or splice it at the site it was trained on."
            )
        if self.error_term and not changes and not self.keep_latents:
            return acts
        x = x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)
        f = sae.encode(x)
        if self.keep_latents:
            self.latents.append(f.detach().to(self.latents_device))
        if self.error_term and not changes:
            return acts
        f_new = self._edit(f) if changes else f
        if not self.error_term:
            out = sae.decode(f_new)
        else:
            x_hat = sae.decode(f)
            if sae.cfg.normalize_activations in _RUNTIME_NORM:  # decode() used up encode()'s stats
                f_new = self._edit(sae.encode(x))
            out = x + (sae.decode(f_new) - x_hat)
        return out.to(device=acts.device, dtype=acts.dtype).reshape(acts.shape)


def splice(sae, site: Optional[str] = None, positions=None, *, error_term: bool = True, clamp: Optional[dict] = None,
           scale: Optional[dict] = None, keep_latents: bool = False, apply_to: str = "all"):
    """An :class:`hooks.Edit` splicing ``sae`` at ``site`` (default: the SAE's own site).

    ``positions`` defaults to the SAE's training rule where the registry can express it
    statically (``"residues"`` for ESM, ``"text"`` for VLMs, explicit selectors as saved);
    the LLM ``"auto"`` rule (real tokens minus special tokens) becomes ``"all"`` — with the
    error term on and nothing clamped that is a no-op at BOS too. Pass positions explicitly
    to steer only where you mean to. The ``SAESplice`` is ``edit.fn``.
    """
    from hooks import Edit

    site = site or site_of(sae)
    if not site:
        raise ConfigError("This SAE's files name no site; pass site=... (e.g. 'resid_post.3').")
    if positions is None:
        positions = positions_of(sae)
        if positions == "auto":
            from .files import info_of

            base = info_of(sae).get("positions", {}).get("base", "all")
            positions = base if base in ("residues", "text") else "all"
    fn = SAESplice(sae, error_term=error_term, clamp=clamp, scale=scale, keep_latents=keep_latents)
    return Edit(site, positions, fn, apply_to=apply_to)
