"""Adapters for LLaVA, Chameleon (both block variants), Janus and Emu3 on tiny random models.

Every family is checked against transformers itself (``output_hidden_states`` /
``output_attentions`` / ``generate``) on a left-padded batch holding one image per row, and
against known answers that follow from the architecture (residual decomposition, causality,
attention knockout making text independent of the image).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import hooks
from hooks.adapters import find_adapter

transformers = pytest.importorskip("transformers")

D, VOCAB, N_LAYERS, N_HEADS = 32, 64, 2, 4
TXT = dict(vocab_size=VOCAB, hidden_size=D, intermediate_size=64, num_hidden_layers=N_LAYERS,
           num_attention_heads=N_HEADS, num_key_value_heads=2, max_position_embeddings=128)
PAD, BOS, IMG, BOI, EOI, EOL = 0, 1, 3, 4, 5, 6
CODES = list(range(40, 48))  # Chameleon IMGIMG* / Emu3 visual-token ids


# -- tiny models ---------------------------------------------------------------------------
def make_llava(text_config=None, attn="sdpa"):
    torch.manual_seed(0)
    cfg = transformers.LlavaConfig(
        text_config=text_config or dict(model_type="llama", **TXT, pad_token_id=PAD),
        vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=8, patch_size=4),
        image_token_id=IMG, vision_feature_layer=-1, vision_feature_select_strategy="default")
    return transformers.LlavaForConditionalGeneration._from_config(cfg, attn_implementation=attn).eval()


def make_chameleon(swin=False):
    torch.manual_seed(0)
    vmap = {"<image>": IMG, "<racm3:break>": BOI, "<eoss>": EOI,
            **{f"IMGIMG{chr(ord('A') + i)}Z": c for i, c in enumerate(CODES)}}
    cfg = transformers.ChameleonConfig(
        **TXT, swin_norm=swin, vocabulary_map=vmap,
        vq_config=dict(embed_dim=8, num_embeddings=8, latent_channels=8, resolution=8, base_channels=32,
                       channel_multiplier=[1, 2], num_res_blocks=1, attn_resolutions=[]))
    return transformers.ChameleonForConditionalGeneration(cfg).eval()


def make_janus():
    torch.manual_seed(0)
    cfg = transformers.JanusConfig(
        text_config=dict(model_type="llama", **TXT),
        vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4,
                           projection_dim=D, mlp_ratio=2, depth=1, num_image_tokens=4),
        vq_config=dict(embed_dim=8, num_embeddings=16, latent_channels=8, base_channels=32, channel_multiplier=[1, 2],
                       num_res_blocks=1, num_patches=2, projection_dim=D, image_token_embed_dim=D, num_hidden_layers=1),
        image_token_id=IMG)
    m = transformers.JanusForConditionalGeneration(cfg).eval()
    m.generation_config.generation_kwargs = {"boi_token_id": BOI}
    m.generation_config.pad_token_id, m.generation_config.bos_token_id = PAD, BOS
    return m


def make_emu3():
    torch.manual_seed(0)
    vmap = {"<image>": IMG, "<|image start|>": BOI, "<|image end|>": EOI, "<|extra_200|>": EOL,
            **{f"<|visual token{i:06d}|>": c for i, c in enumerate(CODES)}}
    cfg = transformers.Emu3Config(
        text_config=dict(**TXT, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2),
        vq_config=dict(codebook_size=8, embed_dim=8, latent_channels=8, base_channels=32, channel_multiplier=[1, 2],
                       num_res_blocks=1, attn_resolutions=[], hidden_size=64, num_attention_heads=1,
                       temporal_downsample_factor=2),
        vocabulary_map=vmap)
    return transformers.Emu3ForConditionalGeneration(cfg).eval()


# name -> (builder, image tokens per 8×8 image, boi id, eoi id, extra model inputs)
# Emu3's processor writes a header (size "4*4" and <|image token|>) after <|image start|> and
# <|extra_201|> before <|image end|>; those ids are inside the image block but not image.
EMU3_HEADER, EMU3_TRAILER = [20, 21, 22, 23], [24]
FAMILIES = {
    "llava": (make_llava, 4, None, None, {}),
    "chameleon": (make_chameleon, 16, BOI, EOI, {}),
    "chameleon_swin": (lambda: make_chameleon(swin=True), 16, BOI, EOI, {}),
    "janus": (make_janus, 4, BOI, None, {}),  # Janus' eoi id comes from its tokenizer only
    "emu3": (make_emu3, 20, BOI, EOI, {"image_sizes": torch.tensor([[8, 8], [8, 8]])}),  # 4×(4+1 eol)
}
PRE = [[BOS, 7], [BOS]]  # text before the image block, per row
POST = [[8, 9], [10, 11, 12]]  # text after it


def make_batch(family, seed=1):
    _, n_img, boi, eoi, extra = FAMILIES[family]
    head, tail = (EMU3_HEADER, EMU3_TRAILER) if family == "emu3" else ([], [])
    block = ([boi] if boi else []) + head + [IMG] * n_img + tail + ([eoi] if eoi else [])
    rows = [PRE[b] + block + POST[b] for b in range(2)]
    L = max(map(len, rows))
    ids = torch.tensor([[PAD] * (L - len(r)) + r for r in rows])  # left padding
    am = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows])
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": ids, "attention_mask": am, "pixel_values": torch.randn(2, 3, 8, 8, generator=g), **extra}


def hf_forward(model, batch, **kw):
    am = batch["attention_mask"]
    with torch.no_grad():
        return model(**batch, position_ids=(am.cumsum(-1) - 1).clamp(min=0), use_cache=False, **kw)


@pytest.fixture(scope="module", params=list(FAMILIES))
def fam(request):
    model = FAMILIES[request.param][0]()
    return request.param, model, hooks.wrap(model)


def _close(a, b, mask, atol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b)[mask].abs().max().item()
    assert diff <= atol, diff


# -- tests ---------------------------------------------------------------------------------
def test_adapter_and_sites(fam):
    name, model, hm = fam
    assert hm.adapter.name == name
    assert hm.n_layers == N_LAYERS
    sites = hm.sites
    expected = {"embed", "final", "logits"} | {
        f"{k}.{L}" for L in range(N_LAYERS)
        for k in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out", "attn_scores", "attn_pattern")
    }
    assert set(sites) == expected
    assert sites["resid_mid.1"] == f"B×P×{D}"
    assert sites["head_out.0"] == f"B×P×{N_HEADS}×{D // N_HEADS}"
    assert sites["attn_pattern.1"] == f"B×{N_HEADS}×P×P"
    assert sites["logits"] == f"B×P×{VOCAB}"
    assert model.config.get_text_config()._attn_implementation.startswith("interp_")


def test_cache_matches_transformers(fam):
    name, model, hm = fam
    batch = make_batch(name)
    res = hm.run(batch, [hooks.Cache("*")])
    c, am = res.cache, batch["attention_mask"].bool()
    out = hf_forward(model, batch, output_hidden_states=True)
    hs = out.hidden_states
    _close(c["embed"], hs[0], am)  # merged text + image embeddings
    _close(c["resid_pre.0"], hs[0], am)
    _close(c["resid_post.0"], hs[1], am)
    _close(c["final"], hs[-1], am, 1e-4)  # transformers' last hidden state is post-norm
    if name.startswith("chameleon"):  # the model masks image-code logits after lm_head; the site is before that
        text_cols = torch.ones(VOCAB, dtype=torch.bool)
        text_cols[CODES] = False
        _close(c["logits"][..., text_cols], out.logits[..., text_cols], am, 1e-4)
        assert (out.logits[..., CODES] == torch.finfo(out.logits.dtype).min).all()
        assert (c["logits"][..., CODES][am].abs() < 1e3).all()
    else:
        _close(c["logits"], out.logits, am, 1e-4)
    for L in range(N_LAYERS):
        _close(c[f"resid_mid.{L}"], c[f"resid_pre.{L}"] + c[f"attn_out.{L}"], am, 1e-5)
        _close(c[f"resid_post.{L}"], c[f"resid_mid.{L}"] + c[f"mlp_out.{L}"], am, 1e-5)
    _close(c["resid_pre.1"], c["resid_post.0"], am, 0)
    # head_out through the output projection is the attention output
    o_proj = hm.model.get_submodule(f"{hm.adapter.layers}.1.self_attn.o_proj")
    with torch.no_grad():
        attn = o_proj(c["head_out.1"].flatten(-2))
    if name == "chameleon_swin":  # attn_out is the post-attention norm of that
        with torch.no_grad():
            attn = hm.model.get_submodule(f"{hm.adapter.layers}.1.input_layernorm")(attn)
    _close(attn, c["attn_out.1"], am, 1e-5)
    # attention patterns equal transformers' eager attention weights on real query/key pairs
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    att = hf_forward(eager, batch, output_attentions=True).attentions
    for b in range(2):
        real = am[b]
        for L in range(N_LAYERS):
            p, ref = c[f"attn_pattern.{L}"][b][:, real][:, :, real], att[L][b][:, real][:, :, real]
            assert (p - ref).abs().max().item() < 1e-5
            assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
            assert (torch.triu(p, 1) == 0).all()  # causal


def _image_features(name, model, batch):
    inner = model.model
    with torch.no_grad():
        if name == "emu3":
            return torch.cat(inner.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output)
        feats = inner.get_image_features(batch["pixel_values"]).pooler_output
        return torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats.reshape(-1, D)


def test_image_span_holds_the_image_features(fam):
    name, model, hm = fam
    batch = make_batch(name)
    res = hm.run(batch, [hooks.Cache("embed", positions="image")])
    feats = _image_features(name, model, batch)
    n_img = FAMILIES[name][1]
    assert res.cache["embed"].shape == (2 * n_img, D)
    assert torch.allclose(res.cache["embed"], feats, atol=1e-6)


def test_spans_known_answer(fam):
    name, model, hm = fam
    _, n_img, boi, eoi, _ = FAMILIES[name]
    batch = make_batch(name)
    ids, am = batch["input_ids"], batch["attention_mask"].bool()
    spans = hm.spans(ids, am)
    assert set(spans) == {"image", "text"} | ({"boi"} if boi else set()) | ({"eoi"} if eoi else set())
    for b in range(2):
        pad = int((~am[b]).sum())
        pre, post = len(PRE[b]), len(POST[b])
        head, tail = (len(EMU3_HEADER), len(EMU3_TRAILER)) if name == "emu3" else (0, 0)
        start = pad + pre + (1 if boi else 0) + head  # first image position
        image = torch.zeros(ids.shape[1], dtype=torch.bool)
        image[start:start + n_img] = True
        text = torch.zeros_like(image)
        text[pad:pad + pre] = True
        text[-post:] = True
        assert torch.equal(spans["image"][b], image)
        assert torch.equal(spans["text"][b], text)
        if boi:
            assert spans["boi"][b].nonzero().flatten().tolist() == [start - 1 - head]
        if eoi:
            assert spans["eoi"][b].nonzero().flatten().tolist() == [start + n_img + tail]
    # single-position spans cache one row per batch element
    if eoi:
        res = hm.run(batch, [hooks.Cache("resid_post.1", positions="eoi")])
        assert res.cache["resid_post.1"].shape == (2, D)
    # code ids given directly (e.g. generated image tokens) are image for VQ models
    ids2 = ids.clone()
    ids2[0, -1] = CODES[3]
    extra = hm.spans(ids2, am)["image"][0, -1].item()
    assert extra == (name.startswith("chameleon") or name == "emu3")


def test_editing_embed_image_span_is_causal(fam):
    name, model, hm = fam
    batch = make_batch(name)
    am = batch["attention_mask"].bool()
    image = hm.spans(batch["input_ids"], am)["image"]
    before = am & (image.long().cumsum(1) == 0)  # real positions before the first image token
    after = am & ~image & (image.long().cumsum(1) > 0)
    clean = hm.run(batch).logits
    v = torch.randn(D, generator=torch.Generator().manual_seed(3))
    steered = hm.run(batch, [hooks.Steer("embed", positions="image", vector=v, scale=5.0)]).logits
    assert torch.equal(steered[before], clean[before])
    assert (steered[after] - clean[after]).abs().amax(-1).min().item() > 1e-4


def test_knockout_of_image_keys_makes_text_ignore_the_image(fam):
    name, model, hm = fam
    b1, b2 = make_batch(name, seed=1), make_batch(name, seed=2)  # same tokens, different pixels
    am = b1["attention_mask"].bool()
    non_image = am & ~hm.spans(b1["input_ids"], am)["image"]
    d_clean = (hm.run(b1).logits - hm.run(b2).logits)[non_image].abs().max().item()
    ko = [hooks.Knockout("all", queries=non_image, keys="image", mode="mask")]
    k1, k2 = hm.run(b1, ko).logits, hm.run(b2, ko).logits
    assert d_clean > 1e-3
    assert (k1 - k2)[non_image].abs().max().item() < 1e-6
    assert (k1 - k2)[am & ~non_image].abs().max().item() > 1e-3  # image rows still see the pixels


def test_generate_matches_transformers(fam):
    name, model, hm = fam
    batch = make_batch(name)
    with torch.no_grad():
        ref = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=PAD)
    g = hm.generate(batch, [hooks.Cache("resid_post.1", positions="last"), hooks.Cache("mlp_out.0", positions="text")],
                    max_new_tokens=3)
    assert torch.equal(g.sequences, ref)
    assert g.prompt_len == batch["input_ids"].shape[1]
    assert g.cache["resid_post.1"].shape == (2, 3, D)  # one per forward: prompt + 2 decode steps
    # "text" is resolved on the whole sequence at every step: prompt text + the 2 generated tokens fed back
    full_mask = torch.cat([batch["attention_mask"].bool(), torch.ones(2, 3, dtype=torch.bool)], 1)
    text = hm.spans(ref, full_mask)["text"]
    assert text[:, :g.prompt_len].sum().item() == sum(len(p) + len(q) for p, q in zip(PRE, POST))
    assert g.cache["mlp_out.0"].shape == (int(text[:, :-1].sum()), D)


# -- family-specific ------------------------------------------------------------------------
def test_llava_picks_text_family_and_rejects_unknown():
    gemma2 = dict(model_type="gemma2", **TXT, head_dim=8, pad_token_id=PAD, query_pre_attn_scalar=8)
    m = make_llava(text_config=gemma2, attn="eager")  # Gemma 2 has no SDPA path in transformers
    assert find_adapter(m).name == "llava_gemma2"
    hm = hooks.wrap(m)
    batch = make_batch("llava")
    am = batch["attention_mask"].bool()
    c = hm.run(batch, [hooks.Cache("*")]).cache
    hs = hf_forward(m, batch, output_hidden_states=True).hidden_states
    _close(c["resid_post.0"], hs[1], am, 1e-5)
    for L in range(N_LAYERS):
        _close(c[f"resid_mid.{L}"], c[f"resid_pre.{L}"] + c[f"attn_out.{L}"], am, 1e-5)
        _close(c[f"resid_post.{L}"], c[f"resid_mid.{L}"] + c[f"mlp_out.{L}"], am, 1e-5)
    odd = make_llava(text_config=dict(model_type="phi3", **TXT, pad_token_id=PAD))  # no adapter for Phi-3 blocks
    assert find_adapter(odd).name == "inferred:llava"  # structural inference takes over (hooks.infer)


def _tiny_llava_processor():
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<s>", "</s>", "<image>", "<unk>"] + [f"w{i}" for i in range(40)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                               eos_token="</s>", unk_token="<unk>",
                                               extra_special_tokens={"image_token": "<image>"})
    ip = transformers.CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    proc = transformers.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=4,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1)
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(2)]
    return proc, images


def test_llava_processor_batches():
    proc, images = _tiny_llava_processor()
    m = make_llava()
    hm = hooks.wrap(m, proc)
    batch = {"text": ["w1 <image> w2 w3", "w5 w6 w7 <image> w8"], "images": images}
    inputs = hm.prepare(batch)
    assert inputs["pixel_values"].shape == (2, 3, 8, 8)
    assert (inputs["input_ids"] == IMG).sum(1).tolist() == [4, 4]  # 4 patches, CLS dropped
    res = hm.run(batch, [hooks.Cache("resid_post.1", positions="image"), hooks.Cache("resid_post.0", positions="last")])
    assert res.cache["resid_post.1"].shape == (8, D)
    assert res.cache["resid_post.0"].shape == (2, D)
    ref = hf_forward(m, inputs, output_hidden_states=True).hidden_states[1]
    last = inputs["attention_mask"].sum(1) - 1  # right padding for a plain run
    assert torch.allclose(res.cache["resid_post.0"], ref[torch.arange(2), last], atol=1e-5)
    # the same examples as dataset rows (what Ablate/Patch references iterate over)
    rows = [{"text": t, "image": im} for t, im in zip(batch["text"], images)]
    assert torch.equal(hm.prepare(rows)["input_ids"], inputs["input_ids"])
    g = hm.generate(batch, max_new_tokens=2)  # left-padded through the processor
    assert g.sequences.shape == (2, inputs["input_ids"].shape[1] + 2)
    assert g.sequences[0, 0].item() == PAD and len(g.texts) == 2  # row 0 is the shorter prompt


def test_janus_generate_image_with_interventions():
    from hooks.adapters.janus import generate_image

    m = make_janus()
    hm = hooks.wrap(m)
    ids = torch.tensor([[BOS, 7, 8, BOI], [PAD, BOS, 9, BOI]])
    batch = {"input_ids": ids, "attention_mask": (ids != PAD).long()}
    with torch.no_grad():
        ref = m.generate(**batch, generation_mode="image", do_sample=False, guidance_scale=2.0)
    g = generate_image(hm, batch, [hooks.Cache("resid_post.1", positions="last"),
                                   hooks.Cache("resid_pre.0", positions="text"),
                                   hooks.Cache("resid_pre.1", positions="image")], guidance_scale=2.0)
    n = m.config.vision_config.num_image_tokens
    assert torch.equal(g.sequences, ref) and g.sequences.shape == (2, n)
    assert g.cache["resid_post.1"].shape == (4, n, D)  # conditional + unconditional rows, one per step
    assert g.cache["resid_pre.0"].shape == (2 * (3 + 2), D)  # prompt text (boi excluded), both halves
    assert g.cache["resid_pre.1"].shape == (4 * (n - 1), D)  # every generated token fed back
    v = torch.randn(D, generator=torch.Generator().manual_seed(0))
    s = generate_image(hm, batch, [hooks.Steer("resid_post.0", positions="image", vector=v, scale=20.0)],
                       guidance_scale=2.0)
    assert torch.equal(s.sequences[:, 0], ref[:, 0])  # the first token is predicted from the prompt alone
    assert not torch.equal(s.sequences, ref)


def test_emu3_text_only_causal_lm():
    torch.manual_seed(0)
    m = transformers.Emu3ForCausalLM(transformers.Emu3TextConfig(**TXT, pad_token_id=PAD, bos_token_id=BOS,
                                                                 eos_token_id=2)).eval()
    hm = hooks.wrap(m)
    assert hm.adapter.name == "emu3" and hm.adapter.layers == "model.layers"
    ids = torch.tensor([[BOS, 7, 8, 9]])
    c = hm.run(ids, [hooks.Cache("*")]).cache
    out = hf_forward(m, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, output_hidden_states=True)
    assert torch.allclose(c["resid_post.0"], out.hidden_states[1], atol=1e-6)
    assert torch.allclose(c["logits"], out.logits, atol=1e-5)
    assert hm.spans(ids, torch.ones_like(ids, dtype=torch.bool))["text"].all()


def test_janus_processor_markers_and_image_prompts():
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers

    from hooks.adapters.janus import generate_image

    words = ["<pad>", "<s>", "</s>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>", "<unk>"]
    words += [f"w{i}" for i in range(40)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                              "eoi_token": "<end_of_image>"})
    proc = transformers.JanusProcessor(image_processor=transformers.JanusImageProcessor(size={"height": 8, "width": 8}, min_size=4),
                                       tokenizer=tok, num_image_tokens=4)
    hm = hooks.wrap(make_janus(), proc)
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(2)]
    batch = {"text": ["w1 <image_placeholder> w2 w3", "w5 w6 w7 <image_placeholder> w8"], "images": images}
    inputs = hm.prepare(batch)  # Janus' processor pads on the left
    ids, am = inputs["input_ids"], inputs["attention_mask"].bool()
    spans = hm.spans(ids, am)
    assert spans["eoi"].nonzero().tolist() == [[0, 7], [1, 8]]  # <end_of_image> id known from the tokenizer
    assert spans["boi"].nonzero().tolist() == [[0, 2], [1, 3]]
    assert spans["text"].sum(1).tolist() == [3, 4] and spans["image"].sum(1).tolist() == [4, 4]
    assert hm.run(batch, [hooks.Cache("resid_post.1", positions="eoi")]).cache["resid_post.1"].shape == (2, D)
    # texts for image generation go through the processor, which appends <begin_of_image>
    g = generate_image(hm, ["w1 w2", "w3"], [hooks.Cache("resid_post.0", positions="boi")], guidance_scale=2.0)
    assert g.prompt_len == 3 and g.sequences.shape == (2, 4)
    assert g.cache["resid_post.0"].shape == (4, D)  # the boi position, conditional + unconditional rows


def test_load_saved_llava_directory_with_processor(tmp_path):
    proc, images = _tiny_llava_processor()
    m = make_llava()
    m.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    hm = hooks.load(str(tmp_path))  # AutoModelForImageTextToText + AutoProcessor, offline
    assert hm.adapter.name == "llava" and type(hm.processor).__name__ == "LlavaProcessor"
    batch = {"text": ["w1 <image> w2"], "images": images[:1]}
    res = hm.run(batch, [hooks.Cache("resid_post.0", positions="image")])
    assert res.cache["resid_post.0"].shape == (4, D)
    ref = hf_forward(m, hm.prepare(batch)).logits
    assert torch.allclose(res.logits, ref, atol=1e-5)
