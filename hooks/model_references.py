"""Clean reference runs for Ablate and Patch (a mixin of :class:`hooks.model.HookedModel`).

``Ablate(how="mean"/"resample")`` needs statistics of a reference dataset and ``Patch`` the
per-row source activations (from a cache or a clean run of the source batch); the trace
(:mod:`hooks.trace`) asks the model for them through these methods.
"""
from __future__ import annotations

import torch

from .errors import SpecError
from .interventions import Cache
from .trace import Trace


class ReferenceRunsMixin:
    """Reference statistics and patch sources of :class:`hooks.model.HookedModel` (clean runs)."""

    # -- statistics used by Ablate / Patch -----------------------------------------------
    def _collect_rows(self, batch, bindings, positions) -> dict:
        """Per-row selected activations of a clean run: {site: [tensor (n_b, ...)]}."""
        self._suspended += 1
        try:
            with Trace(self, batch, internal=True) as tr:
                res = tr.add(Cache([b.name for b in bindings], positions, layout="flat"))
        finally:
            self._suspended -= 1
        out = {}
        for b in bindings:
            counts = res.masks[b.name].sum(1).tolist()
            out[b.name] = list(torch.split(res[b.name], counts))
        return out

    def _reference_stats(self, iv, bindings) -> dict:
        from .data import iter_batches as _iter

        def iter_batches(ref, **kw):
            if isinstance(ref, (dict, torch.Tensor)):  # one prepared batch
                return iter([ref])
            return _iter(ref, **kw)

        if iv.how == "mean":
            sums, n = {}, 0
            for batch in iter_batches(iv.reference, batch_size=8, progress=False):
                rows = self._collect_rows(batch, bindings, "all")
                for name, rs in rows.items():
                    flat = torch.cat(rs).double()
                    sums[name] = sums.get(name, 0) + flat.sum(0)
                n += sum(r.shape[0] for r in next(iter(rows.values())))
            if n == 0:
                raise SpecError("Ablate(how='mean') got an empty reference.")
            return {k: (v / n).float() for k, v in sums.items()}
        rows: dict = {}
        for batch in iter_batches(iv.reference, batch_size=8, progress=False):
            for name, rs in self._collect_rows(batch, bindings, "all").items():
                rows.setdefault(name, []).extend(rs)
        if not rows or not next(iter(rows.values())):
            raise SpecError("Ablate(how='resample') got an empty reference.")
        return rows

    def _patch_source(self, iv, bindings) -> dict:
        src = iv.source
        input_keys = {"input_ids", "tokens", "pixel_values", "inputs_embeds", "text", "images"}
        is_cache = (isinstance(src, dict) and bool(src) and not input_keys & set(src)
                    and all(isinstance(v, (torch.Tensor, list)) for v in src.values()))
        if is_cache:
            masks = getattr(src, "masks", {})
            out = {}
            for b in bindings:
                if b.name not in src:
                    raise SpecError(f"Patch source cache has no {b.name!r} (it has {sorted(src)}).")
                t = src[b.name]
                if isinstance(t, list):
                    raise SpecError(f"Patch source {b.name!r} holds a list (generation cache); patch from a single forward.")
                m = masks.get(b.name)
                if m is not None and m.dim() == 2 and t.dim() >= 2 and t.shape[:2] == m.shape:  # padded
                    from .ops import to_canon

                    t = to_canon(t, "attn") if b.layout == "attn" else t
                    out[b.name] = [t[i][m[i].to(t.device)] for i in range(t.shape[0])]
                elif m is not None and t.shape[0] == int(m.sum()):  # flat
                    out[b.name] = list(torch.split(t, m.sum(1).tolist()))
                else:  # one per row
                    out[b.name] = [t[i : i + 1] for i in range(t.shape[0])]
            return out
        positions = iv.source_positions if iv.source_positions is not None else iv.positions
        return self._collect_rows(src, bindings, positions)
