"""UniProt REST fetch, replayed from recorded pages (tests never touch the network)."""
import json
import urllib.parse

import numpy as np
import pytest
from typer.testing import CliRunner

from steering.protein import fetch as F
from steering.protein.errors import FetchError
from steering.protein.schema import load_dataset_file

from .conftest import FIXTURES


@pytest.fixture
def recorded(monkeypatch):
    """Replace http_get with the recorded two-page answer; return the list of requested URLs."""
    pages = json.loads((FIXTURES / "uniprot_search_headers.json").read_text())
    calls = []

    def fake_get(url, timeout=60.0):
        calls.append(url)
        page = pages["page2"] if pages["page2"]["url_contains"] in url else pages["page1"]
        return (FIXTURES / page["body"]).read_bytes(), dict(page["headers"])

    monkeypatch.setattr(F, "http_get", fake_get)
    return calls


def test_fetch_follows_link_header_and_writes_parquet(recorded, tmp_path):
    out = tmp_path / "tm.parquet"
    ds = F.fetch_uniprot("ft_transmem:* AND reviewed:true", out, size=2)
    assert len(recorded) == 2
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(recorded[0]).query)
    assert recorded[0].startswith("https://rest.uniprot.org/uniprotkb/search?")
    assert q == {"query": ["ft_transmem:* AND reviewed:true"], "format": ["json"], "size": ["2"]}
    assert "cursor=1mkycb2xwxbouw4s1l2y9l2b1m7g" in recorded[1]
    assert ds["id"] == ["Q13639", "O95832", "P16235"] and ds["source"] == ["uniprot-json"] * 3
    assert [int(np.sum(m)) for m in ds["mask_TRANSMEM"]] == [149, 84, 165]   # the flat files' TRANSMEM residues
    assert [sum(f["type"] == "SIGNAL" for f in fs) for fs in ds["features"]] == [0, 0, 1]
    assert not any(f["note"] == "unknown start (fixture)" for f in ds[2]["features"])   # '?..30' is dropped
    back = load_dataset_file(out)
    assert back["id"] == ds["id"] and back["mask_TRANSMEM"] == ds["mask_TRANSMEM"]


def test_fetch_stops_at_max_results(recorded):
    recs = F.fetch_records("x", size=2, max_results=2)
    assert [r.id for r in recs] == ["Q13639", "O95832"] and len(recorded) == 1


def test_fetch_errors_are_clear(monkeypatch):
    monkeypatch.setattr(F, "http_get", lambda url, timeout=60.0: (b"<html>busy</html>", {}))
    with pytest.raises(FetchError, match="page 1 is not JSON"):
        F.fetch_records("x")
    monkeypatch.setattr(F, "http_get", lambda url, timeout=60.0: (b'{"results": []}', {}))
    with pytest.raises(FetchError, match="no entries"):
        F.fetch_uniprot("nothing matches")
    with pytest.raises(FetchError, match="Empty"):
        F.fetch_records("  ")
    assert F.next_link({"link": '<https://a/b?c=1>; rel="next"'}) == "https://a/b?c=1"
    assert F.next_link({"Link": '<https://a/b>; rel="prev"'}) is None


def test_cli_fetch_and_read(recorded, tmp_path, uniprot_dir):
    from interp.cli import app

    out = tmp_path / "f.parquet"
    r = CliRunner().invoke(app, ["proteins", "fetch", "--query", "ft_transmem:*", "--out", str(out), "--size", "2"])
    assert r.exit_code == 0, r.output
    assert "3 proteins" in r.output and "TRANSMEM" in r.output and out.exists()
    out2 = tmp_path / "q.parquet"
    r = CliRunner().invoke(app, ["proteins", "read", str(uniprot_dir / "Q13639.xml"), "--out", str(out2)])
    assert r.exit_code == 0, r.output
    assert load_dataset_file(out2)["id"] == ["Q13639"]
    r = CliRunner().invoke(app, ["proteins", "read", str(uniprot_dir / "README"), "--out", str(out2)])
    assert r.exit_code == 2 and "Cannot tell the format" in " ".join(r.output.split())
