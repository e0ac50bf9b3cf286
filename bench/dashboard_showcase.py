#!/usr/bin/env python
"""Build the dashboard of a small SAE on the shipped toy protein model and screenshot it for the docs.

    PYTHONPATH=. python bench/dashboard_showcase.py --out runs/dashboard_showcase   # ≈ 2-4 min on CPU
    # writes docs/dashboard_index.png, dashboard_latent.png, dashboard_latent_tracks.png (Chromium, 1280×800; the tracks one 1280×1500)

The toy protein world (:mod:`steering.protein.toy_world`) plants zinc fingers, TM helices and
coiled coils with per-residue annotations; the shipped toy ESM model reads it; a TopK SAE (the
protein demo's settings: k 16, 8 × d_model latents, 200k tokens) is trained at ``resid_post.1``
on 1,500 proteins and shown on 500 others with their ZN_FING / TRANSMEM / COILED tracks. The
latent page screenshot is of the latent with the best annotation F1.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import torch


def shot(url: str, png: Path, size=(1280, 800)):
    exe = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if exe is None:
        raise SystemExit("chromium not found: run .ci/ensure_chromium.sh")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={png.parent / '.chrome-profile'}", f"--window-size={size[0]},{size[1]}",
                    "--virtual-time-budget=3000", f"--screenshot={png}", url], check=True, capture_output=True)
    shutil.rmtree(png.parent / ".chrome-profile", ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/dashboard_showcase"))
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    ap.add_argument("--tokens", type=int, default=200_000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    import numpy as np

    import saes
    from steering.protein.schema import masks_of
    from steering.protein.toy_model import load_toy_model
    from steering.protein.toy_world import make_toy_world

    hm = load_toy_model()
    ds = make_toy_world(2000, seed=0)
    train, show = ds.select(range(1500)), ds.select(range(1500, 2000))
    d_model = hm.model.config.hidden_size
    sae_dir = a.out / "sae"
    if not (sae_dir / "cfg.json").exists():
        saes.train_sae(hm, list(train["sequence"]), "resid_post.1", positions="residues", out=sae_dir, arch="topk",
                       k=16, latents=8 * d_model, tokens=a.tokens, batch_size=1024, lr=2e-3, seed=0, progress=False)
    sae = saes.load_sae(sae_dir)
    ann = {t: masks_of(show, t) for t in ("ZN_FING", "TRANSMEM", "COILED")}
    dash = saes.dashboard(sae, hm, list(show["sequence"]), a.out / "site", annotations=ann,
                          info={"title": "Toy protein SAE (resid_post.1)", "model": "shipped toy ESM",
                                "sae": f"TopK k=16, {8 * d_model} latents, trained on 1,500 toy proteins",
                                "data": "500 other toy-world proteins"})
    best = int(np.argmax(dash.site.best["f1"]))
    print(f"best latent {best}: F1 {dash.site.best['f1'][best]:.3f} on {dash.site.best['track'][best]}")
    a.docs.mkdir(exist_ok=True)
    shot(dash.index_path.resolve().as_uri() + "#sort=best_f1&dir=descending", a.docs / "dashboard_index.png")
    page = (dash.path / "latents" / f"{best:06d}.html").resolve().as_uri()
    shot(page, a.docs / "dashboard_latent.png")
    shot(page, a.docs / "dashboard_latent_tracks.png", size=(1280, 1500))   # down to the traces + tracks
    print(f"wrote {a.docs}/dashboard_index.png, dashboard_latent.png, dashboard_latent_tracks.png")


if __name__ == "__main__":
    main()
