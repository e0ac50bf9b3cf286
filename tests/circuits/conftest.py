"""Shared fixtures: the induction LM that `interp demo-lm` trains, and clean/corrupt pairs for it."""
import json

import pytest


@pytest.fixture(scope="session")
def demo_lm(tmp_path_factory):
    """The toy induction LM exactly as `interp demo-lm` builds it (seed 0, ~10 s of training)."""
    from interp.toy_lm import build_toy_lm

    path = tmp_path_factory.mktemp("demo_lm") / "model"
    build_toy_lm(path, seed=0, log=lambda *a: None)
    return path


def induction_pairs(n=16, seed=91):
    """Clean/corrupt induction prompts for the demo-lm model (:func:`interp.toy_lm.induction_pairs`):
    rows with clean, corrupt, answer, distractor, src (position of the answer's first occurrence)."""
    from interp.toy_lm import induction_pairs as pairs

    return pairs(n, seed=seed)


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    keep = ("clean", "corrupt", "answer", "distractor")
    path.write_text("\n".join(json.dumps({k: r[k] for k in keep}) for r in induction_pairs()))
    return path
