"""Tiny language models trained in seconds, for offline demos and tests.

**The induction LM** (what ``interp demo-lm`` trains): a 2-layer Llama with tiny MLPs trained on
``<bos> r1..rp x1..xn x1..xn`` (a random prefix, then a random segment repeated), with the loss
only on the repeat. Positions vary with ``p`` and ``n`` and there is no separator, so the only
way to predict the repeat is an *induction circuit* (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits"; Olsson et al. 2022, "In-context Learning and Induction
Heads"): a previous-token head in layer 0 writes "my previous token is x" into each position,
and an induction head in layer 1 attends from the current token to the position right after its
earlier occurrence and copies that token. :mod:`interp.head_scores` measures both from the
attention weights; ``tests/circuits/test_induction.py`` checks that patching finds them.

    path = build_toy_lm("runs/demo-lm/model", seed=0)   # trains (~10 s of CPU) and saves
    model = hooks.load(path)
    rows = induction_pairs(16)                       # clean/corrupt prompts with answers

**The copy task** (:func:`sample_texts`, ``<bos> x1..xn | x1..xn`` over 24 symbols) stays for
the other demos and tests that train their own models on it (``interp.topology.planted``).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

N_SYMBOLS = 24  # the copy task's symbols (sample_texts)
INDUCTION_SYMBOLS = 64  # the induction LM's symbols: s0..s63
SEGMENT = (4, 10)  # repeated segment length range (inclusive) in training sequences
PREFIX = (0, 6)  # random prefix length range (inclusive) before the segment
# The demo-lm defaults: the circuit forms by ~300 steps in seeds 0-2 (bench/RESULTS_induction.md).
STEPS, LR, WARMUP, BATCH = 600, 3e-3, 50, 32


def make_tokenizer(n_symbols: int = N_SYMBOLS):
    """Word-level tokenizer: ``<pad>`` 0, ``<bos>`` 1, ``|`` 2, then ``s0 .. s{n_symbols-1}``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "|": 2, **{f"s{i}": 3 + i for i in range(n_symbols)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", unk_token="<pad>")


def sample_texts(n: int, length: int = 8, seed: int = 0) -> list:
    """The copy task: ``<bos> x1..xL | x1..xL`` with ``L`` in ``[length//2, length]``, 24 symbols."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        L = int(torch.randint(length // 2, length + 1, (1,), generator=g))
        syms = torch.randint(0, N_SYMBOLS, (L,), generator=g).tolist()
        half = " ".join(f"s{s}" for s in syms)
        out.append(f"<bos> {half} | {half}")
    return out


def _randint(lo: int, hi: int, g) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def induction_sequences(n: int, seed: int = 0, *, segment=SEGMENT, prefix=PREFIX, n_symbols=INDUCTION_SYMBOLS):
    """``n`` pairs ``(symbols, start)``: ``symbols`` = prefix + segment + segment (symbol indices,
    uniform with repeats), ``start`` = index in ``symbols`` where the repeat begins."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p, L = _randint(*prefix, g), _randint(*segment, g)
        pre = torch.randint(0, n_symbols, (p,), generator=g).tolist()
        seg = torch.randint(0, n_symbols, (L,), generator=g).tolist()
        out.append((pre + seg + seg, p + L))
    return out


def induction_texts(n: int, seed: int = 0, **kw) -> list:
    """Texts of :func:`induction_sequences`: ``"<bos> s5 s17 .. s40 s9 .. s40 s9 .."``."""
    return ["<bos> " + " ".join(f"s{s}" for s in syms) for syms, _ in induction_sequences(n, seed, **kw)]


def induction_batch(n: int, seed: int = 0, **kw):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` except on the repeat
    from its second token on: the positions only induction can predict)."""
    seqs = induction_sequences(n, seed, **kw)
    width = 1 + max(len(s) for s, _ in seqs)
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (syms, start) in enumerate(seqs):
        t = torch.tensor([1] + [3 + s for s in syms])
        ids[i, : len(t)], mask[i, : len(t)] = t, 1
        labels[i, 2 + start : len(t)] = t[2 + start :]  # token 1+start opens the repeat; the next ones are copies
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def induction_pairs(n: int = 16, seed: int = 91, n_symbols: int = INDUCTION_SYMBOLS, corrupt: str = "swap") -> list:
    """Clean/corrupt prompts whose answer only an induction circuit can give.

    Clean: ``<bos> prefix x1..xn x1..xk`` (distinct symbols), answer ``y = x(k+1)``: the token
    after the earlier occurrence of the last token ``x = xk``. Corrupt (``"swap"``): the first
    copy with ``xk`` and ``x(m-1)`` swapped (``m > k+1``), so the earlier ``x`` is now followed
    by ``z = xm`` and the induction answer becomes ``z`` (the distractor). Only two first-copy
    tokens move: the previous-token head (keys) and the induction head (query/output) both carry
    the difference. ``"resample"``: every first-copy token replaced by a fresh symbol, so the
    last token has no earlier occurrence and no induction answer; the distractor is the fresh
    symbol where ``y`` was (what an induction head copies if given clean keys over corrupt
    tokens). Rows: ``clean, corrupt, answer, distractor``, ``src`` (position of ``y`` in clean)
    and ``src_corrupt`` (position of the distractor), positions counting ``<bos>`` as 0."""
    if corrupt not in ("swap", "resample"):
        raise ValueError(f"corrupt must be 'swap' or 'resample', got {corrupt!r}.")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        p, L = _randint(0, 4, g), _randint(6, 10, g)
        syms = torch.randperm(n_symbols, generator=g)[: p + 2 * L].tolist()
        pre, seg, fresh = syms[:p], syms[p : p + L], syms[p + L :]
        k = _randint(2, L - 3, g)  # the prompt ends with seg[k-1]; answer seg[k]
        m = _randint(k + 2, L - 1, g)  # swap: seg[k-1] moves to m-1, so it is followed by seg[m]
        first = list(seg)
        first[k - 1], first[m - 1] = first[m - 1], first[k - 1]
        if corrupt == "resample":
            first, m = fresh, k
        words = lambda xs: " ".join(f"s{s}" for s in xs)  # noqa: E731
        tail = seg[:k]
        rows.append({"clean": f"<bos> {words(pre + seg + tail)}", "corrupt": f"<bos> {words(pre + first + tail)}",
                     "answer": f"s{seg[k]}", "distractor": f"s{first[m]}", "src": 1 + p + k, "src_corrupt": 1 + p + m})
    return rows


def toy_config(vocab_size: int, *, hidden: int = 64, heads: int = 4, mlp: int = 16, layers: int = 2):
    """The induction LM's ``LlamaConfig``: 2 layers x 4 heads, d_model 64, MLPs of width 16 (tiny,
    so attention does the work, but real: ``mlp_out`` sites exist and can be ablated)."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=64,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)


def train_induction_lm(*, seed: int = 0, steps: int = STEPS, lr: float = LR, batch_size: int = BATCH,
                       warmup: int = WARMUP, log=print, **config):
    """Train the induction LM in memory; returns ``(model, tokenizer)``. AdamW, linear warm-up
    then constant ``lr``; the loss is on the repeated segment only (:func:`induction_batch`):
    with the loss on every token, or the others weighted 0.1, the circuit did not form within
    600 steps in some seeds (bench/RESULTS_induction.md). ``config``: :func:`toy_config` sizes."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tok = make_tokenizer(INDUCTION_SYMBOLS)
    model = LlamaForCausalLM(toy_config(len(tok), **config))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
    t0 = time.process_time()
    model.train()
    for step in range(steps):
        loss = model(**induction_batch(batch_size, seed=seed * 1_000_003 + step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:4d}  loss on the repeat {loss.item():.3f}  ({time.process_time() - t0:.1f}s cpu)")
    return model.eval(), tok


def build_toy_lm(path, *, seed: int = 0, steps: int = STEPS, batch_size: int = BATCH, log=print, **kw) -> Path:
    """Train the induction LM (:func:`train_induction_lm`) and save it (safetensors + tokenizer)
    atomically at ``path``; ``hooks.load(path)`` loads it."""
    from hooks.loading import save_pretrained_atomic

    model, tok = train_induction_lm(seed=seed, steps=steps, batch_size=batch_size, log=log, **kw)
    save_pretrained_atomic(model, tok, path)
    return Path(path)
