"""The pages in a real browser: headless Chromium loads them, runs their scripts, and we read the DOM.

Skipped (with the reason) when no Chromium is installed; CI installs Debian's ``chromium``
through ``.ci/ensure_chromium.sh``. Errors are read twice: the pages' own collector writes
uncaught errors into ``<html data-js-errors>``, and Chromium's ``--enable-logging`` stderr is
scanned for uncaught exceptions / console errors.
"""
import re
from html.parser import HTMLParser

import pytest

import saes

from .conftest import PLANTED, TOKEN, console_errors, dump_dom, needs_chromium, planted_sae

pytestmark = needs_chromium


class Rows(HTMLParser):
    """Collects the index table's rows (their data-* attributes) in DOM order, and <html> attributes."""

    def __init__(self):
        super().__init__()
        self.rows, self.root, self.ctx, self.toks = [], {}, [], []
        self._in_ctx = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag == "tr" and "data-latent" in a:
            self.rows.append(a)
        if tag == "div" and "ctx" in (a.get("class") or "").split():
            self.ctx.append(a)
        if tag == "span" and "tok" in (a.get("class") or "").split() and "data-band" in a and self.ctx:
            a["text"] = ""
            self.toks.append((len(self.ctx) - 1, a))
            self._cur = a

    def handle_data(self, data):
        if getattr(self, "_cur", None) is not None:
            self._cur["text"] += data

    def handle_endtag(self, tag):
        if tag == "span":
            self._cur = None


def parse(dom: str) -> Rows:
    p = Rows()
    p.feed(dom)
    return p


@pytest.fixture(scope="module")
def site(gpt2, rows, tmp_path_factory):
    sae = planted_sae(gpt2.model.transformer.wte.weight.detach())
    return saes.dashboard(sae, gpt2, rows, tmp_path_factory.mktemp("b") / "site", site="embed", progress=False)


def check_clean(dom: str, err: str):
    p = parse(dom)
    assert p.root.get("data-ready") == "1", "the page's script did not finish"
    assert "data-js-errors" not in p.root, p.root.get("data-js-errors")
    assert console_errors(err) == []
    return p


def test_index_lists_every_latent_and_sorts(site, tmp_path):
    dom, err = dump_dom(site.index_path, tmp=tmp_path)
    p = check_clean(dom, err)
    assert [int(r["data-latent"]) for r in p.rows] == list(range(16))
    links = re.findall(r'<a href="latents/(\d{6})\.html">(\d+)</a>', dom)
    assert [int(a) for a, _ in links] == [int(b) for _, b in links] == site.site.pages
    for key in ("density", "max"):
        for direction in ("descending", "ascending"):
            dom, err = dump_dom(site.index_path, f"#sort={key}&dir={direction}", tmp=tmp_path)
            p = check_clean(dom, err)
            vals = [float(r[f"data-{key}"]) for r in p.rows]
            assert vals == sorted(vals, reverse=direction == "descending")
            assert len(p.rows) == 16
            assert f'data-sorted-by="{key}:{direction}"' in dom
    # the planted latent is the rarest: first when sorted by density, ascending
    dom, _ = dump_dom(site.index_path, "#sort=density&dir=ascending", tmp=tmp_path)
    assert int(parse(dom).rows[0]["data-latent"]) == PLANTED


def test_latent_page_top_contexts_tokens_and_bands(site, rows, tmp_path):
    dom, err = dump_dom(site.path / "latents" / f"{PLANTED:06d}.html", tmp=tmp_path)
    p = check_clean(dom, err)
    occ = sorted((e, i - 1) for e, r in enumerate(rows) for i, t in enumerate(r) if t == TOKEN)
    top = p.ctx[: len(occ)]
    assert sorted((int(c["data-example"]), int(c["data-position"])) for c in top) == occ
    for i in range(len(occ)):
        toks = [a for j, a in p.toks if j == i]
        hit = [a for a in toks if "hit" in a["class"].split()]
        assert len(hit) == 1 and hit[0]["data-band"] == "5" and "b5" in hit[0]["class"].split()
        assert hit[0]["text"] == f"#{TOKEN}"
        assert all(a["data-band"] == "0" for a in toks if a is not hit[0])    # nothing else fires
    assert 'role="img"' in dom and "<desc" in dom                          # histogram has a text alternative
    assert 'href="../data/latent_000005.json"' in dom and 'id="nav-up"' in dom


def test_other_latent_bands_agree_with_activations(site, tmp_path):
    f = max(site.site.pages, key=lambda g: site.site.summary.count[g])
    dom, err = dump_dom(site.path / "latents" / f"{f:06d}.html", tmp=tmp_path)
    p = check_clean(dom, err)
    mx = float(site.site.summary.max[f])
    n = 0
    for _, a in p.toks:
        act = float(a["data-act"])
        band = int(a["data-band"])
        expect = 0 if act <= 0 else min(5, max(1, -(-act * 5 // mx)))
        assert band == expect or abs(act * 5 / mx - round(act * 5 / mx)) < 1e-3      # ties at band edges
        n += act > 0
    assert n > 10


def test_attention_view_runs_in_the_browser(gpt2, tmp_path):
    from saes.dashboard import attention_view

    v = attention_view(gpt2, [[1, 5, 9, 12, 7], [1, 30, 31]], layers=[0, 1], out=tmp_path / "attn")
    dom, err = dump_dom(v.path / "index.html", tmp=tmp_path)
    check_clean(dom, err)
    views = re.findall(r'<span class="attn-tokens"[^>]*data-query="(\d+)"', dom)
    assert len(views) == 2 * 2 * 4 and views[0] == "4"                   # last query token selected by the script
    assert dom.count('<figure class="head"') == 16


def test_the_error_checks_can_fail(site, tmp_path):
    """Negative control: a script error (an unknown sort column in the URL) is caught by both checks."""
    dom, err = dump_dom(site.index_path, "#sort=nonexistent", tmp=tmp_path)
    p = parse(dom)
    assert p.root.get("data-js-errors")          # "Script error." (file:// scripts count as cross-origin)
    assert p.root.get("data-ready") is None
    assert any("no sortable column" in ln for ln in console_errors(err))
