"""``interp id-profile``: representations through the hook registry → ID profile → suggested layers.

The defaults are the protocol of Valeriani, Doimo, Cuturello, Laio, Ansuini, Cazzaniga, "The
geometry of hidden representations of large transformer models" (NeurIPS 2023) as their code
runs it (diegodoimo/geometry_representations):

* **representation**: the output of each block's input norm (``ln_1``) and the final norm
  (``ln_f``), *mean-pooled* over the sequence (``src/model.py``: ``tf.reduce_mean(x_norm,
  axis=1)``) — ``site="input_norm"``, ``pool="mean"``;
* **ID**: TwoNN keeping the ``fraction = 0.98`` smallest ratios, on random subsets of
  ``decimation = 1/32`` of the points, averaged, with the standard error over subsets
  (``id_overlap_helpers.py``: ``compute_id_2NN(decimation=1/32, fraction=0.98, n_iter)``;
  ``compute_id_from_mus``: mean and ``std / sqrt(n_iter)``); ``n_iter`` defaults to
  ``1 / decimation`` (DADApy's default, one pass over the data in expectation);
* **layer choice**: the relative ID minimum after the first peak, beyond the error bars
  (:func:`geometry.select_layers_by_id`, ``n_err = 3`` as their ``plot_id_overlap.py``).

``--pool last`` (the last real token), ``--fraction``, ``--decimation 1`` (all points) and
``--site resid_post.*`` change that::

    interp id-profile --model gpt2 --data texts.txt --out runs/idp            # the paper's protocol
    interp id-profile --model gpt2 --data texts.txt --pool last --decimation 1 --fraction 0.9

    from interp.id_profile import extract_layer_reps, id_profile
    reps = extract_layer_reps(model, texts)                      # {"model.layers.0.input_layernorm": (N, D), ...}
    df = id_profile(reps)                                        # layer, id, id_err, n_points, n_subset
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

PAPER = {"site": "input_norm", "pool": "mean", "fraction": 0.98, "decimation": 1 / 32}
MIN_SUBSET = 10


def _sites(model, site: str) -> list:
    if site == "input_norm":
        from .landscape.sites import paper_sites

        return list(paper_sites(model, "input_norm", logits=False, first=0).values())
    return [b.name for b in model.resolve_sites(site)]


def extract_layer_reps(model, data, site: str = PAPER["site"], positions=None, *, pool: str = PAPER["pool"],
                       batch_size: int = 8, text_key=None, progress: bool = True) -> dict:
    """``{site_name: (N, D) float32 CPU tensor}``, one row per example, for every site of ``site``.

    ``site``: ``"input_norm"`` (each block's input norm + the final norm) or a site pattern such as
    ``"resid_post.*"``. ``pool="mean"``: the mean over the selected tokens of each example
    (``positions``, default all real tokens); ``pool="last"``: the last real token (same as
    ``positions="last"``).
    """
    import torch

    if pool not in ("mean", "last"):
        raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}.")
    if pool == "last":
        positions = "last"
    elif positions is None:
        positions = "all"
    names = _sites(model, site)
    res = model.cache_dataset(data, names, positions, batch_size=batch_size, progress=progress,
                              dtype=torch.float32, text_key=text_key)
    rows = res.rows
    n = int(rows.max()) + 1 if len(rows) else 0
    counts = torch.bincount(rows, minlength=n).clamp_min(1).unsqueeze(1).float()
    out = {}
    for name in names:
        t = res[name].reshape(res[name].shape[0], -1).float()
        out[name] = t if t.shape[0] == n and (counts == 1).all() else \
            torch.zeros(n, t.shape[1]).index_add_(0, rows, t) / counts
    return out


def id_profile(reps: dict, *, fraction: float = PAPER["fraction"], decimation: float = PAPER["decimation"],
               n_iter: Optional[int] = None, seed: int = 0, device=None):
    """TwoNN ID of every layer by the paper's protocol: a DataFrame ``layer, id, id_err, n_points,
    n_subset, n_iter`` (``id_err``: standard error over the random subsets; 0 with ``decimation=1``)."""
    import numpy as np
    import pandas as pd

    from geometry.intrinsic_dim import compute_id_2nn

    if not 0 < decimation <= 1:
        raise ValueError(f"decimation must be in (0, 1], got {decimation}.")
    rows = []
    for name, X in reps.items():
        N = len(X)
        n_sub = int(np.rint(N * decimation))
        if n_sub < MIN_SUBSET:
            raise ValueError(f"{N} examples x decimation {decimation:g} = {n_sub} points per subset; TwoNN needs at "
                             f"least {MIN_SUBSET}. Use at least {int(np.ceil(MIN_SUBSET / decimation))} examples, or "
                             "--decimation 1 (all points, no error bars).")
        est = compute_id_2nn(X, mu_fraction=fraction, data_fraction=decimation, n_iter=n_iter, seed=seed,
                             device=device)
        rows.append({"layer": name, "id": est.id, "id_err": est.err, "n_points": N, "n_subset": n_sub,
                     "n_iter": 1 if decimation == 1 else (n_iter or int(np.rint(1 / decimation)))})
    return pd.DataFrame(rows)


def register(app) -> None:
    import typer

    from steering.cli_common import (opt_batch_size, opt_data, opt_device, opt_dtype, opt_limit, opt_model, opt_out,
                                     opt_seed, opt_text_key, resolve_device)

    @app.command("id-profile")
    def id_profile_cmd(
        model: str = opt_model(),
        data: str = opt_data(check=True),
        site: str = typer.Option(PAPER["site"], help="input_norm (the paper's: block input norms + final norm) or "
                                 "a site pattern, e.g. 'resid_post.*'"),
        pool: str = typer.Option(PAPER["pool"], help="mean (the paper's: mean over tokens) or last (last token)"),
        positions: Optional[str] = typer.Option(None, help="tokens pooled by --pool mean: all (default), residues, "
                                                "'1:' ..."),
        fraction: float = typer.Option(PAPER["fraction"], help="TwoNN: fraction of the smallest ratios kept"),
        decimation: float = typer.Option(PAPER["decimation"], help="TwoNN on random subsets of this fraction of the "
                                         "points, averaged (1: all points)"),
        labels: Optional[Path] = typer.Option(None, help="labels per example (.npy/.txt/.csv/.safetensors)"),
        out: Path = opt_out("id-profile", help="directory for profile.csv, PNGs and reps.safetensors"),
        batch_size: int = opt_batch_size(),
        limit: Optional[int] = opt_limit(),
        text_key: Optional[str] = opt_text_key(),
        device: Optional[str] = opt_device(),
        dtype: Optional[str] = opt_dtype(),
        geometry_device: Optional[str] = typer.Option(None, "--geometry-device",
                                                      help="device for the kNN/ID computations: cpu, cuda "
                                                      "(default: the model's --device)"),
        seed: int = opt_seed(help="seed of the TwoNN random subsets"),
    ):
        """Intrinsic-dimension profile over layers and the suggested layers (Valeriani et al. 2023)."""
        import hooks
        from hooks.data import load_examples
        from hooks.positions import normalize

        from .geometry.cli import load_labels, print_profile
        from geometry.errors import GeometryInputError
        from geometry.profile import layer_profile, save_profile, select_layers_by_id

        try:
            device = resolve_device(device)
            hm = hooks.load(model, device=device, dtype=dtype)
            examples = load_examples(data, text_key)[:limit]
            sel = None if positions is None else normalize(int(positions) if positions.lstrip("-").isdigit()
                                                           else positions)
            reps = extract_layer_reps(hm, examples, site, sel, pool=pool, batch_size=batch_size)
            lab = load_labels(labels) if labels is not None else None
            if out is not None:
                from safetensors.torch import save_file

                from hooks.io import atomic_path

                with atomic_path(out / "reps.safetensors") as tmp:  # safetensors writes 0600; this gives the umask's
                    save_file({k: v.contiguous() for k, v in reps.items()}, str(tmp))
            dev = None if (geometry_device or device) == "auto" else (geometry_device or device)
            ids = id_profile(reps, fraction=fraction, decimation=decimation, device=dev, seed=seed)
            df = layer_profile(reps, lab, device=dev)
            df["id"], df["id_err"] = ids["id"].to_numpy(), ids["id_err"].to_numpy()
            df.attrs["protocol"] = {"site": site, "pool": pool, "fraction": fraction, "decimation": decimation}
            df.attrs.update(model=str(model), site=site,
                            positions="last" if pool == "last" else f"{positions or 'all'}, {pool}-pooled")
            chosen, why = select_layers_by_id(df, return_reason=True)
            paths = save_profile(df, out, chosen) if out is not None else []
            print_profile(df, chosen, paths)
            typer.echo(f"ID: TwoNN keeping {fraction:g} of the ratios on random {decimation:g} subsets "
                       f"(mean ± standard error), {pool}-pooled '{site}'" + (f"; no minimum: {why}" if why else ""))
        except (hooks.HookError, GeometryInputError, ValueError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
