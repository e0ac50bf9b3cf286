"""Datasets of the narrow-gate analyses, as lists of example dicts.

``load_data(spec, n=2000, seed=42)`` returns ``(examples, task)``. ``spec`` is one of:

``"vqav2"``           VQAv2 validation (``lmms-lab/VQAv2``) → task ``vqa``
``"coco-karpathy"``   COCO Karpathy 5k test split (``nlphuji/mscoco_2014_5k_test_image_text_retrieval``) → ``caption``
``"flickr30k"``       Flickr30k Karpathy test split (``nlphuji/flickr30k``) → ``caption``
``"hf:ID[:SPLIT]"``   any hub dataset with recognisable columns
``DIR``               an ImageNet-style folder (``DIR/<class>/*.jpg``; optional ``classnames.txt``
                      mapping folder names to class names, "``folder name``" per line) → ``classify``;
                      or a dataset saved with ``Dataset.save_to_disk``
``FILE``              ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` with an image path column
                      (relative to the file) and the task's fields
``"toy"``             the planted-gate toy world (:mod:`.toy`) → ``classify``

Hub datasets go through ``datasets.load_dataset`` and are read from the local cache when
``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` (nothing is downloaded in CI). Columns are
recognised by name: image (``image``, ``img``, ``image_path``, ``filepath``, ``file_name``),
question, answers (``answers`` as strings or ``{"answer": ...}`` dicts, ``multiple_choice_answer``),
captions (``captions``, ``caption``, ``sentences``, ``answer``), label (``label`` + ClassLabel
names, ``label_name``). Example dicts carry ``image`` (a :class:`LazyImage`, opened when a batch
is built), and ``question``/``answers``, ``captions`` or ``label``/``label_name``/``candidates``.

    examples, task = load_data("vqav2", n=2000, seed=42)
    examples, task = load_data("/data/imagenet/val", n=1000)
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from .errors import DatasetError

HUB = {
    "vqav2": ("lmms-lab/VQAv2", "validation", "vqa"),
    "coco-karpathy": ("nlphuji/mscoco_2014_5k_test_image_text_retrieval", "test", "caption"),
    "coco": ("nlphuji/mscoco_2014_5k_test_image_text_retrieval", "test", "caption"),
    "flickr30k": ("nlphuji/flickr30k", "test", "caption"),
}
IMAGE_COLS = ("image", "img", "jpg", "png", "image_path", "filepath", "file_name", "path")
CAPTION_COLS = ("captions", "caption", "sentences", "sentences_raw", "answer")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class LazyImage:
    """An image opened only when a batch needs it (a path, or a row of a ``datasets.Dataset``)."""

    def __init__(self, source, column=None, index=None):
        self.source, self.column, self.index = source, column, index

    def load(self):
        from PIL import Image

        if self.index is not None:
            im = self.source[self.index][self.column]
        else:
            im = self.source
        if isinstance(im, (str, Path)):
            if not Path(im).exists():
                raise DatasetError(f"Image file {im} does not exist.")
            im = Image.open(im)
        elif isinstance(im, dict) and ("bytes" in im or "path" in im):
            import io

            im = Image.open(io.BytesIO(im["bytes"])) if im.get("bytes") else Image.open(im["path"])
        return im.convert("RGB")

    def __repr__(self):
        return f"LazyImage({self.source if self.index is None else f'row {self.index}'})"


def materialize(image):
    """A PIL image from a :class:`LazyImage`, a path or a PIL image."""
    if isinstance(image, LazyImage):
        return image.load()
    if isinstance(image, (str, Path)):
        return LazyImage(image).load()
    return image


def _sample(n_total: int, n, seed: int) -> list:
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), n))


def _first(cols, names):
    return next((c for c in names if c in cols), None)


def _answers(v) -> list:
    if isinstance(v, str):
        return [v]
    out = []
    for a in v or []:
        out.append(a.get("answer", a.get("raw", "")) if isinstance(a, dict) else str(a))
    return out


def normalize_rows(rows, columns, *, image_base=None, label_names=None, source="dataset", task=None):
    """Example dicts from table rows (see the module docstring); a :class:`DatasetError` when
    there is no image column or the task's fields are missing."""
    cols = list(columns)
    icol = _first(cols, IMAGE_COLS)
    if icol is None:
        raise DatasetError(f"{source} has no image column (looked for {IMAGE_COLS}; it has {cols}). The narrow-gate "
                           "analyses need one image per example.")
    ccol = _first(cols, CAPTION_COLS) if "question" not in cols else None
    if task is None:
        task = "vqa" if "question" in cols else "classify" if ("label" in cols or "label_name" in cols) else \
            "caption" if ccol else None
    if task is None:
        raise DatasetError(f"{source}: cannot tell the task from its columns {cols}; it needs question+answers (VQA), "
                           "captions, or labels.")
    out = []
    for i, r in rows:
        img = r[icol]
        if isinstance(img, str) and image_base is not None and not Path(img).is_absolute():
            img = str(Path(image_base) / img)
        e = {"image": img if not isinstance(img, (str, Path, dict)) else LazyImage(img), "index": i}
        if task == "vqa":
            e["question"] = r.get("question")
            e["answers"] = _answers(r.get("answers", r.get("multiple_choice_answer")))
            if not e["question"] or not e["answers"]:
                raise DatasetError(f"{source} row {i} lacks a question or answers (VQA needs both).")
        elif task == "caption":
            e["captions"] = _answers(r.get(ccol)) if ccol else []
            if not e["captions"]:
                raise DatasetError(f"{source} row {i} has no captions (looked for {CAPTION_COLS}).")
        else:
            lab = r.get("label", r.get("label_name"))
            name = r.get("label_name") or (label_names[lab] if label_names and isinstance(lab, int) else str(lab))
            e.update(label=lab, label_name=name)
        out.append(e)
    if task == "classify":
        cands = list(label_names) if label_names else sorted({e["label_name"] for e in out})
        for e in out:
            e["candidates"] = cands
    return out, task


def load_image_folder(root, *, n=None, seed: int = 42):
    """ImageNet-style folder: one sub-folder per class (``classnames.txt`` may rename them)."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise DatasetError(f"{root} has no class sub-folders; an ImageNet-style folder is ROOT/<class>/<image>.jpg.")
    names = {c: c for c in classes}
    cn = root / "classnames.txt"
    if cn.exists():
        for line in cn.read_text().splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                names[parts[0]] = parts[1]
    files = [(c, p) for c in classes for p in sorted((root / c).iterdir()) if p.suffix.lower() in IMAGE_EXT]
    if not files:
        raise DatasetError(f"{root} holds no images ({', '.join(IMAGE_EXT)}) in its class folders.")
    label_names = [names[c] for c in classes]
    rows = [(i, {"image": str(files[i][1]), "label": classes.index(files[i][0])}) for i in _sample(len(files), n, seed)]
    return normalize_rows(rows, ["image", "label"], label_names=label_names, source=str(root), task="classify")


def _from_dataset(ds, *, n, seed, source, task=None):
    feats = getattr(ds, "features", {}) or {}
    lab = feats.get("label")
    label_names = list(getattr(lab, "names", []) or []) or None
    cols = list(ds.column_names)
    icol = _first(cols, IMAGE_COLS)
    if icol is None:
        normalize_rows([], cols, source=source)  # raises the no-image error
    idx = _sample(len(ds), n, seed)
    if "split" in cols and source.startswith("nlphuji/flickr30k"):
        keep = [i for i, s in enumerate(ds["split"]) if s == "test"]
        idx = [keep[i] for i in _sample(len(keep), n, seed)]
    light = ds.remove_columns([icol]) if icol in cols else ds
    rows = []
    for i in idx:
        r = dict(light[i])
        r[icol] = LazyImage(ds, icol, i)
        rows.append((i, r))
    return normalize_rows(rows, cols, label_names=label_names, source=source, task=task)


def load_hub(name: str, split: str, *, n=None, seed: int = 42, task=None, cache_dir=None):
    """A hub dataset through ``datasets`` (from the local cache when offline)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - network/cache errors of many kinds
        raise DatasetError(f"Could not load {name!r} (split {split!r}) with datasets: {e.__class__.__name__}: {e}. "
                           "Download it once with network (datasets.load_dataset), then run with HF_HUB_OFFLINE=1, "
                           "or pass a local folder/file.") from None
    return _from_dataset(ds, n=n, seed=seed, source=name, task=task)


def load_file(path, *, n=None, seed: int = 42, task=None):
    """Examples from a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file."""
    p = Path(path)
    suf = p.suffix.lower()
    if suf == ".jsonl":
        rows = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
    elif suf == ".json":
        rows = json.loads(p.read_text())
        rows = rows.get("data", rows.get("examples", rows)) if isinstance(rows, dict) else rows
    elif suf in (".csv", ".parquet"):
        import pandas as pd

        df = pd.read_csv(p) if suf == ".csv" else pd.read_parquet(p)
        rows = df.to_dict("records")
    else:
        raise DatasetError(f"Unsupported data file {p.name}; use .jsonl, .json, .csv, .parquet, a folder or a hub name.")
    if not rows:
        raise DatasetError(f"{p} holds no examples.")
    idx = _sample(len(rows), n, seed)
    return normalize_rows([(i, rows[i]) for i in idx], rows[0].keys(), image_base=p.parent, source=str(p), task=task)


def load_data(spec, *, n=None, seed: int = 42, task=None, cache_dir=None):
    """``(examples, task)`` for a dataset spec (see the module docstring)."""
    s = str(spec)
    if s == "toy" or s.startswith("toy:"):
        from .toy import make_examples

        return make_examples(n or 400, seed=seed), task or "classify"
    key = s.lower()
    if key in HUB:
        name, split, t = HUB[key]
        return load_hub(name, split, n=n, seed=seed, task=task or t, cache_dir=cache_dir)
    if s.startswith("hf:"):
        name, _, split = s[3:].partition(":")
        return load_hub(name, split or "test", n=n, seed=seed, task=task, cache_dir=cache_dir)
    p = Path(s)
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            import datasets

            return _from_dataset(datasets.load_from_disk(str(p)), n=n, seed=seed, source=str(p), task=task)
        return load_image_folder(p, n=n, seed=seed)
    if p.exists():
        return load_file(p, n=n, seed=seed, task=task)
    raise DatasetError(f"Unknown dataset {s!r}: not one of {sorted(HUB)} or 'toy', not 'hf:ID[:SPLIT]', and no such "
                       "file or folder.")
