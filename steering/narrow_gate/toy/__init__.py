"""The planted-gate toy world (known answers for the narrow-gate pipeline without big weights).

    from steering.narrow_gate.toy import load_toy_model, make_examples
    gated = load_toy_model("gated")        # image information reaches text only through [EOI]
    free = load_toy_model("free")          # text reads the image tokens directly
    examples = make_examples(400, seed=1)  # "<s> <racm3:break> IMG... <eoss> what class ?" -> "cat"

See :mod:`.world` (task, tokenizer, model config) and :mod:`.train` (the seeded training run
behind ``interp toy train-gate-models``).
"""
from .world import (CLASSES, COLORS, N_PATCHES, TOY_MODEL_DIR, load_toy_model, make_examples, make_pairs,
                    make_tokenizer, toy_config)

__all__ = ["CLASSES", "COLORS", "N_PATCHES", "TOY_MODEL_DIR", "load_toy_model", "make_examples", "make_pairs",
           "make_tokenizer", "toy_config"]
