"""``interp dashboard folder``: any results folder as one page (CSV sortable, JSON, figures), checked in Chromium."""
import json
import re

from typer.testing import CliRunner

from interp.cli import app

from .conftest import dump_dom, needs_chromium


def results(tmp_path):
    d = tmp_path / "flow"
    (d / "figures").mkdir(parents=True)
    (d / "flow_shares.csv").write_text("layer,img_to_text,eoi\n0,0.10,0.5\n1,0.02,0.91\n2,0.30,0.2\n")
    (d / "gate.json").write_text(json.dumps({"gate": {"key": "eoi", "share": 0.91}, "n_examples": 12}))
    (d / "figures" / "flow.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    return d


def test_folder_page_lists_every_file_and_links_it(tmp_path):
    d = results(tmp_path)
    r = CliRunner().invoke(app, ["dashboard", "folder", str(d)])
    assert r.exit_code == 0, r.output
    html = (d / "index.html").read_text()
    for name in ("flow_shares.csv", "gate.json", "figures/flow.svg"):
        assert f'href="{name}"' in html
    assert 'alt="Figure figures/flow.svg' in html and ">eoi<" in html and "0.91" in html
    r = CliRunner().invoke(app, ["dashboard", "folder", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "is not a directory" in " ".join(r.output.split())


@needs_chromium
def test_folder_page_sorts_in_the_browser(tmp_path):
    d = results(tmp_path)
    CliRunner().invoke(app, ["dashboard", "folder", str(d)])
    dom, err = dump_dom(d / "index.html", "#table=t1&sort=c1&dir=descending", tmp=tmp_path)
    assert 'data-ready="1"' in dom and "data-js-errors" not in dom
    assert re.findall(r'<tr data-i="\d+" data-c0="(\d)"', dom) == ["2", "0", "1"]     # by img_to_text, descending


def test_latent_columns_link_to_latent_pages(tmp_path):
    """The protein demo's tables (a `latent` column) link to an `interp dashboard sae` site's pages."""
    d = tmp_path / "demo"
    (d / "stats").mkdir(parents=True)
    (d / "stats" / "top_latents.csv").write_text("track,latent,f1\nZN_FING,3,0.9\nTRANSMEM,7,0.8\n")
    site = d / "dash"
    (site / "latents").mkdir(parents=True)
    (site / "latents" / "000003.html").write_text("<html></html>")
    (site / "data").mkdir()
    (site / "data" / "latents.csv").write_text("latent\n3\n")      # inside the site: not listed again
    r = CliRunner().invoke(app, ["dashboard", "folder", str(d), "--latent-pages", str(site)])
    assert r.exit_code == 0, r.output
    html = (d / "index.html").read_text()
    assert '<a href="dash/latents/000003.html">3</a>' in html
    assert ">7</td>" in html and "000007" not in html                     # no page, no link
    assert "dash/data/latents.csv" not in html
