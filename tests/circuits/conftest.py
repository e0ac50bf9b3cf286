"""Shared fixtures: the induction LM that `interp demo-lm` trains, and clean/corrupt pairs for it."""
import json

import pytest


@pytest.fixture(scope="session")
def demo_lm(tmp_path_factory):
    """The toy induction LM exactly as `interp demo-lm` builds it (seed 0, ~7 s of training)."""
    from interp.toy_lm import build_toy_lm

    path = tmp_path_factory.mktemp("demo_lm") / "model"
    build_toy_lm(path, seed=0, log=lambda *a: None)
    return path


def induction_pairs(n=16, seed=91):
    """Prompts cut before the last symbol of the repeat; the corrupt prompt changes that symbol's
    first occurrence, so copying it is the only way to the answer. Rows: clean, corrupt,
    answer, distractor, and src (the position of the answer's first occurrence)."""
    from interp.toy_lm import N_SYMBOLS, sample_texts

    rows = []
    for t in sample_texts(n, seed=seed, length=6):
        toks = t.split()
        sep = toks.index("|")
        k = sep - 2  # the answer is the (k+1)-th symbol
        clean = toks[: sep + 1 + k]
        ans = toks[1 + k]
        new = f"s{(int(ans[1:]) + 5) % N_SYMBOLS}"
        corrupt = list(clean)
        corrupt[1 + k] = new
        rows.append({"clean": " ".join(clean), "corrupt": " ".join(corrupt), "answer": ans, "distractor": new,
                     "src": 1 + k})
    return rows


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "src"}) for r in induction_pairs()))
    return path
