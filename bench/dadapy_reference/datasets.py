"""Seeded datasets shared by the DADApy reference generator and the benchmark.

Plain numpy (works with numpy 1.x and 2.x). The parity tests do not import
this module: they read the arrays stored by ``generate.py`` in
``tests/data/dadapy/datasets.npz``, so they do not depend on RNG streams.
"""

from __future__ import annotations

import numpy as np


def hypercube(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d))


def rotated_sphere(n: int, d: int, D: int, seed: int) -> np.ndarray:
    """Uniform points on the d-sphere S^d (in R^(d+1)), randomly rotated into R^D."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d + 1))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.standard_normal((D, d + 1)))
    return z @ q.T


def swiss_roll(n: int, seed: int) -> np.ndarray:
    """The classic 2-d Swiss roll in R^3 (same parametrisation as scikit-learn)."""
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    h = 21 * rng.random(n)
    return np.stack([t * np.cos(t), h, t * np.sin(t)], axis=1)


def gaussian_mixture(n: int, D: int, n_clusters: int, sep: float, seed: int):
    """Isotropic unit Gaussians with centres ``sep`` apart on average; returns (X, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, D)) * sep / np.sqrt(2 * D)
    labels = rng.integers(0, n_clusters, n)
    return centres[labels] + rng.standard_normal((n, D)), labels


def embedding_like(n: int, D: int, seed: int, rank: int = 16, n_classes: int = 6):
    """Low-rank structure + noise, like hidden representations of a network.

    Points come from ``n_classes`` latent Gaussian blobs in a ``rank``-dim
    space, mapped to R^D by a random linear map with a decaying spectrum,
    plus isotropic noise; returns (X float32, class labels).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centres = rng.standard_normal((n_classes, rank)) * 2.5
    latent = centres[labels] + rng.standard_normal((n, rank))
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(rank))
    W = rng.standard_normal((rank, D)) * spectrum[:, None]
    X = latent @ W + 0.3 * rng.standard_normal((n, D))
    return X.astype(np.float32), labels


def next_layer(X: np.ndarray, D_out: int, seed: int) -> np.ndarray:
    """A 'next layer' of ``X``: random linear map, tanh, noise (float32)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((X.shape[1], D_out)) / np.sqrt(X.shape[1])
    Y = np.tanh(X.astype(np.float64) @ W * 0.7) + 0.05 * rng.standard_normal((X.shape[0], D_out))
    return Y.astype(np.float32)


def with_duplicates(n: int, D: int, n_dup: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    src = rng.choice(n, n_dup, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n_dup, replace=False)
    X[dst] = X[src]
    return X


def parity_datasets() -> dict:
    """The datasets of the DADApy parity references: name -> (X, labels or None)."""
    emb, emb_lab = embedding_like(3000, 128, seed=5)
    gmm, gmm_lab = gaussian_mixture(2000, 10, 5, sep=14.0, seed=4)
    return {
        "cube_d5": (hypercube(2000, 5, seed=0), None),
        "cube_d10": (hypercube(2000, 10, seed=1), None),
        "sphere_d2_D50": (rotated_sphere(2000, 2, 50, seed=2), None),
        "swiss_roll": (swiss_roll(2000, seed=3), None),
        "gmm_D10": (gmm, gmm_lab),
        "embedding_D128": (emb, emb_lab),
        "embedding_next_D64": (next_layer(emb, 64, seed=6), emb_lab),
    }


def bench_dataset(n: int, D: int, seed: int = 0):
    """Benchmark data: embedding-like representations with class labels."""
    return embedding_like(n, D, seed=seed, rank=32, n_classes=10)
