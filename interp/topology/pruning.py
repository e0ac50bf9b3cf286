"""Which blocks to cut: the zigzag rule, its baselines and a random control; cutting them.

* **Zigzag rule** (Gardinazzi et al. 2025, Sec. 5; YuriGardinazzi/conferenceProject
  ``src/benchmark/benchmark.py``: ``similarity_persistance`` and ``layers_to_cut_given_r``):
  on H1, r_i = mean_j PS_1(i, j) / beta_1(j) over all layers j (the final-norm cloud included);
  cut every block i (the final-norm entry excluded) with r_i >= p * max(r), p = 0.9 and 0.8.
  With several subsets r is averaged over subsets. Terms with beta_1(j) = 0 are 0/0 in the
  authors' code (which then cuts nothing); here they count as 0 and are reported.
* **Angular distance** (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper
  Layers"; as in short-transformers ``dist.angular_distance_*`` and
  ``utils.get_best_pruning_start``, which the authors vendor under
  ``src/benchmark/reproducibility/pythia_version``): d(l, l+n) = mean arccos(cos(h_l, h_{l+n}))/pi
  over tokens, h_l the input of block l; cut the n consecutive blocks starting at argmin_l.
* **Block influence** (ShortGPT, Men et al. 2024; short-transformers ``dist.bi_score``):
  BI_i = 1 - mean cos(h_i, h_{i+1}); cut the n blocks of lowest BI.
* **Random control**: n blocks drawn uniformly, several draws.

Baselines cut as many blocks as the zigzag rule does at the same p.

    >>> r, n_zero_betti = zigzag_scores(res.ps[:, 1], res.betti[:, 1]); zigzag_cut(r, 0.9)
    >>> with skip_blocks(hm, [5, 6]): loss = hm.run(batch).logits     # blocks 5, 6 are identities
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

__all__ = ["pruned_metric", "zigzag_pruning", "zigzag_scores", "zigzag_cut", "angular_distances", "angular_cut", "block_influence",
           "influence_cut", "random_cuts", "pruning_plan", "skip_blocks", "pruned_loss"]


def zigzag_scores(ps1: np.ndarray, betti1: np.ndarray) -> tuple:
    """``(r, n_zero)``: r_i = mean_j PS(i, j) / beta(j) (averaged over a leading subset axis, if any)."""
    ps1 = np.asarray(ps1, float)
    b = np.asarray(betti1, float)
    if ps1.ndim == 2:
        ps1, b = ps1[None], b[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(b[:, None, :] > 0, ps1 / b[:, None, :], 0.0)
    return t.mean(2).mean(0), int((b == 0).sum())


def zigzag_cut(r: np.ndarray, p: float = 0.9, final_norm: bool = True) -> list:
    """Blocks i with r_i >= p * max(r); the last entry (final norm) is never a block to cut."""
    r = np.asarray(r, float)
    top = r.max()
    n = len(r) - (1 if final_norm else 0)
    return [int(i) for i in range(n) if r[i] >= p * top]


def _as2d(x):
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.double().reshape(t.shape[0], -1)


def angular_distances(hidden: list) -> np.ndarray:
    """``(n_states, n_states)`` matrix ``D[n, l]`` = mean_t arccos(cos(h_l, h_{l+n})) / pi (NaN where l+n is out)."""
    import torch

    hs = [_as2d(h) for h in hidden]
    S = len(hs)
    out = np.full((S, S), np.nan)
    unit = [torch.nn.functional.normalize(h, dim=1, eps=1e-6) for h in hs]
    for n in range(S):
        for l in range(S - n):
            cos = (unit[l] * unit[l + n]).sum(1).clamp(-1, 1)
            out[n, l] = float(torch.arccos(cos).mean() / math.pi)
    return out


def angular_cut(dist: np.ndarray, n: int) -> list:
    """n consecutive blocks starting at argmin_l D[n, l] (``get_best_pruning_start``)."""
    if n <= 0:
        return []
    n_blocks = dist.shape[0] - 1
    start = int(np.nanargmin(dist[n, : n_blocks - n + 1]))
    return list(range(start, start + n))


def block_influence(hidden: list) -> np.ndarray:
    """BI_i = 1 - mean_t cos(h_i, h_{i+1}) for the blocks i = 0 .. len(hidden) - 2."""
    import torch

    hs = [_as2d(h) for h in hidden]
    return np.array([float(1 - torch.nn.functional.cosine_similarity(hs[i], hs[i + 1], dim=1, eps=1e-6).mean())
                     for i in range(len(hs) - 1)])


def influence_cut(bi: np.ndarray, n: int) -> list:
    return sorted(int(i) for i in np.argsort(bi, kind="stable")[:n])


def random_cuts(n_blocks: int, n: int, draws: int = 5, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [sorted(int(i) for i in rng.choice(n_blocks, size=n, replace=False)) for _ in range(draws)]


def pruning_plan(ps1, betti1, hidden=None, *, ps=(0.9, 0.8), final_norm: bool = True, random_draws: int = 5,
                 seed: int = 0, hidden_note: str = "") -> dict:
    """Blocks cut at each p by each method (the content of ``pruning.json``)."""
    r, n_zero = zigzag_scores(ps1, betti1)
    n_blocks = len(r) - (1 if final_norm else 0)
    plan = {"rule": "zigzag H1: cut block i when r_i >= p * max(r), r_i = mean_j PS_1(i,j)/beta_1(j)",
            "n_blocks": n_blocks, "zigzag_r": r.tolist(), "zero_betti_terms": n_zero, "cuts": {}}
    ang = bi = None
    if hidden is not None:
        if len(hidden) != n_blocks + 1:
            raise ValueError(f"baselines need the residual stream before and after each of the {n_blocks} blocks "
                             f"({n_blocks + 1} states); got {len(hidden)}.")
        ang, bi = angular_distances(hidden), block_influence(hidden)
        plan["block_influence"] = bi.tolist()
        plan["angular_distance"] = {str(n): ang[n, : n_blocks - n + 1].tolist() for n in range(1, n_blocks)}
        plan["baseline_states"] = hidden_note
    for p in ps:
        cut = zigzag_cut(r, p, final_norm)
        entry = {"zigzag": cut}
        n = len(cut)
        if ang is not None and 0 < n < n_blocks:
            entry["angular_distance"] = angular_cut(ang, n)
            entry["block_influence"] = influence_cut(bi, n)
        if 0 < n < n_blocks:
            entry["random"] = random_cuts(n_blocks, n, random_draws, seed)
        plan["cuts"][str(p)] = entry
    return plan


@contextlib.contextmanager
def skip_blocks(hm, blocks):
    """Within the block, each listed transformer block returns its input unchanged (block removal).

    The block still runs (its output is discarded), so nothing about the model object changes;
    our hooks are removed on exit, even after an exception.
    """
    import torch

    from hooks.errors import HookError

    handles = []
    try:
        for i in sorted(set(int(b) for b in blocks)):
            if not 0 <= i < hm.n_layers:
                raise HookError(f"block {i} does not exist: the model has blocks 0..{hm.n_layers - 1}.")
            b = hm.resolve_sites(f"resid_post.{i}")[0]
            if getattr(b, "call", None) is not None:
                raise HookError(f"skip_blocks: the model's layers share one module (resid_post.{i} is call {b.call} of "
                                f"{type(b.module).__name__}, e.g. ALBERT), and a hook on it would skip every layer; "
                                "block removal is supported only on models with one module per layer.")
            mod = b.module
            store = {}

            def pre(m, args, kwargs, _s=store):
                if args and isinstance(args[0], torch.Tensor):
                    _s["x"] = args[0]
                else:
                    key = "hidden_states" if "hidden_states" in kwargs else next(
                        (k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
                    if key is None:
                        raise HookError(f"block {m.__class__.__name__}: no tensor input to pass through.")
                    _s["x"] = kwargs[key]

            def post(m, args, output, _s=store):
                x = _s.pop("x")
                return (x, *output[1:]) if isinstance(output, tuple) else x

            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(mod.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


def pruned_loss(hm, data, blocks_sets: dict, *, batch_size: int = 8, text_key=None, progress: bool = False) -> dict:
    """Held-out loss (mean next-token / masked-token cross-entropy) of the full model and of each
    pruned variant: ``{"full": {...}, name: {"blocks", "loss", "delta_loss"}}``."""
    import torch

    from hooks.data import iter_batches
    from hooks.objectives import lm_targets, token_nll

    sums = {name: 0.0 for name in ["full", *blocks_sets]}
    n_tok = 0
    with torch.no_grad():
        for i, batch in enumerate(iter_batches(data, batch_size, text_key=text_key, progress=progress)):
            inputs, targets, where = lm_targets(hm, hm.prepare(batch), i)
            n_tok += int(where.sum())
            sums["full"] += float(token_nll(hm.run(inputs).logits, targets)[where].sum())
            for name, blocks in blocks_sets.items():
                with skip_blocks(hm, blocks):
                    sums[name] += float(token_nll(hm.run(inputs).logits, targets)[where].sum())
    if n_tok == 0:
        raise ValueError("no tokens to score: every example is shorter than two tokens.")
    full = sums["full"] / n_tok
    out = {"tokens": n_tok, "full": {"blocks": [], "loss": full}}
    for name, blocks in blocks_sets.items():
        out[name] = {"blocks": sorted(int(b) for b in blocks), "loss": sums[name] / n_tok,
                     "delta_loss": sums[name] / n_tok - full}
    return out


def zigzag_pruning(ps1, betti1, p: float = 0.9, final_norm: bool = True) -> list:
    """The authors' rule in one call: blocks with r_i >= p * max(r) (see :func:`zigzag_scores`)."""
    return zigzag_cut(zigzag_scores(ps1, betti1)[0], p, final_norm)


def pruned_metric(hm, metric, blocks_sets: dict) -> dict:
    """Any task metric on the full model and on each pruned variant: ``metric(hm) -> float`` is
    called once plainly and once inside :func:`skip_blocks` per variant (lm-eval, accuracy, ...).
    Returns ``{"full": value, name: value, ...}``."""
    out = {"full": float(metric(hm))}
    for name, blocks in blocks_sets.items():
        with skip_blocks(hm, blocks):
            out[name] = float(metric(hm))
    return out
