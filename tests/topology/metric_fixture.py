"""A task metric for `interp prune --metric` tests: top-1 next-token accuracy on the prompts."""
import torch

from hooks.objectives import lm_targets


@torch.no_grad()
def top1(model, examples):
    inputs, targets, where = lm_targets(model, model.prepare(list(examples)[:16]))
    return float((model.run(inputs).logits.argmax(-1) == targets)[where].float().mean())
