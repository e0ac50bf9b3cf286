"""SAE evaluation: reconstruction, sparsity and downstream loss with the SAE spliced in.

    m = evaluate_sae(sae, model, "heldout.fasta", batch_size=8)
    m["l0"], m["fvu"], m["explained_variance"], m["mse"], m["dead_fraction"]
    m["loss_clean"], m["loss_sae"], m["loss_zero"], m["loss_recovered"]

Definitions (over every selected token of the data; the SAE reads ``site`` at its
training positions unless ``site``/``positions`` are given):

* ``l0``: mean number of non-zero latents per token;
* ``mse``: mean over tokens of ``||x - x̂||²`` (summed over dimensions, SAELens's convention);
* ``explained_variance`` = 1 - mse / Var(x), Var summed over dimensions around the mean
  activation; ``fvu`` = 1 - explained_variance (fraction of variance unexplained);
* ``dead_fraction``: latents that never fired on these tokens / ``d_sae``;
* downstream: next-token CE for causal LMs, masked-token CE on a fixed random 15% residue
  mask for ESM (see :mod:`hooks.objectives`), clean vs. the site replaced by the SAE's
  reconstruction (``Edit``, no error term) vs. zero-ablated at the same positions;
  ``loss_recovered = (loss_zero - loss_sae) / (loss_zero - loss_clean)`` (1 = as good as
  the clean model, 0 = as bad as zero-ablation; Bricken et al. 2023).
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch

from hooks.objectives import is_masked_lm, lm_targets, token_nll

from .activations import describe_positions, model_lock, resolve_positions
from .data import iter_examples
from .errors import ConfigError, DataError
from .files import positions_of, site_of
from .splicing import SAESplice


class _Recon:
    def __init__(self, d_sae: int):
        self.n, self.sq_err, self.sq_norm, self.l0 = 0, 0.0, 0.0, 0.0
        self.sum_x = None
        self.fired = torch.zeros(d_sae, dtype=torch.bool)

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        s = x.sum(0).cpu()
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.sq_norm += float(x.pow(2).sum())
        self.sq_err += float((x - x_hat).pow(2).sum())
        active = f != 0
        self.l0 += float(active.sum())
        self.fired |= active.any(0).cpu()
        self.n += x.shape[0]

    def metrics(self) -> dict:
        n = self.n
        mse = self.sq_err / n
        var = self.sq_norm / n - float((self.sum_x / n).pow(2).sum())
        ev = (1.0 if mse < 1e-12 else 0.0) if var <= 1e-12 else 1.0 - mse / var
        return {"tokens": n, "l0": self.l0 / n, "mse": mse, "explained_variance": ev, "fvu": 1.0 - ev,
                "dead_fraction": float((~self.fired).float().mean())}


@torch.no_grad()
def evaluate_sae(sae, model, data, *, site: Optional[str] = None, positions=None, batch_size: int = 8,
                 max_examples: Optional[int] = None, seed: int = 0, text_key=None, downstream: bool = True,
                 progress: bool = False) -> dict:
    """Metrics of ``sae`` on ``model`` over ``data`` (see the module docstring)."""
    from hooks import Ablate, Cache, Edit
    from hooks.progress import progress as progress_display

    site = site or site_of(sae)
    if not site:
        raise ConfigError("This SAE's files name no site; pass site=... (e.g. 'resid_post.3').")
    positions = positions if positions is not None else positions_of(sae)
    described = describe_positions(model, positions)
    rec = _Recon(int(sae.cfg.d_sae))
    mlm = is_masked_lm(model)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    n_ce = 0
    dev, dt = sae.W_dec.device, sae.W_dec.dtype
    examples = iter_examples(data, text_key=text_key)
    if max_examples is not None:
        examples = itertools.islice(examples, max_examples)
    with progress_display("evaluating SAE", max_examples, unit="examples", enabled=bool(progress)) as bar:
        for i in itertools.count():
            batch = list(itertools.islice(examples, batch_size))
            if not batch:
                break
            with model_lock(model):
                inputs = model.prepare(batch)
                sel = resolve_positions(model, inputs, positions, described)
                res = model.run(inputs, [Cache(site, sel, device=None, layout="flat")])
                if not res.cache:
                    continue
                acts = next(iter(res.cache.values()))
                x = acts.reshape(acts.shape[0], -1).to(dev, dt)
                f = sae.encode(x)
                rec.add(x, sae.decode(f), f)
                if downstream:
                    run_inputs, targets, where = lm_targets(model, inputs, seed + i)
                    sel_run = resolve_positions(model, run_inputs, positions, described) if mlm else sel
                    clean = model.run(run_inputs).logits if mlm else res.logits
                    spliced = model.run(run_inputs, [Edit(site, sel_run, SAESplice(sae, error_term=False))]).logits
                    zeroed = model.run(run_inputs, [Ablate(site, sel_run, how="zero")]).logits
                    for name, logits in (("clean", clean), ("sae", spliced), ("zero", zeroed)):
                        ce[name] += float(token_nll(logits, targets)[where].double().sum())
                    n_ce += int(where.sum())
            bar.advance(len(batch), tokens=rec.n)
    if rec.n == 0:
        raise DataError("No tokens to evaluate: the data is empty or no example has a selected position.")
    out = {"site": site, **rec.metrics()}
    if downstream:
        if n_ce == 0:
            raise DataError("No tokens to score the downstream loss: every example is shorter than two tokens.")
        lc, ls, lz = ce["clean"] / n_ce, ce["sae"] / n_ce, ce["zero"] / n_ce
        out.update(objective="masked_lm_ce" if mlm else "next_token_ce", loss_tokens=n_ce, loss_clean=lc,
                   loss_sae=ls, loss_zero=lz, loss_recovered=(lz - ls) / (lz - lc) if abs(lz - lc) > 1e-12 else float("nan"))
    return out
