"""Per-call sites: a module that runs several times in one forward, hooked at one of its calls.

ALBERT (Lan et al. 2020, "ALBERT: A Lite BERT", §3.1 cross-layer parameter sharing; the authors'
code ``google-research/albert`` ``modeling.py`` ``transformer_model`` reuses one layer's variables
for every layer, as transformers' ``models/albert/modeling_albert.py`` ``AlbertTransformer.forward``
calls ``albert_layer_groups[group_idx]`` once per layer) has ONE layer module that runs
``num_hidden_layers`` times per forward. ``resid_post.L`` there is the output of the ``L``-th
call of that module, not of a module of its own. A :class:`~hooks.sites.Binding` with
``call=L`` says so, and its hooks fire only during that call::

    counter = CallCounter(block, scope=encoder)   # counts block's calls within each encoder forward
    counter.index                                 # 0-based index of the call in progress (-1: none)
    counter.remove()

The count restarts at every forward of ``scope`` (a module that runs once per forward: the encoder,
or the root) and again when that forward ends, even by an exception (``always_call``), so a
failed or stopped forward never shifts the next one; a call of the module outside a forward of
``scope`` is no layer's call (index -1: per-call hooks stay silent). Counters belong to one trace and are removed
with its hooks. Blocks that are distinct modules (every other architecture) have ``call=None``
and never get a counter.
"""
from __future__ import annotations

import torch


class CallCounter:
    """How many times ``module`` has started running in the current forward of ``scope``."""

    def __init__(self, module: torch.nn.Module, scope: torch.nn.Module):
        self.n = 0
        self.inside = False  # a forward of scope is running
        # prepend: the count is up to date before any other pre-hook of the module (ours included) runs
        self._handles = [
            module.register_forward_pre_hook(self._tick, prepend=True),
            scope.register_forward_pre_hook(self._reset, prepend=True),
            scope.register_forward_hook(self._reset_after, always_call=True),
        ]

    def _tick(self, module, args):
        self.n += 1

    def _reset(self, module, args):
        self.n, self.inside = 0, True

    def _reset_after(self, module, args, output):
        self.n, self.inside = 0, False

    @property
    def index(self) -> int:
        """The call in progress (inside the module's forward, its pre- and forward hooks), 0-based;
        -1 outside a forward of ``scope`` (a call of the module on its own is no layer of a forward)."""
        return self.n - 1 if self.inside else -1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
