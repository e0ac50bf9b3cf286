import numpy as np
import pytest


def planted_circles(flatten_at, n_layers, *, n_points=24, dim=8, born_at=(), seed=0):
    """Clouds with one component per entry: a circle of evenly spaced points that is unrolled
    into a segment (same spacing) from layer ``flatten_at[c]`` on (None: never), plus segments
    that close into circles at ``born_at[j]``. Every layer is randomly rotated (distances kept)."""
    rng = np.random.default_rng(seed)
    theta = 2 * np.pi * np.arange(n_points) / n_points
    circle = np.c_[np.cos(theta), np.sin(theta)]
    arc = 2 * np.sin(np.pi / n_points)  # chord of the circle: same nearest-neighbour spacing
    segment = np.c_[arc * np.arange(n_points), np.zeros(n_points)]
    shapes = [(f, "flatten") for f in flatten_at] + [(g, "born") for g in born_at]
    clouds = []
    for layer in range(n_layers):
        parts = []
        for c, (t, kind) in enumerate(shapes):
            is_circle = (t is None or layer < t) if kind == "flatten" else layer >= t
            pts = np.zeros((n_points, dim))
            pts[:, :2] = circle if is_circle else segment
            pts[:, 2 + c % (dim - 2)] += 100.0 * (c + 1)  # far apart: kNN stays inside a component
            parts.append(pts)
        x = np.concatenate(parts)
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        clouds.append(x @ q + rng.normal(size=dim))
    return clouds


def drifting_clouds(n_points=60, dim=4, n_layers=5, step=0.25, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_points, dim))
    out = []
    for _ in range(n_layers):
        x = x + step * rng.normal(size=x.shape)
        out.append(x.copy())
    return out


@pytest.fixture
def circles():
    return planted_circles


@pytest.fixture
def drifting():
    return drifting_clouds
