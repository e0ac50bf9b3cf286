"""The synthetic protein world: seeded, planted features match their definitions, clean ground truth."""
import re

import numpy as np
import pytest

from steering.protein.alphabet import KYTE_DOOLITTLE, RESIDUE_ALPHABET, background_entropy
from steering.protein.schema import masks_of
from steering.protein.toy_world import (PLANTED, WorldConfig, find_ps00028, make_toy_world, skeleton_mask,
                                        toy_records)


@pytest.fixture(scope="module")
def world():
    return toy_records(600, seed=3)


def test_seeded_and_same_schema_as_real_data(world):
    again = toy_records(600, seed=3)
    assert [r.sequence for r in again] == [r.sequence for r in world]
    assert [r.sequence for r in toy_records(5, seed=4)] != [r.sequence for r in world[:5]]
    ds = make_toy_world(40, seed=3)
    assert ds["sequence"] == [r.sequence for r in world[:40]]
    from steering.protein.schema import TRACKS

    assert ds.column_names == ["id", "description", "source", "sequence", "length", "tmbed_labels", "features"] + \
        [f"mask_{t}" for t in TRACKS]
    assert round(background_entropy(), 3) == 2.888


def test_sequences_and_feature_frequencies(world):
    assert all(r.sequence[0] == "M" and 64 <= len(r.sequence) <= 96 for r in world)
    assert all(set(r.sequence) <= set(RESIDUE_ALPHABET[:20]) for r in world)
    has = {t: np.mean([any(f.type == t for f in r.features) for r in world]) for t in PLANTED}
    assert 0.35 < has["ZN_FING"] < 0.5 and 0.38 < has["TRANSMEM"] < 0.52 and 0.35 < has["COILED"] < 0.5
    n_fingers = [sum(f.type == "ZN_FING" for f in r.features) for r in world]
    assert set(n_fingers) == {0, 1, 2}


def test_zinc_fingers_match_ps00028_and_nothing_else_does(world):
    n = 0
    for r in world:
        hits = find_ps00028(r.sequence)
        zf = [f for f in r.features if f.type == "ZN_FING"]
        for f in zf:   # every planted finger is a PS00028 match spanning from its first C to its last H
            seg = r.sequence[f.start:f.end]
            assert re.fullmatch(r"..C.{2,4}C.{3}[LIVMFYWC].{8}H.{3,5}H", seg), seg
            assert (f.start + 2, f.end) in hits
            n += 1
        for a, b in hits:  # and no PS00028 match outside the planted fingers
            assert any(f.start <= a and b <= f.end for f in zf)
        sk = skeleton_mask(r.sequence, r.features)
        assert sk.sum() == 5 * len(zf) and {r.sequence[i] for i in np.flatnonzero(sk)} <= set("CHFYLIV")
    assert n > 250


def test_transmembrane_and_coiled_coil_ground_truth(world):
    kd = KYTE_DOOLITTLE
    n_cc = 0
    for r in world:
        for f in r.features:
            seg = r.sequence[f.start:f.end]
            if f.type == "TRANSMEM":
                assert 18 <= len(seg) <= 22 and np.mean([kd[c] for c in seg]) >= 1.6
                assert set(r.sequence[f.start - 2:f.start]) <= set("KR")      # positive-inside flank
                assert set(r.sequence[f.end:f.end + 2]) <= set("DEQN")        # polar exit
            if f.type == "COILED":
                n_cc += 1
                assert len(seg) in (21, 28) and set(seg[0::7]) <= set("IVLA") and set(seg[3::7]) <= set("LMI")
                assert set(seg[4::7]) <= set("EQK") and set(seg[6::7]) <= set("KER")
                assert np.mean([kd[c] for c in seg]) < 0       # amphipathic, not a TM helix
        tm = np.zeros(len(r.sequence), bool)
        for f in r.features:
            if f.type == "TRANSMEM":
                tm[f.start:f.end] = True
        win = np.convolve([kd[c] for c in r.sequence], np.ones(19) / 19, "valid")
        for i in np.flatnonzero(win >= 1.6):            # hydrophobic windows only over planted helices
            assert tm[i:i + 19].any()
    assert n_cc > 200


def test_masks_match_features():
    ds = make_toy_world(30, seed=1, config=WorldConfig(p_zinc_finger=1.0, p_tandem=0.0, p_transmembrane=0.0, p_coiled_coil=0.0))
    for row, zf in zip(ds, masks_of(ds, "ZN_FING")):
        spans = [(f["start"], f["end"]) for f in row["features"] if f["type"] == "ZN_FING"]
        assert len(spans) == 1 and zf.sum() == spans[0][1] - spans[0][0] and zf[spans[0][0]:spans[0][1]].all()
        assert row["source"] == "toy" and not any(row["mask_TMBED_H"])
