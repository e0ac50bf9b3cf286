"""Prompts, model inputs, predictions and scores of the three tasks of the ablation tables.

``task`` is ``"vqa"`` (generate a short answer; VQA accuracy), ``"caption"`` (generate a
caption; CIDEr) or ``"classify"`` (constrained answer: the candidate with the highest
log-likelihood; accuracy). Examples are dicts (see :mod:`.data`): an ``image`` (PIL) with
``question`` / ``answers`` / ``captions`` / ``label_name`` / ``candidates``; or, for models
whose images are tokens in the prompt (the toy models), a ready ``text``.

    exs = load_data("vqav2", n=200)
    preds = predict(hm, exs, "vqa", interventions=lambda inputs, lay, i: [])
    score("vqa", preds, exs)        # {"vqa_accuracy": 0.51}

Constrained answers cost one forward per batch when every candidate is a single token, else
one forward per candidate (e.g. 1000 for ImageNet class names) — subsample the candidates
for a quick run.

``interventions(inputs, layout, batch_index) -> list`` builds the interventions of one
prepared batch (knockouts depend on where each row's image is; see :mod:`.ablations`).
"""
from __future__ import annotations

import contextlib

import torch

from .errors import TaskError

TASKS = {"vqa": "vqa_accuracy", "caption": "cider", "classify": "accuracy"}
# the authors' generation lengths (Tab1_AblationVQA.py: 20, Tab1_AblationCaptioning.py: 60)
MAX_NEW_TOKENS = {"vqa": 20, "caption": 60}
# Tab1_AblationVQA.py ``PROMT_PIXTRAL`` (its line continuations join the four rules without newlines)
VQA_RULES = ("- Answer the question using a single word, number, or short phrase. Use as few words as possible."
             "- If the answer is a number, report it as a number, i.e. 2, not Two, and only include the number "
             "without any unit.- If the question is Yes/No, answer with Yes/No, and nothing else (no likely, "
             "unknown, etc.).- You cannot answer that the question is unanswerable. You must answer.")
EMU3_VQA = "Answer the question using a single word or phrase."
CAPTION = "Provide a one-sentence caption for the provided image."
INSTRUCTIONS = {
    "vqa": "{question}\n" + VQA_RULES,
    "caption": CAPTION,
    "classify": "What is the main object in this image? Answer with one word.",
}
# (family, task) -> prompt template, verbatim from the authors' Table 1 scripts ("prompt" mode):
# RitAreaSciencePark/Narrow-gate paper_experiments/Tab1_AblationVQA.py and Tab1_AblationCaptioning.py.
# ``{image}`` is the processor's placeholder; Emu3 goes through its chat template (see build_prompt).
AUTHOR_TEMPLATES = {
    ("chameleon", "vqa"): "{image}{question}\n" + VQA_RULES,
    ("llava", "vqa"): "{image}{question}\n" + VQA_RULES,  # the authors' llava-onevision prompt
    ("pixtral", "vqa"): "[INST]<s>{image}{question}" + VQA_RULES + "[/INST]",
    ("janus", "vqa"): '"{image}USER:{question}"\nAnswer the question using a single word or phrase' + VQA_RULES
                      + '."\nASSISTANT:"',
    ("chameleon", "caption"): "{image}" + CAPTION,
    ("llava", "caption"): "{image}USER: " + CAPTION + " ASSISTANT:",
    ("pixtral", "caption"): '[INST]"<s>{image} ' + CAPTION + '"[/INST]',
    ("janus", "caption"): '"{image}USER:' + CAPTION + ' \nASSISTANT:"',
}
EMU3_TEXT = {"vqa": "\n{question}" + EMU3_VQA, "caption": "\nProvide a one-sentence caption for the provided image"}
# Chameleon's processor appends <sep> unless return_for_text_completion: the authors use
# completion=False for VQA in "prompt" mode and True for captions
CHAMELEON_COMPLETION = {"vqa": False, "caption": True, "classify": True}
# our earlier per-family chat wrappers, kept for the classify task and as ``template=`` examples
TEMPLATES = {
    "llava": "USER: {image}\n{instruction} ASSISTANT:",
    "janus": "<|User|>: {image}\n{instruction}\n\n<|Assistant|>:",
    "chameleon": "{image}{instruction}",
    "emu3": "{image}{instruction}",
}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise TaskError(f"Unknown task {task!r}; use one of {sorted(TASKS)} (vqa: VQA accuracy, caption: CIDEr, "
                        "classify: constrained-answer accuracy).")
    return task


def image_placeholder(hm) -> str:
    """The text the processor expands into image tokens (``<image>``, ``<image_placeholder>``)."""
    proc = getattr(hm, "processor", None)
    for obj in (proc, getattr(proc, "tokenizer", None), hm.tokenizer):
        tok = getattr(obj, "image_token", None)
        if isinstance(tok, str):
            return tok
    return "<image>"


def build_prompt(hm, example: dict, task: str, template=None):
    """The prompt of one example: its ``text`` if it has one, else the authors' Table 1 prompt of
    the model family (:data:`AUTHOR_TEMPLATES`), or ``template`` (with ``{image}``,
    ``{instruction}`` and ``{question}``) when given. None for pre-tokenised examples.

    Emu3 prompts go through the processor's chat template, as in the authors' scripts (user turn:
    the image, then ``"\n" + question + "Answer the question using a single word or phrase."``;
    an empty assistant turn); a processor without a chat template gets ``USER:{image}<text> ASSISTANT:``
    (the authors' Emu3-Stage1 caption form) and a warning.
    """
    from .layout import family

    if "input_ids" in example:
        return None
    if "text" in example and example.get("image") is None:
        return example["text"]
    if task == "vqa" and not example.get("question"):
        raise TaskError("A VQA example has no 'question'.")
    q = example.get("question", "")
    instruction = INSTRUCTIONS[task].format(question=q)
    image = image_placeholder(hm)
    if template is not None:
        return template.format(image=image, instruction=instruction, question=q)
    fam = family(hm)
    if fam == "emu3" and task in EMU3_TEXT:
        return _emu3_chat(hm, EMU3_TEXT[task].format(question=q), image)
    t = AUTHOR_TEMPLATES.get((fam, task))
    if t is not None:
        return t.format(image=image, question=q)
    return TEMPLATES.get(fam, "{image}{instruction}").format(image=image, instruction=instruction)


def _emu3_chat(hm, text: str, image: str) -> str:
    proc = getattr(hm, "processor", None)
    if proc is not None and getattr(proc, "chat_template", None):
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]}]
        return proc.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
    import warnings

    warnings.warn("Emu3 processor without a chat template: using 'USER:{image}<text> ASSISTANT:' instead of the "
                  "authors' chat-template prompt.", stacklevel=3)
    return f"USER:{image}{text} ASSISTANT:"


def check_ready(task: str, examples=None) -> None:
    """Fail before any model work when ``task`` cannot be scored (CIDEr's package missing)."""
    check_task(task)
    if task == "caption":
        from .metrics import require_cider

        require_cider()


@contextlib.contextmanager
def _left_padding(hm):
    tok = hm.tokenizer
    old = getattr(tok, "padding_side", None)
    if tok is not None:
        tok.padding_side = "left"
    try:
        yield
    finally:
        if tok is not None:
            tok.padding_side = old


def encode(hm, examples: list, task: str, template=None) -> dict:
    """Prepared, left-padded model inputs of a batch of examples (through the processor when
    they carry images)."""
    if any("input_ids" in e for e in examples):
        return collate(hm, examples)
    prompts = [build_prompt(hm, e, task, template) for e in examples]
    return encode_prompts(hm, prompts, [e.get("image") for e in examples], task)


def encode_prompts(hm, prompts: list, images: list, task: str = "vqa") -> dict:
    """Prepared, left-padded inputs of ready prompts (images: PIL/paths or None for inline-token prompts)."""
    from .data import materialize

    images = [None if im is None else materialize(im) for im in images]
    with _left_padding(hm):
        if any(im is not None for im in images):
            if any(im is None for im in images):
                raise TaskError("Some examples of a batch have an image and some do not; every example needs one.")
            batch = {"text": prompts, "images": images}
            if hm.adapter.name.startswith("chameleon"):
                batch["return_for_text_completion"] = CHAMELEON_COMPLETION[task]
            return hm.prepare(batch)
        return hm.prepare(prompts)


def collate(hm, examples: list) -> dict:
    """Left-pad pre-tokenised examples (``input_ids`` + tensors such as ``pixel_values``) into a batch."""
    from hooks.hf_backend import pad_rows, pad_token_id

    if any("input_ids" not in e for e in examples):
        raise TaskError("Mix of pre-tokenised examples (input_ids) and others in one batch.")
    ids, am = pad_rows([e["input_ids"] for e in examples], pad_token_id(hm), "left")
    batch = {"input_ids": ids, "attention_mask": am}
    for k in examples[0]:
        v = examples[0][k]
        if k not in ("input_ids", "attention_mask") and isinstance(v, torch.Tensor):
            batch[k] = torch.stack([e[k] for e in examples])
    return hm.prepare(batch)


def candidate_ids(hm, prompt, candidates: list) -> list:
    """Token ids of each candidate answer as it continues ``prompt`` (None: no prompt text)."""
    tok = hm.tokenizer
    if tok is None:
        raise TaskError("Constrained answers need the model's tokenizer.")
    if prompt is None:
        return [tok(str(c), add_special_tokens=False)["input_ids"] or _empty(c) for c in candidates]
    base = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for c in candidates:
        full = tok(f"{prompt} {c}", add_special_tokens=False)["input_ids"]
        ids = full[len(base):] if full[: len(base)] == base else tok(f" {c}", add_special_tokens=False)["input_ids"]
        if not ids:
            raise TaskError(f"Candidate answer {c!r} tokenizes to nothing.")
        out.append(ids)
    return out


def _empty(c):
    raise TaskError(f"Candidate answer {c!r} tokenizes to nothing.")


def _no_ivs(inputs, layout, i):
    return []


@torch.no_grad()
def predict(hm, examples: list, task: str, *, interventions=None, batch_size: int = 8, template=None,
            max_new_tokens=None, layout_fn=None) -> list:
    """Predictions (strings) for ``examples`` under the per-batch ``interventions``."""
    from .layout import image_layout

    check_ready(task)
    make = interventions or _no_ivs
    layout_fn = layout_fn or image_layout
    preds = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        inputs = encode(hm, chunk, task, template)
        lay = layout_fn(hm, inputs)
        ivs = make(inputs, lay, i // batch_size)
        if task == "classify":
            preds.extend(_constrained(hm, chunk, inputs, ivs, template))
        else:
            n = max_new_tokens or MAX_NEW_TOKENS[task]
            out = hm.generate(inputs, ivs, max_new_tokens=n)
            preds.extend(t.strip() for t in out.texts)  # scored whole, as the authors do
    return preds


def _constrained(hm, chunk, inputs, ivs, template) -> list:
    """The candidate with the highest summed log-probability, per example.

    Single-token candidates need one forward for the whole batch, whatever each row's
    candidate list; multi-token candidates one forward per candidate and candidate list.
    """
    cands = [e.get("candidates") for e in chunk]
    if any(not c for c in cands):
        raise TaskError("Classification examples need 'candidates' (the class names to choose from).")
    ids = [candidate_ids(hm, build_prompt(hm, e, "classify", template), c) for e, c in zip(chunk, cands)]
    if all(len(t) == 1 for row in ids for t in row):
        logp = hm.run(inputs, ivs).logits[:, -1].float().log_softmax(-1)
        return [c[int(logp[b, [t[0] for t in ids[b]]].argmax())] for b, c in enumerate(cands)]
    out = [None] * len(chunk)
    groups: dict = {}
    for b, c in enumerate(cands):
        groups.setdefault(tuple(c), []).append(b)
    for c, rows in groups.items():
        sub = _rows(inputs, rows, len(chunk))
        sub_ivs = [_row_iv(iv, rows) for iv in ivs]
        best = _score_multi(hm, sub, sub_ivs, ids[rows[0]])
        for b, j in zip(rows, best):
            out[b] = c[j]
    return out


def _rows(inputs, rows, B):
    if len(rows) == B:
        return inputs
    return {k: (v[rows] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == B else v) for k, v in inputs.items()}


def _row_iv(iv, rows):
    import copy

    iv = copy.copy(iv)
    for f in ("queries", "keys", "positions"):
        v = getattr(iv, f, None)
        if isinstance(v, torch.Tensor):
            setattr(iv, f, v[rows])
    return iv


def _score_multi(hm, inputs, ivs, ids) -> list:
    """Index of the best candidate per row: Σ_k log p(token_k | prompt, tokens_<k), one run per candidate."""
    B = inputs["input_ids"].shape[0]
    P = inputs["input_ids"].shape[1]
    cols = []
    for t in ids:
        ext = dict(inputs)
        add = torch.tensor(t, device=inputs["input_ids"].device).expand(B, len(t))
        ext["input_ids"] = torch.cat([inputs["input_ids"], add], 1)
        ext["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(add)], 1)
        lp = hm.run(ext, ivs).logits.float().log_softmax(-1)
        cols.append(torch.stack([lp[:, P - 1 + k, tid] for k, tid in enumerate(t)], 1).sum(1))
    return torch.stack(cols, 1).argmax(1).tolist()


def score(task: str, predictions: list, examples: list) -> dict:
    """``{metric_name: value}`` for one task."""
    from . import metrics

    check_task(task)
    if task == "vqa":
        refs = [e.get("answers") or ([e["answer"]] if e.get("answer") else None) for e in examples]
        if any(not r for r in refs):
            raise TaskError("VQA examples need 'answers' (the annotators' answers).")
        return {"vqa_accuracy": metrics.vqa_accuracy(predictions, refs)}
    if task == "caption":
        refs = [e.get("captions") for e in examples]
        if any(not r for r in refs):
            raise TaskError("Captioning examples need 'captions' (reference captions).")
        return {"cider": metrics.cider(predictions, refs)}
    labels = [e.get("answer", e.get("label_name")) for e in examples]
    if any(lbl is None for lbl in labels):
        raise TaskError("Classification examples need 'label_name' or 'answer' (the truth among 'candidates').")
    return {"accuracy": metrics.classification_accuracy(predictions, labels)}


def evaluate(hm, examples: list, task: str, **kw) -> dict:
    """``score(task, predict(hm, examples, task, **kw), examples)``."""
    return score(task, predict(hm, examples, task, **kw), examples)
