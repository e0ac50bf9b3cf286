import numpy as np
import pytest


from interp.topology.planted import planted_circles  # noqa: E402


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
