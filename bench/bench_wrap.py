"""Cost of wrapping: ``hooks.wrap`` with and without the load-time self-check, and with structural
inference, on GPT-2-small-size random models (no weights downloaded).

    python bench/bench_wrap.py            # writes nothing; prints a Markdown table

Variants are interleaved and repeated; medians with ranges; 1 torch thread. Compared with one plain
forward of the same model on the self-check's input (5 tokens), which is what the check adds.
"""
from __future__ import annotations

import statistics
import sys
import time
import warnings

import torch


def _models():
    import transformers as T

    torch.manual_seed(0)
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config()).eval()  # 124M, hand-written adapter
    neox = T.GPTNeoXForCausalLM(T.GPTNeoXConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                intermediate_size=3072, vocab_size=50304)).eval()  # Pythia-160M shape
    esm = T.EsmForMaskedLM(T.EsmConfig(vocab_size=33, hidden_size=480, num_hidden_layers=12, num_attention_heads=20,
                                       intermediate_size=1920, position_embedding_type="rotary", pad_token_id=1,
                                       mask_token_id=32, token_dropout=True)).eval()  # ESM-2 35M shape
    return {"gpt2 (124M, hand-written)": gpt2, "gpt_neox (Pythia-160M shape, inferred)": neox,
            "esm (ESM-2 35M shape, thin override on inference)": esm}


def main(repeats: int = 5):
    import hooks
    from hooks.infer import probe_ids

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = []
    for name, m in _models().items():
        ids = probe_ids(m, n=5)
        t = {"forward (5 tokens)": [], "wrap(verify=False)": [], "wrap(verify=True)": []}
        for _ in range(repeats):
            for k in t:
                t0 = time.perf_counter()
                if k.startswith("forward"):
                    with torch.no_grad():
                        m(input_ids=ids)
                else:
                    hooks.wrap(m, verify=k.endswith("True)"))
                t[k].append(time.perf_counter() - t0)
        for k, v in t.items():
            rows.append((name, k, statistics.median(v) * 1e3, min(v) * 1e3, max(v) * 1e3))
    print("| model | operation | median ms | range ms |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f}–{r[4]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
