"""Token alignment: ESM layout, truncation, and agreement with what ``hooks`` selects as "residues"."""
import warnings

import numpy as np
import pytest
import torch

from steering.protein.align import (EncodedBatch, TruncationWarning, dataset_token_masks, encode_sequences,
                                    residue_token_mask)
from steering.protein.alphabet import ESM_VOCAB, esm_tokenizer
from steering.protein.data import read_records
from steering.protein.errors import AlignmentError, SequenceTooLongError, UnknownResidueError
from steering.protein.schema import masks_of, to_dataset


@pytest.fixture(scope="module")
def tiny_esm():
    import hooks
    from steering.protein.toy_model import TrainConfig, build_model

    model = build_model(TrainConfig(layers=1, d_model=16, heads=2, ffn=32))
    return hooks.wrap(model, esm_tokenizer())


def test_layout_cls_residues_eos_pad():
    b = encode_sequences(["MKT", "AC"])
    assert b.input_ids.tolist() == [[0, 20, 15, 11, 2], [0, 5, 23, 2, 1]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b.residues().tolist() == [[False, True, True, True, False], [False, True, True, False, False]]
    assert b.n_residues == [3, 2] and b.truncated == []
    tok = esm_tokenizer()
    assert tok.convert_ids_to_tokens(list(range(33))) == list(ESM_VOCAB)
    assert tok(["MKT", "AC"], padding=True)["input_ids"] == b.input_ids.tolist()


def test_truncation_is_recorded_or_strict_error():
    with pytest.warns(TruncationWarning, match="truncated to 3"):
        b = encode_sequences(["MKTAYIA", "MK"], max_length=5)
    assert b.truncated == [0] and b.n_residues == [3, 2] and b.lengths == [7, 2]
    assert b.input_ids[0].tolist() == [0, 20, 15, 11, 2]          # EOS still closes the row
    m = residue_token_mask([np.array([1, 0, 1, 1, 1, 1, 1]), np.array([0, 1])], b)
    assert m.tolist() == [[False, True, False, True, False], [False, False, True, False, False]]
    with pytest.raises(SequenceTooLongError, match=r"'p1' has 7 residues but the model takes at most 3"):
        encode_sequences(["MKTAYIA"], max_length=5, strict=True, ids=["p1"])
    with pytest.raises(UnknownResidueError, match="'Z9'|'9'"):
        encode_sequences(["MK9"])
    with pytest.raises(AlignmentError, match="mask of 3 residues for a sequence of 2"):
        residue_token_mask([np.ones(7), np.ones(3)], b)


def test_real_tmbed_masks_land_on_residue_tokens(tmbed_dir, tiny_esm):
    recs = read_records(tmbed_dir / "alpha.fasta")[:12]
    ds = to_dataset(recs)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        batch = encode_sequences(ds["sequence"], max_length=130, ids=ds["id"])
    assert len(w) == 1 and batch.truncated == [i for i, r in enumerate(recs) if len(r.sequence) > 128]
    tm = residue_token_mask(masks_of(ds, "TMBED_H"), batch)
    for b, r in enumerate(recs):
        n = min(len(r.sequence), 128)
        want = [c in "Hh" for c in r.tmbed_labels[:n]]
        assert tm[b, 1:n + 1].tolist() == want and not tm[b, 0] and not tm[b, n + 1:].any()
        assert batch.input_ids[b, n + 1] == 2
    # what hooks selects as "residues" is exactly where our masks can be True
    spans = tiny_esm.spans(batch.input_ids, batch.attention_mask)
    assert torch.equal(spans["residues"], batch.residues())
    assert torch.equal(residue_token_mask([np.ones(len(r.sequence)) for r in recs], batch), spans["residues"])
    both = dataset_token_masks(ds[:12], ["TMBED_H", "TRANSMEM"], batch)
    assert torch.equal(both["TMBED_H"], tm) and torch.equal(both["TRANSMEM"], tm)   # alpha: TM = helices only


def test_cached_residue_rows_and_prepare_path_agree(tiny_esm):
    from hooks import Cache

    seqs = ["MKTAYIAKQR", "MLLV", "MAC"]
    masks = [np.arange(len(s)) % 2 == 0 for s in seqs]
    batch = encode_sequences(seqs)
    res = tiny_esm.run(batch.inputs, [Cache("resid_post.0", "residues", layout="flat")])
    sel = res.cache.masks["resid_post.0"].cpu()
    assert res.cache["resid_post.0"].shape == (17, 16) and torch.equal(sel, batch.residues())
    y = residue_token_mask(masks, batch)[sel]
    assert y.tolist() == np.concatenate(masks).tolist()                 # one label per cached row, same order
    prepared = tiny_esm.prepare(seqs)                                    # HF EsmTokenizer path
    assert torch.equal(prepared["input_ids"].cpu(), batch.input_ids)
    assert torch.equal(residue_token_mask(masks, prepared), residue_token_mask(masks, batch))
    with pytest.raises(AlignmentError, match="lower-case"):
        residue_token_mask([np.ones(3)], tiny_esm.prepare(["mkt"]))     # lower-case merged into one <unk>
    assert isinstance(batch, EncodedBatch)
