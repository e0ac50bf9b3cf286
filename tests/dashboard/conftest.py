"""Tiny models, planted SAEs and a headless-Chromium helper for the dashboard tests (offline, seconds)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import hooks
from tests.hooks import tiny_models as TM

PLANTED, TOKEN = 5, 17          # latent 5 fires on token id 17 and nowhere else


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def token_rows(n, seed=0, lo=6, hi=20, vocab=64):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [[1] + torch.randint(3, vocab, (m,), generator=g).tolist() for m in lengths]


def planted_sae(W_E: torch.Tensor, *, d_sae=16, planted=PLANTED, token=TOKEN, seed=0):
    """A ReLU SAE reading token embeddings (site ``embed``): latent ``planted`` has encoder
    direction e_token/|e_token| and a bias half-way between e_token's projection and the largest
    projection of any other token, so it fires on ``token`` and only there (activation = half
    the gap, the same at every occurrence). The other latents are random directions with biases
    that let each fire on some tokens."""
    from sae_lens import StandardSAE, StandardSAEConfig

    g = torch.Generator().manual_seed(seed)
    d = W_E.shape[1]
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=d_sae))
    with torch.no_grad():
        W = torch.randn(d, d_sae, generator=g)
        W = W / W.norm(dim=0, keepdim=True)
        u = W_E[token] / W_E[token].norm()
        W[:, planted] = u
        proj = W_E[3:] @ W                                   # (tokens >= 3, d_sae) projections of real tokens
        srt = proj.sort(dim=0).values
        i = int(0.8 * srt.shape[0])
        b = -(srt[i - 1] + srt[i]) / 2          # random latents fire on ~20% of tokens, no pre-activation near 0
        others = torch.cat([W_E[3:token], W_E[token + 1:]]) @ u
        b[planted] = -(float(W_E[token] @ u) + float(others.max())) / 2
        sae.W_enc.copy_(W)
        sae.b_enc.copy_(b)
        sae.W_dec.copy_(torch.randn(d_sae, d, generator=g) / d ** 0.5)
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="session")
def gpt2():
    return hooks.wrap(TM.build("gpt2"))


@pytest.fixture(scope="session")
def rows():
    return token_rows(24, seed=3)


def chromium() -> str | None:
    for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(b)
        if p:
            return p
    return None


needs_chromium = pytest.mark.skipif(chromium() is None, reason="headless Chromium not installed "
                                    "(CI installs Debian's `chromium` with .ci/ensure_chromium.sh)")


def dump_dom(path: Path, fragment: str = "", *, tmp: Path, timeout: int = 60) -> tuple[str, str]:
    """Load ``path`` in headless Chromium, let scripts run, return (DOM after scripts, stderr log)."""
    url = Path(path).resolve().as_uri() + fragment
    profile = tmp / f"chrome-profile-{os.getpid()}"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=3000", "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"chromium exited {p.returncode}: {p.stderr[-2000:]}")
    return p.stdout, p.stderr


def console_errors(stderr: str) -> list:
    """Console messages Chromium logged with --enable-logging (``...:CONSOLE:...`` lines: uncaught
    exceptions, console.error/warn/log). Our pages log nothing, so any message is a failure."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def screenshot(path: Path, png: Path, *, tmp: Path, size=(1280, 800), fragment: str = "", timeout: int = 60) -> None:
    url = Path(path).resolve().as_uri() + fragment
    profile = tmp / f"chrome-shot-{os.getpid()}"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=3000",
           f"--screenshot={png}", url]
    subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def pytest_collection_modifyitems(config, items):
    quiet = [pytest.mark.filterwarnings("ignore:HookedTransformer.*deprecated:DeprecationWarning"),
             pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning")]
    for item in items:
        if "dashboard" in Path(str(item.fspath)).parts:
            for m in quiet:
                item.add_marker(m)
