"""The shared plotting style (:mod:`hooks.plot_style`): known answers for q formatting, layer
numbers, integer layer ticks, distinct line styles, legends outside the axes, atomic
group-readable PNGs; that no figure in the repository is drawn or saved outside it; and the
rules checked on the figures the repository's own plotting functions draw (tools/figure_gallery.py)."""
from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import stat
from pathlib import Path

import pytest

from hooks.plot_style import (FIGURE_FUNCTIONS, capture, figure, format_q, layer_axis, layer_numbers, legend_outside,
                              line_styles, save_figure, title_for)

ROOT = Path(__file__).resolve().parents[1]
STYLE = ROOT / "hooks" / "plot_style.py"
PACKAGES = ("hooks", "geometry", "saes", "steering", "interp", "tools", "bench")


def test_interp_re_exports_the_style():
    import interp.plot_style as legacy

    assert legacy.format_q is format_q and legacy.save_figure is save_figure


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
    nested = line_styles(4, nested=True)
    widths = [s["linewidth"] for s in nested]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 4


def test_title_names_model_site_positions():
    assert title_for("ID", model="gpt2", site="resid_post.*", positions="last", n=100) == \
        "ID — gpt2 · resid_post.* · positions last · n = 100"
    assert title_for("ID") == "ID"


def test_layer_numbers():
    assert layer_numbers([f"transformer.h.{i}.ln_1" for i in range(3)] + ["transformer.ln_f"]) == \
        ([0, 1, 2, 3], {3: "transformer.ln_f"})
    assert layer_numbers(["embed", "resid_post.0", "resid_post.1", "final"]) == \
        ([-1, 0, 1, 2], {-1: "embed", 2: "final"})
    assert layer_numbers([3, 5, 7]) == ([3, 5, 7], {})
    assert layer_numbers(["a", "b"]) == ([0, 1], {0: "a", 1: "b"})


@pytest.mark.parametrize("n_layers,expected_max_ticks", [(12, 12), (48, 16)])
def test_integer_layer_ticks_and_legend_outside(tmp_path, n_layers, expected_max_ticks):
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


def test_heatmap_layer_ticks_at_rows():
    fig, ax = figure()
    ax.imshow([[0, 1]] * 3)
    assert layer_axis(ax, ["blocks.4.x", "blocks.5.x", "blocks.6.x"], axis="y", at=range(3)) == [4, 5, 6]
    assert list(ax.get_yticks()) == [0, 1, 2] and [t.get_text() for t in ax.get_yticklabels()] == ["4", "5", "6"]


# --- every figure goes through the style module -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _sources() -> tuple:
    """``((path, ast), ...)`` of every Python file of the packages and tools except the style module."""
    return tuple((path, ast.parse(path.read_text(), str(path))) for pkg in PACKAGES
                 for path in sorted((ROOT / pkg).rglob("*.py")) if path != STYLE)


def test_no_figure_is_drawn_or_saved_outside_the_style_module():
    """A ``savefig``, a matplotlib import or a pyplot call anywhere but hooks/plot_style.py fails: figures
    are made with ``figure()`` and written with ``save_figure()``."""
    bad = []
    for path, tree in _sources():
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "matplotlib" for a in node.names):
                bad.append(f"{rel}:{node.lineno} imports matplotlib")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "matplotlib":
                bad.append(f"{rel}:{node.lineno} imports from {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr in ("savefig", "subplots") and \
                    not (isinstance(node.value, ast.Name) and node.value.id == "fig" and node.attr == "subplots"):
                bad.append(f"{rel}:{node.lineno} calls .{node.attr}")
    assert not bad, "figure code outside hooks/plot_style.py (use figure()/save_figure()):\n" + "\n".join(bad)


def test_every_figure_function_is_styled():
    """Every function that writes a figure (calls ``save_figure``) runs under the shared rc style: decorated with
    ``@styled`` or wrapped as ``styled(fn)`` by its caller."""
    bad, found = [], 0
    for path, tree in _sources():
        wrapped = {a.id for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "styled"
                   for a in n.args if isinstance(a, ast.Name)}
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            saves = any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == "save_figure"
                        for n in ast.walk(fn))
            if saves:
                found += 1
                decorated = any(getattr(d, "id", getattr(d, "attr", "")) == "styled" for d in fn.decorator_list)
                if not (decorated or fn.name in wrapped):
                    bad.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}")
    assert found >= 10, found  # the scan sees the figure functions
    assert not bad, "figure functions not under @styled:\n" + "\n".join(bad)


# --- the rules on the repository's own figures ---------------------------------------------------------------------

def _gallery():
    spec = importlib.util.spec_from_file_location("figure_gallery", ROOT / "tools" / "figure_gallery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """``[(file name, fig)]`` of every figure the gallery's plotting functions write (figures kept open)."""
    gallery = _gallery()
    with capture() as figs:
        gallery.render_all(tmp_path_factory.mktemp("gallery"))
        gallery.render_more(tmp_path_factory.mktemp("more"))
    for _, fig, _ in figs:
        fig.canvas.draw()
    return gallery, [(p.name, fig) for p, fig, _ in figs], {fn for _, _, fn in figs}


def _plot_axes(fig):
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def _titles(fig):
    return " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
                    + [ax.get_title(loc="left") for ax in fig.axes])


def test_the_gallery_covers_every_figure_function(drawn):
    """Each ``@styled`` function of the repository drew at least one figure in the gallery (so the rules below are
    checked on it): a new figure function must be added to tools/figure_gallery.py."""
    _, figs, drawers = drawn
    assert len(figs) >= 18
    for path, tree in _sources():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and any(getattr(d, "id", "") == "styled" for d in fn.decorator_list):
                mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                assert f"{mod}.{fn.name}" in drawers, f"{mod}.{fn.name} is not drawn by tools/figure_gallery.py"
    assert "geometry.profile._plot_profile" in drawers and drawers <= set(FIGURE_FUNCTIONS)


def test_titles_name_model_site_and_positions(drawn):
    gallery, figs, _ = drawn
    for name, fig in figs:
        text = _titles(fig)
        assert text.strip(), name
        if name.startswith(("profiles", "f1")):
            assert "esm2" in text and "resid_post.4" in text, (name, text)
            continue
        model = "toy gated VLM" if name.startswith(("patch", "flow", "ablation", "modality")) else gallery.MODEL
        assert model in text and "positions" in text, (name, text)
        assert any(s in text for s in ("input_norm", "resid_pre", "resid_post", "post_attention_layernorm",
                                       "attn_pattern", "head_out")), (name, text)


def _each_axes(drawn):
    """``(figure file name, axes)`` for every plotting axes (colour bars left out)."""
    for name, fig in drawn[1]:
        for ax in _plot_axes(fig):
            yield name, ax


def test_axis_labels_are_not_empty(drawn):
    for name, ax in _each_axes(drawn):
        twin = [o for o in ax.get_shared_x_axes().get_siblings(ax) if o is not ax]
        assert ax.get_ylabel().strip() or (ax.get_shared_y_axes().get_siblings(ax) != [ax]), (name, ax.get_title())
        assert ax.get_xlabel().strip() or any(o.get_xlabel().strip() for o in twin), (name, ax.get_title())


def test_layer_ticks_are_integers(drawn):
    checked = 0
    for name, ax in _each_axes(drawn):
        for label, ticks, labels, lim in ((ax.get_xlabel(), ax.get_xticks(), ax.get_xticklabels(), ax.get_xlim()),
                                          (ax.get_ylabel(), ax.get_yticks(), ax.get_yticklabels(), ax.get_ylim())):
            if not re.match(r"(patched )?(layer|block)\b(?! influence)", label.lower()):
                continue
            lo, hi = sorted(lim)
            shown = [t.get_text().replace("\u2212", "-") for v, t in zip(ticks, labels) if lo <= v <= hi]
            assert shown and all(s.lstrip("-").isdigit() for s in shown), (name, label, shown)
            checked += 1
    assert checked >= 10


def test_legends_sit_outside_the_axes(drawn):
    n = 0
    for name, ax in _each_axes(drawn):
        leg = ax.get_legend()
        if leg is not None:
            n += 1
            lb, ab = leg.get_window_extent(), ax.get_window_extent()
            assert not lb.overlaps(ab), (name, ax.get_title(), lb, ab)
    assert n >= 8


def test_series_are_distinguishable(drawn):
    """Every pair of legend entries differs in colour and in dash or marker (lines), or in colour and hatch (areas)."""
    from matplotlib.colors import to_hex
    from matplotlib.container import Container
    from matplotlib.lines import Line2D

    pairs = 0
    for name, ax in _each_axes(drawn):
        handles, labels = ax.get_legend_handles_labels()
        keys = []
        for h in handles:
            h = h[0] if isinstance(h, Container) else h
            if isinstance(h, Line2D):
                keys.append(("line", to_hex(h.get_color()), str(h.get_linestyle()), str(h.get_marker())))
            else:
                keys.append(("area", to_hex(h.get_facecolor()), str(h.get_hatch()), ""))
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                a, b = keys[i], keys[j]
                pairs += 1
                assert a[1] != b[1] and (a[2] != b[2] or a[3] != b[3] or a[0] != b[0]), (name, labels[i], labels[j])
    assert pairs >= 10
