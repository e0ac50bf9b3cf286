"""ICL vs SFT: the representation landscape of few-shot prompting and LoRA fine-tuning.

Reproduces Doimo, Serra, Ansuini, Cazzaniga, "The representation landscape of few-shot
learning and fine-tuning in large language models" (NeurIPS 2024) on the hook registry and
:mod:`geometry`: MMLU-format questions (Hendrycks et al., ICLR 2021) are asked with
k-shot prompts (shots shuffled per question, seeded) and to a LoRA fine-tuned model (Hu et al.,
ICLR 2022; the paper's recipe); the last prompt token's representation where the authors' code
reads it — each block's input-norm output, the final norm and the logits, labelled 1..L+1
(``sites``) — is analysed with Gride ID, kNN density, Advanced Density Peaks (ARI with subjects
and with answer letters, core points) and label overlaps.

    from interp.landscape import run_landscape
    res = run_landscape("path/or/hf-id", "cais/mmlu", shots="0,1,2,5", sft="lora.yaml", out="runs/ls")
    res.table.head()          # condition, layer, metric, value
    res.accuracy              # letter-logit accuracy per condition

    interp landscape --model MODEL --data DATA --shots 0,1,2,5 --sft lora.yaml --out DIR

Modules: ``data`` (records, loaders, caps, SFT split), ``prompts`` (template, letters,
accuracy), ``extract`` (representations, safetensors cache), ``sft`` (LoRA), ``analysis``
(per-layer landscape), ``plots``, ``pipeline``, ``sites`` (where and how layers are labelled),
``synthetic`` (offline toy data and model).
Importing this package is light: torch/transformers/peft load only when used.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "run_landscape": "pipeline", "LandscapeResult": "pipeline", "parse_shots": "pipeline",
    "LandscapeConfig": "analysis", "landscape": "analysis", "layer_landscape": "analysis", "wide": "analysis",
    "METRICS": "analysis",
    "MCQ": "data", "load_split": "data", "cap_per_subject": "data", "sft_training_records": "data",
    "records_from_rows": "data",
    "build_prompt": "prompts", "FewShotPrompter": "prompts", "letter_token_ids": "prompts",
    "letter_accuracy": "prompts",
    "extract_representations": "extract", "save_representations": "extract", "load_representations": "extract",
    "Representations": "extract",
    "SFTConfig": "sft", "train_lora": "sft", "save_adapter": "sft", "load_adapter": "sft", "hooked": "sft",
    "plot_landscape": "plots", "paper_sites": "sites",
    "LandscapeInputError": "errors", "DataError": "errors", "PromptError": "errors", "SFTConfigError": "errors",
}


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'interp.landscape' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{mod}"), name)


__all__ = sorted(_EXPORTS)
