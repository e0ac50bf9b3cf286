"""Shared tiny models and data for the saes tests (all built offline from configs, CPU, seconds)."""
from pathlib import Path

import pytest
import torch

import hooks
from tests.hooks import tiny_models as TM

ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]
AMINO = "LAGVSERTIDPKQNFYMHWC"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core box: one intra-op thread is ~20x faster than two contended ones."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def token_rows(n, seed=0, lo=3, hi=16, vocab=64, bos=1):
    """LLM-style rows: BOS then random ids (>= 3, so no PAD/BOS/EOS inside), ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [([bos] if bos is not None else []) + torch.randint(3, vocab, (m,), generator=g).tolist() for m in lengths]


def protein_seqs(n, seed=0, lo=4, hi=20):
    g = torch.Generator().manual_seed(seed)
    out = []
    for m in torch.randint(lo, hi, (n,), generator=g).tolist():
        out.append("".join(AMINO[i] for i in torch.randint(0, len(AMINO), (m,), generator=g).tolist()))
    return out


@pytest.fixture(scope="session")
def gpt2():
    return hooks.wrap(TM.build("gpt2"))


@pytest.fixture(scope="session")
def esm(tmp_path_factory):
    from transformers import EsmTokenizer

    vocab = tmp_path_factory.mktemp("esm_vocab") / "vocab.txt"
    vocab.write_text("\n".join(ESM_VOCAB) + "\n")
    return hooks.wrap(TM.build("esm"), EsmTokenizer(str(vocab)))


@pytest.fixture(scope="session")
def tl():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN")
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return hooks.wrap(model)


def pytest_collection_modifyitems(config, items):
    quiet = [pytest.mark.filterwarnings("ignore:HookedTransformer.*deprecated:DeprecationWarning"),
             pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning")]
    for item in items:
        if "saes" in Path(str(item.fspath)).parts:
            for m in quiet:
                item.add_marker(m)


def tiny_llava():
    """A tiny random LLaVA (Llama text model, CLIP tower) with a word-level processor, offline."""
    import numpy as np
    import transformers
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
    torch.manual_seed(0)
    text = dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    cfg = transformers.LlavaConfig(
        text_config=text, image_token_id=3, vision_feature_layer=-1, vision_feature_select_strategy="default",
        vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=8, patch_size=4))
    model = transformers.LlavaForConditionalGeneration._from_config(cfg, attn_implementation="sdpa").eval()
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    return hooks.wrap(model, proc), images


@pytest.fixture(scope="session")
def llava():
    return tiny_llava()
