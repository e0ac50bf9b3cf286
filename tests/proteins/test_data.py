"""Reading real protein files: known counts looked up in the raw text (grep), schema, bad input."""
import json

import numpy as np
import pytest

from steering.protein.data import detect_format, read_proteins, read_records
from steering.protein.errors import (LabelLengthError, ProteinDataError, ProteinFormatError,
                                     UnknownResidueError)
from steering.protein.schema import TRACKS, Feature, masks_of, save_dataset, spans_of, track_names
from steering.protein.uniprot import parse_rest_json, parse_tsv_features

from .conftest import FIXTURES

# grep -c '^>' FILE
TMBED_COUNTS = {"alpha.fasta": 593, "beta.fasta": 65, "cv_00_a.fasta": 1307, "cv_01_a.fasta": 1304,
                "cv_02_a.fasta": 1304, "cv_03_a.fasta": 1302, "cv_04_a.fasta": 1300}


@pytest.mark.parametrize("name", sorted(TMBED_COUNTS))
def test_tmbed_record_counts_and_label_lengths(tmbed_dir, name):
    recs = read_records(tmbed_dir / name)
    assert detect_format(tmbed_dir / name) == "tmbed"
    assert len(recs) == TMBED_COUNTS[name]
    assert all(len(r.tmbed_labels) == len(r.sequence) > 0 for r in recs)
    assert len({r.id for r in recs}) == len(recs)


def test_tmbed_glycophorin_record(tmbed_dir):
    # >1afo_A|P02724|GLPA_HUMAN label runs: S 0-19, U 19-80, 2 80-90, H 90-112, 1 112-120, U 120-150
    ds = read_proteins(tmbed_dir / "alpha.fasta")
    assert len(ds) == 593 and ds.column_names[:7] == ["id", "description", "source", "sequence", "length",
                                                     "tmbed_labels", "features"]
    r = ds[0]
    assert r["id"] == "1afo_A|P02724|GLPA_HUMAN" and r["length"] == 150 and r["sequence"].startswith("MYGKIIFV")
    h, s = np.array(r["mask_TMBED_H"]), np.array(r["mask_TMBED_S"])
    assert h.sum() == 22 and np.flatnonzero(h)[[0, -1]].tolist() == [90, 111]
    assert s.sum() == 19 and s[:19].all()
    assert np.array(r["mask_TRANSMEM"]).sum() == 22 and np.array(r["mask_TMBED_1"]).sum() == 8
    assert np.array(r["mask_TMBED_U"]).sum() == 61 + 30 and np.array(r["mask_TMBED_2"]).sum() == 10
    assert [(f["type"], f["start"], f["end"]) for f in r["features"]] == [("SIGNAL", 0, 19), ("TRANSMEM", 90, 112)]
    for t in TRACKS:
        assert all(len(m) == n for m, n in zip(ds[f"mask_{t}"], ds["length"]))


def test_tmbed_beta_barrel_strands(tmbed_dir):
    # >1a0s_P|P22340|SCRY_SALTM: grep gives 18 runs of B/b in its label line
    recs = read_records(tmbed_dir / "beta.fasta")
    r = recs[0]
    assert r.id == "1a0s_P|P22340|SCRY_SALTM"
    tm = [f for f in r.features if f.type == "TRANSMEM"]
    assert len(tm) == 18 and all("beta strand" in f.note for f in tm)


@pytest.mark.parametrize("name,fmt,n_tm,first", [
    ("Q13639.txt", "uniprot-swiss", 7, (19, 40)),     # FT   TRANSMEM     20     40 (old FT format)
    ("Q13639.xml", "uniprot-xml", 7, (19, 40)),
    ("O95832.txt", "uniprot-swiss", 4, (7, 28)),      # FT   TRANSMEM        8..28
    ("P16235.txt", "uniprot-swiss", 7, (362, 390)),   # FT   TRANSMEM        363..390
    ("P04439.txt", "uniprot-swiss", 1, (308, 332)),   # FT   TRANSMEM        309..332
    ("P68308.txt", "uniprot-swiss", 3, None),
    ("P97881.xml", "uniprot-xml", 1, None),
])
def test_uniprot_transmembrane_counts(uniprot_dir, name, fmt, n_tm, first):
    ds = read_proteins(uniprot_dir / name)
    assert detect_format(uniprot_dir / name) == fmt and len(ds) == 1
    tm = [f for f in ds[0]["features"] if f["type"] == "TRANSMEM"]
    assert len(tm) == n_tm
    if first:
        assert (tm[0]["start"], tm[0]["end"]) == first
    assert np.array(ds[0]["mask_TRANSMEM"]).sum() == sum(f["end"] - f["start"] for f in tm)
    assert ds[0]["length"] == len(ds[0]["sequence"]) == len(ds[0]["mask_TRANSMEM"])


def test_uniprot_flat_and_xml_agree_on_multi_entry_files(uniprot_dir):
    txt, xml = read_proteins(uniprot_dir / "multi_ex.txt"), read_proteins(uniprot_dir / "multi_ex.xml")
    assert len(txt) == len(xml) == 8      # grep -c '^ID ' multi_ex.txt; grep -c '<entry ' multi_ex.xml
    assert txt["id"] == xml["id"] and txt["id"][0] == "P00750" and txt["sequence"] == xml["sequence"]
    for ds in (txt, xml):
        sig = [f for fs in ds["features"] for f in fs if f["type"] == "SIGNAL"]
        # 3 SIGNAL lines: 1..22 (TPA_HUMAN), <1..? (unknown end: dropped), 1..17
        assert [(f["start"], f["end"]) for f in sig] == [(0, 22), (0, 17)]
        assert sum(f["type"] == "DOMAIN" for fs in ds["features"] for f in fs) == 6
    binding = read_proteins(uniprot_dir / "P62330.xml")
    assert sum(f["type"] == "BINDING" for f in binding[0]["features"]) == 5


def test_rest_json_and_tsv_exports():
    page = json.loads((FIXTURES / "uniprot_search_page1.json").read_text())
    recs = parse_rest_json(page)
    assert [r.id for r in recs] == ["Q13639", "O95832"]
    assert [sum(f.type == "TRANSMEM" for f in r.features) for r in recs] == [7, 4]
    assert (recs[0].features[2].start, recs[0].features[2].end) == (19, 40)
    ds = read_proteins(FIXTURES / "uniprot_export.tsv")
    assert ds["id"] == ["Q13639", "P04439", "TOY1"]
    assert [sum(f["type"] == "TRANSMEM" for f in fs) for fs in ds["features"]] == [7, 1, 0]
    assert [(f["type"], f["start"], f["end"]) for f in ds[2]["features"]] == [("ZN_FING", 2, 25), ("SIGNAL", 0, 1)]
    assert ds[2]["features"][0]["note"] == "C2H2-type; toy"
    assert np.array(ds[2]["mask_ZN_FING"]).sum() == 23
    # a fuzzy start keeps its number, an unknown one drops the feature; single positions are 1-long
    assert parse_tsv_features('TRANSMEM <1..20; /note="Helical"; DOMAIN ?..30; BINDING 7') == \
        [Feature("TRANSMEM", 0, 20, "Helical"), Feature("BINDING", 6, 7, "")]


def test_parquet_round_trip_is_atomic_and_lossless(tmp_path, uniprot_dir):
    ds = read_proteins(uniprot_dir / "Q13639.txt", tracks=TRACKS + ("TOPO_DOM",))
    assert "TOPO_DOM" in track_names(ds)
    out = save_dataset(ds, tmp_path / "sub" / "q.parquet")
    assert sorted(p.name for p in out.parent.iterdir()) == ["q.parquet"]
    back = read_proteins(out)
    assert back.column_names == ds.column_names and back[0] == ds[0]
    # 8 TOPO_DOM lines 1-19, 41-58, ..., 316-388: every residue not in the 7 helices (149 residues)
    assert masks_of(back, "TOPO_DOM")[0].sum() == 388 - 149 == 239
    assert spans_of(back, "TRANSMEM")[0] == [(19, 40), (58, 79), (93, 116), (137, 158), (192, 213), (260, 281),
                                             (294, 315)]


def test_bad_inputs_raise_one_clear_error_each(tmp_path, uniprot_dir):
    f = tmp_path / "bad.fasta"
    f.write_text(">p1\nMKTAY\n>p2\nMKTJAY\n")
    with pytest.raises(UnknownResidueError, match=r"'p2': unknown amino acid 'J' at residue 4"):
        read_proteins(f)
    t = tmp_path / "bad_tmbed.fasta"
    t.write_text(">x\nMKTAYIA\n1111HHH\n>y\nMKTAY\n11HH\n")
    with pytest.raises(LabelLengthError, match=r"'y': 4 per-residue labels for a sequence of 5"):
        read_proteins(t)
    t.write_text(">x\nMKTAY\n11HQ2\n")
    with pytest.raises(ProteinFormatError, match="unknown label"):
        read_proteins(t, format="tmbed")
    with pytest.raises(ProteinFormatError, match="uniref"):
        read_proteins(uniprot_dir / "UniRef90_P99999.xml")
    with pytest.raises(ProteinFormatError, match="does not exist"):
        read_proteins(tmp_path / "nope.fasta")
    with pytest.raises(ProteinFormatError, match="Unknown format"):
        read_records(f, format="genbank")
    assert issubclass(ProteinDataError, ValueError)
    ok = tmp_path / "ok.fa"
    ok.write_text(">a desc\nmktay*\n>b\nMK\nTA\n")
    ds = read_proteins(ok)
    assert ds["sequence"] == ["MKTAY", "MKTA"] and ds["description"][0] == "a desc" and ds["source"][0] == "fasta"
