"""LoRA SFT: the training loss goes down, the adapter round-trips, hook sites see LoRA."""
import pytest
import torch

import hooks
from interp.landscape.data import sft_training_records
from interp.landscape.errors import SFTConfigError
from interp.landscape.extract import extract_representations
from interp.landscape.prompts import FewShotPrompter, letter_token_ids
from interp.landscape.sft import SFTConfig, answer_loss, hooked, load_adapter, save_adapter, train_lora
from interp.landscape.synthetic import make_tiny_llama

FAST = SFTConfig(r=8, lr=3e-3, epochs=3, batch_size=8, seed=0)


def base(tokenizer):
    return make_tiny_llama(tokenizer, hidden_size=32, n_layers=3, seed=0)


@pytest.fixture(scope="module")
def trained(splits, tokenizer, tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = sft_training_records(splits["dev"], splits["validation"])
        peft_model, hist = train_lora(base(tokenizer), tokenizer, train, FAST)
        path = save_adapter(peft_model, tmp_path_factory.mktemp("sft") / "adapter", history=hist)
    finally:
        torch.set_num_threads(n)
    return peft_model, hist, path, train


def test_lora_training_lowers_the_training_loss(trained, tokenizer):
    peft_model, hist, _, train = trained
    assert len(hist["loss"]) == FAST.epochs * -(-len(train) // FAST.batch_size)
    # before: ~log(vocab) (random LM head); after: well below it (the letter prior alone is ~log 4)
    assert hist["loss_before"] > 4.0
    assert hist["loss_after"] < hist["loss_before"] - 1.0
    assert answer_loss(peft_model, tokenizer, train) == pytest.approx(hist["loss_after"], rel=1e-5)
    assert max(hist["lr"]) <= FAST.lr and hist["lr"][-1] < 0.1 * FAST.lr  # cosine decay
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-2] for n, m in peft_model.named_modules() if n.endswith("lora_A")} == set(FAST.target_modules)


def test_adapter_round_trip_and_hook_sites_see_lora(trained, splits, tokenizer):
    peft_model, _, path, _ = trained
    assert (path / "adapter_model.safetensors").exists() and (path / "adapter_config.json").exists()
    prompts = FewShotPrompter(k=0).prompts(splits["test"][:12])
    ids = letter_token_ids(tokenizer)
    ft = extract_representations(hooked(peft_model, tokenizer), prompts, ids, batch_size=5)
    reloaded = extract_representations(hooked(load_adapter(base(tokenizer), path), tokenizer), prompts, ids)
    merged = load_adapter(base(tokenizer), path).merge_and_unload()
    via_merged = extract_representations(hooks.wrap(merged, tokenizer), prompts, ids)
    plain = extract_representations(hooks.wrap(base(tokenizer), tokenizer), prompts, ids)
    for L in ft.layers:
        assert torch.equal(ft.layers[L], reloaded.layers[L])                       # exact round trip
        assert torch.allclose(ft.layers[L], via_merged.layers[L], atol=1e-4)       # sites see LoRA's effect
        assert (ft.layers[L] - plain.layers[L]).abs().max() > 1e-2                 # ... which is not nothing
    assert torch.allclose(ft.letter_logits, via_merged.letter_logits, atol=1e-4)


def test_sft_config_errors(tmp_path, tokenizer, splits):
    with pytest.raises(SFTConfigError, match="unknown SFT config key.*'rank'"):
        SFTConfig.from_dict({"rank": 8})
    with pytest.raises(SFTConfigError, match="invalid lr"):
        SFTConfig(lr=0)
    with pytest.raises(SFTConfigError, match="does not exist"):
        SFTConfig.from_yaml(tmp_path / "nope.yaml")
    (tmp_path / "lora.yaml").write_text("r: 4\nlr: 2.0e-4\nepochs: 2\ntarget_modules: [q_proj, v_proj]\n")
    cfg = SFTConfig.from_yaml(tmp_path / "lora.yaml")
    assert (cfg.r, cfg.lr, cfg.epochs, cfg.target_modules, cfg.lora_alpha) == (4, 2e-4, 2, ("q_proj", "v_proj"), 16)
    with pytest.raises(SFTConfigError, match="c_attn"):
        train_lora(base(tokenizer), tokenizer, splits["dev"][:2], SFTConfig(target_modules=["c_attn"]))
    with pytest.raises(SFTConfigError, match="no training records"):
        train_lora(base(tokenizer), tokenizer, [], SFTConfig())
    with pytest.raises(SFTConfigError, match="not a LoRA adapter"):
        load_adapter(base(tokenizer), tmp_path)
