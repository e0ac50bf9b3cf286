"""Seeded synthetic data for the geometry tests (plain numpy, no DADApy)."""

from __future__ import annotations

import numpy as np
import pytest


def hypercube(n, d, seed):
    return np.random.default_rng(seed).random((n, d))


def rotated_sphere(n, d, D, seed):
    """Uniform on the d-sphere S^d (in R^(d+1)), randomly rotated into R^D."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d + 1))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    q, _ = np.linalg.qr(rng.standard_normal((D, d + 1)))
    return z @ q.T


def swiss_roll(n, seed):
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    h = 21 * rng.random(n)
    return np.stack([t * np.cos(t), h, t * np.sin(t)], axis=1)


def gaussian_mixture(n, D, n_clusters, sep, seed, weights=None):
    """Unit Gaussians whose centres are ``sep`` apart on average; returns (X, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, D)) * sep / np.sqrt(2 * D)
    labels = rng.choice(n_clusters, size=n, p=weights)
    return centres[labels] + rng.standard_normal((n, D)), labels


@pytest.fixture(scope="session")
def gmm_separated():
    # 4 clusters, centres ~25 apart in 8-d: "well separated" (min distance checked below)
    X, y = gaussian_mixture(2000, 8, 4, sep=25.0, seed=11)
    return X, y
