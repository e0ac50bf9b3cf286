"""The shared plotting style: known answers for q formatting, integer layer ticks, distinct line
styles, legend outside the axes, atomic group-readable PNGs."""
from __future__ import annotations

import os
import stat

import pytest

from interp.plot_style import format_q, layer_axis, legend_outside, line_styles, save_figure, title_for


def test_format_q():
    assert format_q(0.0) == "< 1e-300"
    assert format_q(5e-324) == "< 1e-300"          # subnormal: underflowed
    assert format_q(1e-300) == "1.0e-300"
    assert format_q(3.21e-5) == "3.2e-05"
    assert format_q(float("nan")) == "nan" and format_q(None) == "nan"


def test_line_styles_are_pairwise_distinct():
    st = line_styles(6)
    for key in ("color", "linestyle", "marker"):
        assert len({str(s[key]) for s in st}) == 6


def test_title_names_model_site_positions():
    assert title_for("ID", model="gpt2", site="resid_post.*", positions="last", n=100) == \
        "ID — gpt2 · resid_post.* · positions last · n = 100"
    assert title_for("ID") == "ID"


@pytest.mark.parametrize("n_layers,expected_max_ticks", [(12, 12), (48, 16)])
def test_integer_layer_ticks_and_legend_outside(tmp_path, n_layers, expected_max_ticks):
    from interp.plot_style import figure

    fig, ax = figure()
    layers = list(range(n_layers))
    ax.plot(layers, [0.5 * i for i in layers], label="a", **line_styles(1)[0])
    ticks = layer_axis(ax, layers)
    assert all(isinstance(t, int) for t in ticks) and len(ticks) <= expected_max_ticks and ticks[0] == 0
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [str(t) for t in ticks] and all("." not in s for s in labels)
    leg = legend_outside(ax)
    fig.canvas.draw()
    lb, ab = leg.get_window_extent(), ax.get_window_extent()
    assert lb.x0 >= ab.x1  # entirely right of the axes: never over data
    path = save_figure(fig, tmp_path / "f" / "x.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temp file left
