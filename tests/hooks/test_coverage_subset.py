"""Stratified CI subset of the coverage sweep (``python -m tools.coverage`` runs every architecture).

Families are chosen to span the block kinds structural inference must read: parallel residual
(GPT-NeoX, Falcon, Phi, GPT-J), sandwich norms (OLMo-2), MoE (Mixtral, Llama 4's flattened MoE),
hybrids (Jamba, LFM2), state-space (Mamba), ALiBi (Bloom), flattened MLP (OPT), blocks returning
a list (OpenAI-GPT), a recurrent cache that reads 0 positions (RecurrentGemma), a multi-stream
residual (HY-V4), post-norm encoders (BERT, RoBERTa, DeBERTa-v2, ModernBERT, DistilBERT), an
encoder-decoder (BART, sites on the encoder) and VLMs (LLaVA-NeXT,
PaliGemma, Idefics3, Mistral3). Each runs every known-answer check it is eligible for
(:func:`tools.coverage.check_model`).
"""
import pytest

from tools.coverage import check_model

SUBSET = [
    ("causal", "gpt_neox"), ("causal", "falcon"), ("causal", "phi"), ("causal", "gptj"),
    ("causal", "olmo2"), ("causal", "mixtral"), ("causal", "llama4_text"),
    ("causal", "jamba"), ("causal", "lfm2"), ("causal", "mamba"), ("causal", "bloom"), ("causal", "opt"),
    ("causal", "openai-gpt"), ("causal", "recurrent_gemma"), ("causal", "hy_v4"),
    ("masked", "bert"), ("masked", "roberta"), ("masked", "deberta-v2"), ("masked", "modernbert"),
    ("masked", "distilbert"), ("masked", "bart"),
    ("image_text", "llava_next"), ("image_text", "paligemma"), ("image_text", "idefics3"),
    ("image_text", "mistral3"),
]


def _locked_transformers() -> str | None:
    """The transformers version in requirements.lock (the subset's reference), None without a lock."""
    import re
    from pathlib import Path

    lock = Path(__file__).resolve().parents[2] / "requirements.lock"
    m = re.search(r"^transformers==(\S+)", lock.read_text(), re.M) if lock.exists() else None
    return m.group(1) if m else None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("registry,model_type", SUBSET, ids=[f"{r}:{m}" for r, m in SUBSET])
def test_architecture_passes_its_checks(registry, model_type):
    import transformers

    row = check_model(model_type, registry)
    if not row["buildable"] and transformers.__version__ != _locked_transformers():
        # compatibility runs (make test-oldest/-latest): the tiny config of another release may not build
        pytest.skip(f"{model_type} does not build from a tiny config on transformers {transformers.__version__}: "
                    f"{row.get('why')}")
    assert row["buildable"], row.get("why")
    fails = {k: v for k, v in row["checks"].items() if v.startswith("fail")}
    assert not fails, fails
    assert row["checks"]["wrap"] == "pass" and row["checks"]["cache_hs"] == "pass"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("registry,model_type", [("causal", "gpt_neox"), ("causal", "mixtral")])
def test_generation_with_steer_on_new_tokens(registry, model_type):
    row = check_model(model_type, registry)
    assert row["checks"]["generate"] == "pass", row["checks"]["generate"]
