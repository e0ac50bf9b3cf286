"""A tiny induction-task language model, trained in seconds, for offline demos and tests.

Sequences are ``<bos> x1 .. xn | x1 .. xn``: random symbols, a separator, then the same
symbols again. The second half is predictable only by attending back to the first half
(an induction / copying circuit, Olsson et al. 2022), so ablating attention there has a
large, measurable effect while the first half stays at chance.

    path = build_toy_lm("runs/demo/model", seed=0)   # trains (~20 s on 2 cores) and saves
    model = hooks.load(path)
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

N_SYMBOLS = 24


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "|": 2, **{f"s{i}": 3 + i for i in range(N_SYMBOLS)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", unk_token="<pad>")


def sample_texts(n: int, length: int = 8, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        L = int(torch.randint(length // 2, length + 1, (1,), generator=g))
        syms = torch.randint(0, N_SYMBOLS, (L,), generator=g).tolist()
        half = " ".join(f"s{s}" for s in syms)
        out.append(f"<bos> {half} | {half}")
    return out


def build_toy_lm(path, *, seed: int = 0, steps: int = 250, batch_size: int = 32, log=print) -> Path:
    """Train the toy model and save it (safetensors + tokenizer) atomically at ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hooks.loading import save_pretrained_atomic

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    t0 = time.time()
    model.train()
    for step in range(steps):
        texts = sample_texts(batch_size, seed=seed * 100_003 + step)
        enc = tok(texts, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:4d}  loss {loss.item():.3f}  ({time.time() - t0:.1f}s)")
    model.eval()
    save_pretrained_atomic(model, tok, path)
    return Path(path)
