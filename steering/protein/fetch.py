"""Download UniProtKB entries (sequence + features) through the REST API into a protein dataset.

    ds = fetch_uniprot("reviewed:true AND ft_zn_fing:C2H2 AND length:[50 TO 300]",
                       out="znf.parquet", max_results=2000)
    interp proteins fetch --query "reviewed:true AND ft_zn_fing:C2H2" --out znf.parquet --limit 2000

Pages come from ``https://rest.uniprot.org/uniprotkb/search?query=...&format=json&size=N``;
the next page's URL is in the ``Link: <...>; rel="next"`` response header (UniProt REST
pagination). Output is written atomically. Tests replay recorded pages by replacing
:func:`http_get`; nothing here is exercised against the live service in the test suite.
"""
from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

from .errors import FetchError, ProteinFormatError
from .schema import TRACKS, save_dataset, to_dataset
from .uniprot import parse_rest_json

SEARCH_URL = "https://rest.uniprot.org/uniprotkb/search"
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def http_get(url: str, timeout: float = 60.0) -> tuple:
    """``(body bytes, headers dict)`` of a GET request (replaced by recorded pages in tests)."""
    req = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "interp-protein/0.1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - fixed https endpoint
            return r.read(), dict(r.headers.items())
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode(errors="replace")
        raise FetchError(f"UniProt answered HTTP {e.code} for {url}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise FetchError(f"Could not reach UniProt ({url}): {e}") from None


def next_link(headers: dict) -> str | None:
    """The ``rel="next"`` URL of a Link header, if any."""
    link = next((v for k, v in headers.items() if k.lower() == "link"), None)
    m = _NEXT.search(link or "")
    return m.group(1) if m else None


def search_url(query: str, size: int = 500, fields: str | None = None) -> str:
    params = {"query": query, "format": "json", "size": str(size)}
    if fields:
        params["fields"] = fields
    return f"{SEARCH_URL}?{urllib.parse.urlencode(params)}"


def fetch_records(query: str, *, size: int = 500, max_results: int | None = None, fields: str | None = None,
                  log=None) -> list:
    """All entries matching ``query`` (following pagination), as :class:`ProteinRecord` objects."""
    if not query or not query.strip():
        raise FetchError("Empty UniProt query.")
    url, recs, page = search_url(query, size, fields), [], 0
    while url:
        body, headers = http_get(url)
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            raise FetchError(f"UniProt page {page + 1} is not JSON ({e}): {body[:200]!r}") from None
        if not isinstance(obj, dict) or "results" not in obj:
            raise FetchError(f"UniProt page {page + 1} has no 'results': {str(obj)[:200]}")
        try:
            recs += parse_rest_json(obj)
        except ProteinFormatError as e:
            raise FetchError(f"UniProt page {page + 1}: {e}") from None
        page += 1
        if log:
            log(f"page {page}: {len(recs)} entries")
        if max_results is not None and len(recs) >= max_results:
            return recs[:max_results]
        url = next_link(headers)
    return recs


def fetch_uniprot(query: str, out=None, *, size: int = 500, max_results: int | None = None,
                  fields: str | None = None, tracks=TRACKS, log=None):
    """Fetch ``query`` into a protein Dataset; write it to ``out`` (parquet, atomic) when given."""
    recs = fetch_records(query, size=size, max_results=max_results, fields=fields, log=log)
    if not recs:
        raise FetchError(f"UniProt returned no entries for query {query!r}.")
    ds = to_dataset(recs, tracks)
    if out is not None:
        save_dataset(ds, out)
    return ds
