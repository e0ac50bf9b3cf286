"""SAEs on a VLM's language model: text positions only by default, trained, spliced and evaluated."""
import torch

import saes
from saes import activations as A


def rows(images, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        words = [f"w{int(j)}" for j in torch.randint(0, 40, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)]
        cut = int(torch.randint(0, len(words) + 1, (1,), generator=g))
        out.append({"text": " ".join(words[:cut] + ["<image>"] + words[cut:]), "image": images[i % len(images)]})
    return out


def test_vlm_language_model_sae(llava, tmp_path):
    hm, images = llava
    data = rows(images)
    acts, mask = A.collect(hm, data[:5], "resid_post.1")
    n_text = sum(len(r["text"].split()) - 1 for r in data[:5])
    assert acts.shape == (n_text, 32)                                   # 4 image positions per row left out
    assert A.describe_positions(hm, "auto")["base"] == "text"
    img = A.collect(hm, data[:5], "resid_post.1", "image")[0]
    assert img.shape == (4 * 5, 32)
    res = saes.train_sae(hm, data, "resid_post.1", out=tmp_path / "vlm", k=4, latents=48, tokens=16 * 6,
                         batch_size=16, buffer_size=48, model_batch_size=6, lr=1e-3, checkpoint_every=3)
    again = saes.train_sae(hm, data, "resid_post.1", out=tmp_path / "vlm", k=4, latents=48, tokens=16 * 6,
                           batch_size=16, buffer_size=48, model_batch_size=6, lr=1e-3, checkpoint_every=3)
    assert torch.equal(again.sae.W_dec, res.sae.W_dec)                  # the image-bearing data fingerprint is stable
    batch = {"text": [r["text"] for r in data[:3]], "images": [r["image"] for r in data[:3]]}
    clean = hm.run(batch).logits
    assert torch.equal(hm.run(batch, [saes.splice(res.sae)]).logits, clean)
    m = saes.evaluate_sae(res.sae, hm, data[:8], batch_size=4)
    assert m["tokens"] == sum(len(r["text"].split()) - 1 for r in data[:8]) and m["l0"] == 4
    assert m["objective"] == "next_token_ce" and 0 < m["loss_tokens"]
