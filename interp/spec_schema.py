"""JSON Schema of intervention specs, generated from the dataclasses in :mod:`hooks.interventions`.

    python -m interp.spec_schema > docs/spec.schema.json     # what docs/spec.md links to

Every field of every intervention appears with its default; the field *kinds* (what a
``sites``, ``positions`` or ``heads`` value may be) are described once here and shared, so
one concept has one name and one shape everywhere. Old field names (``site``, ``how``,
``mode``) are listed as deprecated aliases.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields

SITES = {"description": "canonical site names, wildcards (resid_post.*) or module paths",
         "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
POSITIONS = {"description": "position selector: all, last, an int (real-token index, negative from the end), "
                            "a slice string '1:', a list of ints, per-row lists, {token: X}, or a span name "
                            "(image, text, residues, cls, eos, boi, eoi)",
             "oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "array"},
                       {"type": "object", "properties": {"token": {"type": ["string", "integer"]}},
                        "required": ["token"], "additionalProperties": False}]}
HEADS = {"description": "heads of a site with a head axis (head_out.L, attn_pattern.L, attn_scores.L); null = all",
         "oneOf": [{"type": "null"}, {"type": "integer", "minimum": 0},
                   {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}]}
APPLY_TO = {"enum": ["all", "prompt", "new"], "description": "while generating: prompt and new tokens, the prompt only, or new tokens only"}
FIELD_KINDS = {
    "sites": SITES, "positions": POSITIONS, "source_positions": {**POSITIONS, "oneOf": [{"type": "null"}, *POSITIONS["oneOf"]]},
    "queries": POSITIONS, "heads": HEADS, "apply_to": APPLY_TO,
    "keys": {**POSITIONS, "description": POSITIONS["description"] + "; or 'others' (every key but the query's own)"},
    "layers": {"description": "'all', a layer index or a list of them",
               "oneOf": [{"const": "all"}, {"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
    "device": {"type": ["string", "null"], "description": "where cached tensors go (null: stay on the model's device)"},
    "dtype": {"type": ["string", "null"], "description": "e.g. float16; null keeps the activation dtype"},
    "layout": {"enum": ["auto", "flat", "padded", "row"]},
    "reference": {"description": "texts, a text/jsonl file path, or a datasets.Dataset (Python only) for mean/resample",
                  "oneOf": [{"type": "null"}, {"type": "string"}, {"type": "array"}]},
    "seed": {"type": "integer"},
    "source": {"description": "other input (texts/token ids) or cached activations {site: tensor} (Python only)"},
    "vector": {"type": "array", "description": "steering vector (nested lists for per-head vectors)"},
    "scale": {"type": "number"},
    "fn": {"type": "string", "pattern": "^[A-Za-z_][\\w.]*:[A-Za-z_][\\w.]*$", "description": "'package.module:function'"},
}
METHODS = {"ablate": ["zero", "mean", "resample"], "knockout": ["zero", "mask"]}


def _field_schema(kind: str, f) -> dict:
    if f.name == "method":
        s = {"enum": METHODS[kind]}
    elif f.name in FIELD_KINDS:
        s = dict(FIELD_KINDS[f.name])
    else:
        raise KeyError(f"spec_schema: no schema for field {kind}.{f.name}; add it to FIELD_KINDS")
    if f.default is not MISSING and f.default is not None or f.name in ("heads", "device", "dtype", "source_positions"):
        default = None if f.default is MISSING else f.default
        if not callable(default):
            s["default"] = default
    return s


def json_schema() -> dict:
    from hooks.interventions import _REGISTRY, ALIASES

    variants = []
    for kind, cls in sorted(_REGISTRY.items()):
        props = {"type": {"const": kind}}
        for f in fields(cls):
            props[f.name] = _field_schema(kind, f)
        for old, new in ALIASES.get(kind, {}).items():
            props[old] = {**props[new], "deprecated": True, "description": f"old name of '{new}'"}
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        variants.append({"title": cls.__name__, "description": doc, "type": "object", "properties": props,
                         "required": ["type"], "additionalProperties": False})
    iv = {"oneOf": variants}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "interp/spec.schema.json",
            "title": "interp intervention spec",
            "description": "A list of interventions, or a mapping with an 'interventions' list (hooks.load_spec).",
            "oneOf": [{"type": "array", "items": {"$ref": "#/$defs/intervention"}},
                      {"type": "object", "properties": {"interventions": {"type": "array", "items": {"$ref": "#/$defs/intervention"}}},
                       "required": ["interventions"]}],
            "$defs": {"intervention": iv}}


def main():
    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    main()
