"""hooks.hf_backend.pad_rows: the one right/left padding of token-id rows (HF backend, protein
encoders, the narrow-gate collate)."""
import torch

from hooks.hf_backend import pad_rows


def test_pad_rows_right_and_left():
    ids, am = pad_rows([[5, 6, 7], torch.tensor([8])], pad=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and am.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, am = pad_rows([[5, 6, 7], [8]], pad=9, side="left")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and am.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == am.dtype == torch.long


def test_protein_encoders_pad_through_it():
    from steering.protein.align import encode_sequences
    from steering.protein.alphabet import CLS_ID, EOS_ID, PAD_ID
    from steering.protein.generate import encode_templates

    b = encode_sequences(["ACD", "A"])
    assert b.input_ids[1].tolist()[:3] == [CLS_ID, b.input_ids[1, 1].item(), EOS_ID]
    assert b.input_ids[1, 3:].tolist() == [PAD_ID, PAD_ID] and b.attention_mask.sum(1).tolist() == [5, 3]
    ids, am = encode_templates(["AC", "A"])
    assert ids[1, -1].item() == PAD_ID and am.sum(1).tolist() == [4, 3]
