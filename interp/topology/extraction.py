"""Point clouds per layer through the hook registry, at the authors' site by default.

The authors take the last token of each prompt at the output of every block's
post-attention norm, plus the final norm: 33 clouds for a 32-layer model
(YuriGardinazzi/conferenceProject, ``src/representation/rep-extraction/extract.py`` with the
``post_attention_layernorm`` targets; ``src/benchmark/benchmark.py`` comment "the layers are
N_layers+1 because ... the representations are taken with also the output_layernorm").
``site="authors"`` resolves, for any adapter, the norm module whose *input* is the canonical
``resid_mid.{i}`` site (Llama/Mistral/Qwen ``post_attention_layernorm``, GPT-2 ``ln_2``) and
hooks its output, then ``final``. Any other canonical pattern (``resid_post.*``) or list of
sites works too. Extraction is batched and stops after the deepest site (``cache_dataset``).

Text prompts are tokenised as the authors do (``src/representation/rep-extraction/utils/
dataset_utils.py``, ``encode_func``: ``add_special_tokens=False``, ``truncation=True``,
``max_length=2048``): no BOS, the first 2,048 tokens kept; :func:`tokenize_prompts` counts the
truncated prompts.

    >>> import hooks
    >>> from interp.topology.extraction import extract_clouds
    >>> reps = extract_clouds(hooks.load("gpt2"), texts)    # {"h.0.ln_2": (N, D), ..., "final": (N, D)}
"""
from __future__ import annotations

__all__ = ["AUTHORS_SITE", "authors_sites", "extract_clouds", "residual_sites", "tokenize_prompts"]

AUTHORS_SITE = "authors"


def authors_sites(hm) -> list:
    """Module paths of every block's pre-MLP norm output, then ``final``."""
    from hooks.errors import HookError

    paths = {id(m): n for n, m in hm.model.named_modules()}
    out = []
    for i in range(hm.n_layers):
        try:
            b = hm.resolve_sites(f"resid_mid.{i}")[0]
        except HookError as e:
            raise HookError(f"--site authors needs the resid_mid.{i} site, which adapter {hm.adapter.name} lacks "
                            f"({e}); pass --site 'resid_post.*' instead.") from e
        name = type(b.module).__name__.lower()
        if b.kind != "input" or "norm" not in name and not name.startswith("ln"):
            raise HookError(f"adapter {hm.adapter.name}: resid_mid.{i} is not the input of a norm module "
                            f"({type(b.module).__name__}); pass --site 'resid_post.*' instead.")
        out.append(paths[id(b.module)])
    try:
        hm.resolve_sites("final")
    except HookError as e:
        raise HookError(f"adapter {hm.adapter.name} has no 'final' norm site; pass --site 'resid_post.*'.") from e
    return out + ["final"]


def residual_sites(hm) -> list:
    """``resid_pre.0`` then every ``resid_post.i``: the residual stream h_0 .. h_L (for the baselines)."""
    return ["resid_pre.0"] + [f"resid_post.{i}" for i in range(hm.n_layers)]


def tokenize_prompts(hm, texts, max_tokens: int | None = 2048, add_special_tokens: bool = False) -> tuple:
    """``(token id lists, n_truncated)``; texts unchanged (``None``) when they are not all strings or
    the model has no tokenizer (sequences, token ids: the registry handles them)."""
    from hooks.errors import HookError

    if hm.tokenizer is None or not texts or not all(isinstance(t, str) for t in texts):
        return None, 0
    ids = hm.tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]
    empty = [i for i, x in enumerate(ids) if len(x) == 0]
    if empty:
        raise HookError(f"{len(empty)} prompt(s) have no tokens (first: #{empty[0]}); remove empty prompts.")
    n_trunc = sum(len(x) > max_tokens for x in ids) if max_tokens else 0
    return ([list(x[:max_tokens]) for x in ids] if max_tokens else [list(x) for x in ids]), n_trunc


def extract_clouds(hm, data, site=AUTHORS_SITE, positions="last", *, batch_size: int = 8, text_key=None,
                   progress: bool = True, max_tokens: int | None = 2048, add_special_tokens: bool = False,
                   info: dict | None = None) -> dict:
    """``{site: (N, D) float32}`` in layer order (see the module docstring for ``site``).

    ``info`` (a dict), when given, receives ``n_truncated`` (prompts cut to ``max_tokens``).
    """
    import torch

    if isinstance(data, (list, tuple)):
        ids, n_trunc = tokenize_prompts(hm, data, max_tokens, add_special_tokens)
        if ids is not None:
            data = ids
        if info is not None:
            info["n_truncated"] = n_trunc

    sites = authors_sites(hm) if site == AUTHORS_SITE else site
    res = hm.cache_dataset(data, sites, positions, batch_size=batch_size, progress=progress,
                           dtype=torch.float32, text_key=text_key)
    return {b.name: res[b.name].reshape(res[b.name].shape[0], -1) for b in hm.resolve_sites(sites)}
