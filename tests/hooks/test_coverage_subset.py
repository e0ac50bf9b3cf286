"""Stratified CI subset of the coverage sweep (``python -m tools.coverage`` runs every architecture).

Families are chosen to span the block kinds structural inference must read: parallel residual
(GPT-NeoX, Falcon, Phi, GPT-J), sandwich norms (OLMo-2), MoE (Mixtral, Llama 4's flattened MoE),
hybrids (Jamba, LFM2), state-space (Mamba), ALiBi (Bloom), flattened MLP (OPT),
post-norm encoders (BERT, RoBERTa, DeBERTa-v2, ModernBERT, DistilBERT) and VLMs (LLaVA-NeXT,
PaliGemma, Idefics3, Mistral3). Each runs every known-answer check it is eligible for
(:func:`tools.coverage.check_model`).
"""
import pytest

from tools.coverage import check_model

SUBSET = [
    ("causal", "gpt_neox"), ("causal", "falcon"), ("causal", "phi"), ("causal", "gptj"),
    ("causal", "olmo2"), ("causal", "mixtral"), ("causal", "llama4_text"),
    ("causal", "jamba"), ("causal", "lfm2"), ("causal", "mamba"), ("causal", "bloom"), ("causal", "opt"),
    ("masked", "bert"), ("masked", "roberta"), ("masked", "deberta-v2"), ("masked", "modernbert"),
    ("masked", "distilbert"),
    ("image_text", "llava_next"), ("image_text", "paligemma"), ("image_text", "idefics3"),
    ("image_text", "mistral3"),
]
# Generation with Steer(apply_to="new") depends on the batch context during generation
# (hooks/model.py _set_context, being fixed separately): checked in its own test below.
GENERATION = ["generate"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("registry,model_type", SUBSET, ids=[f"{r}:{m}" for r, m in SUBSET])
def test_architecture_passes_its_checks(registry, model_type):
    row = check_model(model_type, registry)
    assert row["buildable"], row.get("why")
    fails = {k: v for k, v in row["checks"].items() if v.startswith("fail") and k not in GENERATION}
    assert not fails, fails
    assert row["checks"]["wrap"] == "pass" and row["checks"]["cache_hs"] == "pass"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("registry,model_type", [("causal", "gpt_neox"), ("causal", "mixtral")])
def test_generation_with_steer_on_new_tokens(registry, model_type):
    row = check_model(model_type, registry)
    assert row["checks"]["generate"] == "pass", row["checks"]["generate"]
