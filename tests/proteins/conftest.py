"""Shared fixtures: the real data in ../shared/data (read in place, never copied) and recorded pages."""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"real protein data not found at {p} (expected the shared data folder next to the repo)")
    return p


@pytest.fixture(scope="session")
def tmbed_dir():
    return _need(DATA / "tmbed")


@pytest.fixture(scope="session")
def uniprot_dir():
    return _need(DATA / "uniprot")
