"""Image spans of the VLM families in hooks/adapters/vlm_spans.py, on tiny random models.

Known answers: (1) each span selects exactly the planted positions of a hand-written prompt in
the family's layout (ids taken from the config or a local tokenizer); (2) the ``image`` span is
where the model itself merges image features: two runs that differ only in their pixels change
the sequence entering layer 0 (``embed``) at exactly the ``image`` positions.
"""
from __future__ import annotations

import pytest
import torch

import hooks
from hooks.errors import SpecError

transformers = pytest.importorskip("transformers")
from tools.tiny_configs import shrink  # noqa: E402

T = [20, 21, 22, 23, 24, 25]  # plain text ids (every tiny vocabulary has them)


def tiny(model_type, text_vocab=None, **overrides):
    cfg = shrink(transformers.AutoConfig.for_model(model_type))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if text_vocab is not None:  # default configs whose image id lies past the text vocabulary (LLaVA-NeXT)
        cfg.text_config.vocab_size = text_vocab
    for c in (cfg, getattr(cfg, "text_config", None)):  # a default pad id past the shrunk vocabulary
        vocab, pad = getattr(c, "vocab_size", None), getattr(c, "pad_token_id", None)
        if isinstance(vocab, int) and isinstance(pad, int) and pad >= vocab:  # (idefics3 on transformers 5.18)
            c.pad_token_id = 0
    torch.manual_seed(0)
    m = transformers.AutoModelForImageTextToText.from_config(cfg).float().eval()
    with torch.no_grad():  # some projectors start at zero (Gemma-3): every image would merge the same features
        for prm in m.parameters():
            if prm.dim() > 1 and not prm.any():
                prm.normal_(0, 0.02)
    return m


def word_tokenizer(special: dict):
    """A word-level tokenizer whose special strings have the model's ids (``{string: id}``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, **{f"w{i}": i for i in T}, **special}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")


def masks(n, **where):
    """{span: (1, n) bool mask} with True at the listed positions."""
    out = {}
    for k, pos in where.items():
        m = torch.zeros(1, n, dtype=torch.bool)
        m[0, list(pos)] = True
        out[k] = m
    return out


def check_spans(hm, ids, want: dict):
    ids = torch.tensor([ids])
    got = hm.spans(ids, torch.ones_like(ids, dtype=torch.bool))
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k, m in masks(ids.shape[1], **want).items():
        assert torch.equal(got[k], m), (k, got[k].nonzero()[:, 1].tolist(), want[k])
    return got


def merged_positions(hm, batch_a: dict, batch_b: dict) -> torch.Tensor:
    """Positions where the sequence entering layer 0 differs between two pixel inputs."""
    ea = hm.run(batch_a, [hooks.Cache("embed")]).cache["embed"]
    eb = hm.run(batch_b, [hooks.Cache("embed")]).cache["embed"]
    return (ea - eb).abs().amax(-1) > 0


def pixels_pair(shape, **extra):
    g = torch.Generator().manual_seed(0)
    return ({"pixel_values": torch.randn(*shape, generator=g), **extra},
            {"pixel_values": torch.randn(*shape, generator=g), **extra})


def assert_merge_matches(hm, ids, shape, constant=None, **extra):
    """The ``image`` span is exactly where pixels reach the merged sequence; ``constant``: a
    pixel-independent feature vector the model also writes at image positions (LLaVA-NeXT's
    ``image_newline``), checked to be what the other image positions hold."""
    ids = torch.tensor([ids])
    base = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    a, b = pixels_pair(shape, **extra)
    changed = merged_positions(hm, {**base, **a}, {**base, **b})
    image = hm.spans(ids, torch.ones_like(ids, dtype=torch.bool))["image"]
    fixed = image & ~changed
    if constant is not None:
        emb = hm.run({**base, **a}, [hooks.Cache("embed")]).cache["embed"]
        assert fixed.any() and torch.allclose(emb[fixed], constant.expand(int(fixed.sum()), -1))
        changed = changed | fixed
    assert image.any() and torch.equal(changed, image), (changed.nonzero()[:, 1].tolist(), image.nonzero()[:, 1].tolist())


# -- families ---------------------------------------------------------------------------------
def test_qwen2_vl_vision_start_end_and_merge():
    m = tiny("qwen2_vl")
    c = m.config
    img, vs, ve, vid = c.image_token_id, c.vision_start_token_id, c.vision_end_token_id, c.video_token_id
    hm = hooks.wrap(m, verify=False)
    n = 4  # grid 1×4×4 patches, merged 2×2 -> 4 tokens
    ids = [T[0], T[1], vs, *[img] * n, ve, T[2], vs, vid, vid, ve, T[3]]
    check_spans(hm, ids, dict(image=range(3, 7), boi=[2, 9], eoi=[7, 12], video=[10, 11],
                              text=[0, 1, 8, 13]))
    pv = 16, 3 * c.vision_config.temporal_patch_size * c.vision_config.patch_size ** 2
    grid = torch.tensor([[1, 4, 4]])
    types = (torch.tensor([ids[:9]]) == img).long()  # what the processor returns as mm_token_type_ids
    assert_merge_matches(hm, ids[:9], pv, image_grid_thw=grid, mm_token_type_ids=types)
    # with images the model builds its own 3-D (M-RoPE) positions from the mask: a run equals the model's
    # forward, left padding included
    row = torch.tensor(ids[:9])
    batch = {"input_ids": torch.stack([row, torch.cat([torch.tensor([0]), row[:-1]])]),
             "attention_mask": torch.tensor([[1] * 9, [0] + [1] * 8]),
             "pixel_values": torch.randn(32, pv[1]), "image_grid_thw": grid.repeat(2, 1)}
    batch["mm_token_type_ids"] = (batch["input_ids"] == img).long()
    with torch.no_grad():
        ref = m(**batch).logits
    got = hm.run(batch).logits
    real = batch["attention_mask"].bool()
    assert (got - ref)[real].abs().max().item() < 1e-5


def test_gemma3_start_end_of_image_and_merge():
    m = tiny("gemma3", mm_tokens_per_image=4)  # 4×4 patches pooled to 2×2
    c = m.config
    hm = hooks.wrap(m, verify=False)
    ids = [T[0], c.boi_token_id, *[c.image_token_id] * 4, c.eoi_token_id, T[1], T[2]]
    check_spans(hm, ids, dict(image=range(2, 6), boi=[1], eoi=[6], text=[0, 7, 8]))
    assert_merge_matches(hm, ids, (1, 3, 32, 32))


def test_paligemma_prefix_without_markers_and_merge():
    m = tiny("paligemma")
    img, bos = m.config.image_token_id, 2
    hm = hooks.wrap(m, verify=False)
    ids = [*[img] * 16, bos, T[0], T[1]]  # 32×32 image, 8×8 patches: 16 tokens, then BOS and the prompt
    got = check_spans(hm, ids, dict(image=range(16), text=[16, 17, 18]))
    assert "no begin/end-of-image markers" in got.absent["boi"]
    with pytest.raises(SpecError, match="PaliGemma writes its image tokens with no begin/end"):
        hm.run(torch.tensor([ids]), [hooks.Cache("embed", positions="eoi")])
    assert_merge_matches(hm, ids, (1, 3, 32, 32))


@pytest.mark.parametrize("model_type", ["idefics3", "smolvlm"])
def test_idefics3_shared_marker_tiles_and_merge(model_type):
    m = tiny(model_type, image_token_id=40)  # the default id (128257) lies past the default text vocabulary
    img = m.config.image_token_id
    fake, glob, r11, r12 = 30, 31, 32, 33
    tok = word_tokenizer({"<image>": img, "<fake_token_around_image>": fake, "<global-img>": glob,
                          "<row_1_col_1>": r11, "<row_1_col_2>": r12, "\n": 10})
    # Idefics3Processor._prompt_split_image for a 1×2 split: tiles, a newline, then the global image
    n = 4  # 32×32 tile, 8×8 patches, pixel shuffle ×2 -> 4 tokens
    block = [fake, r11, *[img] * n, fake, r12, *[img] * n, 10, 10, fake, glob, *[img] * n, fake]
    ids = [T[0], T[1], *block, T[2]]
    at = {i for i, t in enumerate(ids) if t == img}
    got = check_spans(hooks.wrap(m, tok, verify=False), ids,
                      dict(image=sorted(at), boi=[2], eoi=[len(ids) - 2], text=[0, 1, len(ids) - 1]))
    assert not got["text"][0, 2:-1].any()  # row tags, <global-img> and newlines are inside the block
    # without a tokenizer the marker id is unknown: boi/eoi are refused with the reason
    hm = hooks.wrap(m, verify=False)
    with pytest.raises(SpecError, match="<fake_token_around_image> is not in the model's config"):
        hm.run(torch.tensor([ids]), [hooks.Cache("embed", positions="boi")])
    single = [T[0], fake, glob, *[img] * n, fake, T[1]]
    check_spans(hm, single, dict(image=range(3, 3 + n), text=[0, 1, 2, 3 + n, 4 + n]))
    assert_merge_matches(hm, single, (1, 1, 3, 32, 32))


def test_pixtral_img_end_is_eoi_and_merge():
    from tests.narrow_gate import tiny_pixtral as P

    hm = hooks.wrap(P.model(), P.tokenizer(), verify=False)
    ids = [1, 20, *P.image_block(2, 3), 21]  # [IMG]×3 [IMG_BREAK] [IMG]×3 [IMG_END]
    got = check_spans(hm, ids, dict(image=[2, 3, 4, 6, 7, 8], eoi=[9], text=[0, 1, 10]))
    assert "no begin marker" in got.absent["boi"]
    assert_merge_matches(hm, ids, (1, 3, 8, 12), image_sizes=torch.tensor([[8, 12]]))


def test_mistral3_uses_the_pixtral_layout():
    from tests.narrow_gate import tiny_pixtral as P

    m = tiny("mistral3")
    assert m.config.image_token_id == P.IMG
    hm = hooks.wrap(m, P.tokenizer(), verify=False)
    check_spans(hm, [1, *P.image_block(1, 2), 20], dict(image=[1, 2], eoi=[3], text=[0, 4]))
    # 32×32 pixels, 8×8 patches merged 2×2: two rows of two [IMG]
    assert_merge_matches(hm, [1, *P.image_block(2, 2), 20], (1, 3, 32, 32), image_sizes=torch.tensor([[32, 32]]))


def test_llava_next_and_onevision_image_video_without_markers():
    m = tiny("llava_next", text_vocab=32064, image_grid_pinpoints=[[32, 32]])
    hm = hooks.wrap(m, verify=False)
    img = m.config.image_token_id
    sizes = torch.tensor([[32, 32]])
    pv = torch.randn(1, 2, 3, 32, 32)
    n = sum(f.shape[0] for f in m.model.get_image_features(pv, sizes).pooler_output)  # base + unpadded + newlines
    ids = [T[0], *[img] * n, T[1]]
    got = check_spans(hm, ids, dict(image=range(1, 1 + n), text=[0, n + 1]))
    assert "no begin/end-of-image markers" in got.absent["eoi"]
    assert_merge_matches(hm, ids, (1, 2, 3, 32, 32), constant=m.model.image_newline.detach(), image_sizes=sizes)
    ov = tiny("llava_onevision", image_grid_pinpoints=[[32, 32]])
    c = ov.config
    hm = hooks.wrap(ov, verify=False)
    check_spans(hm, [T[0], c.image_token_id, c.image_token_id, T[1], c.video_token_id],
                dict(image=[1, 2], video=[4], text=[0, 3]))
    n = sum(f.shape[0] for f in ov.model.get_image_features(pv, sizes).pooler_output)
    assert_merge_matches(hm, [T[0], *[c.image_token_id] * n, T[1]], (1, 2, 3, 32, 32),
                         constant=ov.model.image_newline.detach(), image_sizes=sizes)


def test_mllama_has_no_image_positions_and_says_why():
    m = tiny("mllama")
    hm = hooks.wrap(m, verify=False)
    img = m.config.image_token_id
    ids = [T[0], img, T[1], T[2]]
    check_spans(hm, ids, dict(text=[0, 2, 3]))  # <|image|> is in no span
    for span in ("image", "boi"):
        with pytest.raises(SpecError, match="cross-attention"):
            hm.run(torch.tensor([ids]), [hooks.Cache("resid_post.0", positions=span)])


def test_llama4_and_default_config_markers():
    from hooks.adapters import vlm_spans

    m = tiny("llama4")
    c = m.config
    hm = hooks.wrap(m, verify=False)
    check_spans(hm, [T[0], c.boi_token_id, c.image_token_id, c.image_token_id, c.eoi_token_id, T[1]],
                dict(image=[2, 3], boi=[1], eoi=[4], text=[0, 5]))
    assert vlm_spans.spec_for(m) is vlm_spans.SPECS["llama4"]
    assert vlm_spans.spec_for(tiny("aya_vision")).boi[0] == "processor.start_of_img_token"


def test_padded_batch_spans_per_row():
    m = tiny("gemma3", mm_tokens_per_image=4)
    c = m.config
    hm = hooks.wrap(m, verify=False)
    row = [T[0], c.boi_token_id, *[c.image_token_id] * 4, c.eoi_token_id, T[1]]
    ids = torch.tensor([row + [T[2]], [0] + row])  # right: one more text token; left: one pad
    am = torch.tensor([[1] * 9, [0] + [1] * 8]).bool()
    sp = hm.spans(ids, am)
    assert sp["boi"].nonzero().tolist() == [[0, 1], [1, 2]]
    assert sp["eoi"].nonzero().tolist() == [[0, 6], [1, 7]]
    assert sp["text"].sum(1).tolist() == [3, 2] and not sp["text"][1, 0]
    res = hm.run({"input_ids": ids, "attention_mask": am.long()}, [hooks.Cache("resid_post.1", positions="eoi")])
    assert res.cache["resid_post.1"].shape == (2, m.config.text_config.hidden_size)


def test_idefics3_processor_layout_and_merge():
    """The processor writes the layout (2×2 tiles + global image); ids come from its attributes."""
    import numpy as np
    from PIL import Image

    m = tiny("idefics3", image_token_id=40)
    special = {"<image>": 40, "<fake_token_around_image>": 30, "<global-img>": 31, "<end_of_utterance>": 36,
               **{f"<row_{r}_col_{c}>": 31 + 2 * (r - 1) + c for r in (1, 2) for c in (1, 2)}}
    ip_cls = getattr(transformers, "Idefics3ImageProcessorPil", transformers.Idefics3ImageProcessor)
    proc = transformers.Idefics3Processor(image_processor=ip_cls(size={"longest_edge": 64},
                                                                 max_image_size={"longest_edge": 32}),
                                          tokenizer=word_tokenizer(special), image_seq_len=4)
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    hm = hooks.wrap(m, proc, verify=False)
    enc = [hm.prepare({"text": ["w20 <image> w21"], "images": [[im]]}) for im in images]
    ids, am = enc[0]["input_ids"], enc[0]["attention_mask"].bool()
    assert torch.equal(ids, enc[1]["input_ids"]) and enc[0]["pixel_values"].shape[:2] == (1, 5)
    sp = hm.spans(ids, am)
    n = ids.shape[1]
    image = (ids == 40) & am
    assert int(image.sum()) == 5 * 4  # four tiles and the global image, 4 tokens each
    assert sp["boi"][0].nonzero().flatten().tolist() == [1] and sp["eoi"][0].nonzero().flatten().tolist() == [n - 2]
    assert sp["text"][0].nonzero().flatten().tolist() == [0, n - 1]
    changed = merged_positions(hm, enc[0], enc[1])
    assert torch.equal(changed, sp["image"]) and torch.equal(sp["image"], image)


def test_family_outside_the_table_uses_config_ids_and_says_what_is_missing(monkeypatch):
    from hooks.adapters import vlm_spans

    m = tiny("gemma3", mm_tokens_per_image=4)
    c = m.config
    monkeypatch.delitem(vlm_spans.SPECS, "gemma3")  # as if Gemma-3 were a new family: DEFAULT's config names
    hm = hooks.wrap(m, verify=False)
    ids = [T[0], c.boi_token_id, *[c.image_token_id] * 4, c.eoi_token_id, T[1]]
    check_spans(hm, ids, dict(image=range(2, 6), boi=[1], eoi=[6], text=[0, 7]))  # boi/eoi_token_index found
    monkeypatch.delitem(vlm_spans.SPECS, "llava_next")
    nxt = tiny("llava_next", text_vocab=32064)
    got = check_spans(hooks.wrap(nxt, verify=False), [T[0], nxt.config.image_token_id, T[1]], dict(image=[1], text=[0, 2]))
    assert "'llava_next' is not in hooks/adapters/vlm_spans.py's table" in got.absent["boi"]
