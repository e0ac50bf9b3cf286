"""Coverage sweep: every causal-LM, masked-LM and image-text-to-text architecture of the installed
transformers, built from a tiny config (:mod:`tools.tiny_configs`), wrapped with ``hooks.wrap``
and put through the known-answer checks it is eligible for. Writes ``docs/coverage.md`` and
``docs/coverage.json``::

    python -m tools.coverage                       # full sweep (each model in a worker, 120 s limit)
    python -m tools.coverage --only causal:gpt_neox masked:bert --out /tmp/cov

Checks (name: known answer):

* ``wrap``: ``hooks.wrap`` succeeds and its load-time self-check removes no site;
* ``unchanged``: the wrapped model's logits equal the unwrapped model's at real tokens (right padding);
* ``cache_hs``: ``resid_pre.0``, ``resid_post.L``, ``final`` equal ``output_hidden_states`` at real
  tokens of a ragged (padded) batch;
* ``decomposition``: the block's own composition holds on that batch (:mod:`hooks.verify`);
* ``knockout``: ``Knockout(keys="others", mode="mask")`` on every layer leaves each real query
  attending only to itself (``attn_pattern`` is the identity); eligible where attention sites exist;
* ``steer``: ``Steer`` at scale 0 is the identity on the logits, a large scale changes them;
* ``padding``: left- and right-padded batches give the same logits at real tokens (decoders; not
  eligible where the unwrapped model, given position ids from the mask, already differs);
* ``generate``: ``generate`` with ``Steer(apply_to="new")`` at scale 0 changes nothing; at a large
  scale it leaves the first new token (predicted from the prompt alone) unchanged and changes a
  later one (models that can generate; where the first forward is longer than the prompt, e.g.
  XLM's appended ``[MASK]`` query, the first token is read at a new position and only "changes a
  token" is required; encoder-decoder models are not eligible: their sites are on the encoder).

A model is *buildable* when its tiny config builds and a plain forward (no hooks) runs; the
percentages are over buildable models. Every failure and skip is written with its reason.
"""
from __future__ import annotations

import argparse
from collections import Counter
import json
import os
import select
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

CHECKS = ("wrap", "unchanged", "cache_hs", "decomposition", "knockout", "steer", "padding", "generate")
ROOT = Path(__file__).resolve().parents[1]


# -- one model ---------------------------------------------------------------------------------
def _ragged(model, B=2, P=6, side="right"):
    import torch

    from hooks.recording import probe_ids

    ids = probe_ids(model, n=P, batch=B).cpu()
    am = torch.ones(B, P, dtype=torch.long)
    lengths = [P - 2 * (b % 2) for b in range(B)]
    out_ids = torch.zeros_like(ids)
    out_am = torch.zeros_like(am)
    for b, n in enumerate(lengths):
        if side == "right":
            out_ids[b, :n], out_am[b, :n] = ids[b, :n], 1
        else:
            out_ids[b, P - n:], out_am[b, P - n:] = ids[b, :n], 1
    pad = int(ids.min())  # an ordinary token id in pad positions (masked anyway)
    out_ids[out_am == 0] = pad
    return {"input_ids": out_ids, "attention_mask": out_am}


def _close(a, b, tol=1e-4):
    import torch

    if a.shape != b.shape:
        return False
    scale = max(float(b.abs().max()), 1e-6)
    return bool(torch.allclose(a.float(), b.float(), rtol=0, atol=tol * scale))


def check_model(model_type: str, registry: str) -> dict:
    """Build one architecture and run every check it is eligible for: ``{check: "pass" | "fail: ..." | "skip: ..."}``."""
    import torch

    import hooks
    from hooks import Cache, Knockout, Steer
    from hooks import verify as V
    from hooks.recording import hidden_states_of
    from tools.tiny_configs import build

    row = {"model_type": model_type, "registry": registry, "buildable": False, "checks": {}}
    t0 = time.time()
    try:
        model = build(model_type, registry)
    except Exception as e:  # noqa: BLE001
        row["why"] = f"build: {type(e).__name__}: {str(e)[:200]}"
        return row
    row["class"] = type(model).__name__
    row["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    inp = _ragged(model)
    try:
        with torch.no_grad():
            plain = model(**inp)
    except Exception as e:  # noqa: BLE001
        row["why"] = f"plain forward: {type(e).__name__}: {str(e)[:200]}"
        return row
    row["buildable"] = True
    ch = row["checks"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hm = hooks.wrap(model)
        except Exception as e:  # noqa: BLE001
            ch["wrap"] = f"fail: {type(e).__name__}: {str(e)[:300]}"
            for k in CHECKS[1:]:
                ch[k] = "skip: not wrapped"
            return row
    rep = getattr(hm, "site_report", {})
    row["adapter"] = hm.adapter.name
    row["composition"] = sorted(set(hm.adapter.extra.get("composition") or ["hand-written"]))
    row["n_sites"] = len(hm.site_names)
    row["absent"] = sorted({k.split(".")[0] for k in rep.get("absent", {})})
    if rep.get("removed"):
        ch["wrap"] = "fail: self-check removed " + "; ".join(f"{k}: {v}" for k, v in list(rep["removed"].items())[:4])
    elif rep.get("skipped"):
        ch["wrap"] = f"fail: self-check did not run: {rep['skipped'][:200]}"
    else:
        ch["wrap"] = "pass"
    names = hm.site_names
    n = hm.n_layers

    def run(name, fn):
        try:
            out = fn()
            ch[name] = "pass" if out is True else (out if isinstance(out, str) else f"fail: {out}")
        except Exception as e:  # noqa: BLE001
            ch[name] = f"fail: {type(e).__name__}: {str(e)[:250]}"

    real = inp["attention_mask"].bool()

    def at_real(t):  # logits per input position at real tokens; other outputs (encoder-decoder) whole
        return t[real] if t.shape[:2] == real.shape else t

    def cache_hs():
        want = [k for k in names if k.split(".")[0] in ("resid_pre", "resid_post", "final") and
                (k == "final" or k.startswith("resid_post") or k == "resid_pre.0")]
        if not want:
            return "skip: no residual sites"
        res = hm.run(inp, [Cache(want, "all", layout="padded")], output_hidden_states=True)
        hs = hidden_states_of(res.output, hm.adapter.extra.get("hidden_states") or "hidden_states")
        if not isinstance(hs, (tuple, list)) or len(hs) != n + 1:
            return f"skip: the model returns {None if hs is None else len(hs)} hidden states for {n} layers"
        c = res.cache
        bad = []
        # hidden_states conventions: (embeddings, block outputs..., [final]) or, e.g. Mamba, (block outputs..., final)
        shift = int("resid_pre.0" in c and not _close(c["resid_pre.0"][real], hs[0][real], 1e-5) and all(
            f"resid_post.{L}" in c and _close(c[f"resid_post.{L}"][real], hs[L][real], 1e-5) for L in range(n)))
        if not shift and "resid_pre.0" in c and not _close(c["resid_pre.0"][real], hs[0][real], 1e-5):
            bad.append("resid_pre.0")
        for L in range(n - 1):
            k = f"resid_post.{L}"
            if k in c and not _close(c[k][real], hs[L + 1 - shift][real], 1e-5):
                bad.append(k)
        last = [c[k][real] for k in (f"resid_post.{n - 1}", "final") if k in c]
        if last and not any(_close(t, hs[n][real], 1e-5) for t in last):
            if "final" in c or not V.normalised(last[0], hs[n][real]):
                bad.append("final")
        note = ", hidden_states start at the first block's output" if shift else ""
        return True if not bad else f"fail: differs from output_hidden_states at {bad}{note}"

    def decomposition():
        comps = set(hm.adapter.extra.get("composition") or ["sequential"])
        if comps == {"opaque"}:
            return "skip: no block adds (B, P, D) sub-layer outputs to the residual stream (see adapter absent reasons)"
        rep2 = V.self_check(hm, warn=False, batch=inp)
        if rep2.get("skipped"):
            return f"fail: {rep2['skipped']}"
        if rep2["removed"]:
            return "fail: " + "; ".join(f"{k}: {v}" for k, v in list(rep2["removed"].items())[:3])
        if not rep2["checked"]:
            return "skip: no residual sites to compose"
        return True

    def knockout():
        pats = [k for k in names if k.startswith("attn_pattern.")]
        if not pats:
            return "skip: no attention sites (" + str(rep.get("absent", {}).get("attn_pattern.0", "none exposed"))[:150] + ")"
        layers = [int(k.split(".")[1]) for k in pats]
        res = hm.run(inp, [Knockout(layers=layers, keys="others", mode="mask"), Cache(pats, "all", layout="padded")])
        bad = []
        for k in pats:
            p = res.cache[k]  # B×H×Q×K
            diag = torch.diagonal(p, dim1=-2, dim2=-1)  # B×H×Q
            ok = (diag - 1).abs() <= 1e-4
            if not bool(ok.permute(0, 2, 1)[real].all()):
                bad.append(k)
        return True if not bad else f"fail: pattern is not the identity at {bad}"

    site = next((k for k in (f"resid_post.{n // 2}", f"resid_pre.{n // 2}", "resid_post.0") if k in names), None)

    def steer():
        if site is None:
            return "skip: no residual site"
        clean = hm.run(inp).logits
        d = hm.run(inp, [Cache(site, "last")]).cache[site].shape[1:]  # (D,), or (streams, D) for multi-stream residuals
        v = torch.randn(d, generator=torch.Generator().manual_seed(0))
        zero = hm.run(inp, [Steer(site, vector=v, scale=0.0)]).logits
        big = hm.run(inp, [Steer(site, vector=v, scale=100.0)]).logits
        if clean is None:
            return "skip: the model returns no logits"
        if not torch.equal(zero, clean):
            return "fail: scale 0 changed the logits"
        if _close(at_real(big), at_real(clean), 1e-4):
            return "fail: scale 100 left the logits unchanged"
        return True

    can_gen = bool(getattr(model, "can_generate", lambda: False)())

    def padding():
        if not can_gen:
            return "skip: not a decoder (encoders are padded on the right only)"
        if not hm.adapter.position_ids:
            return "skip: the model takes no position_ids, so left padding shifts its absolute positions"
        left = _ragged(model, side="left")
        lr = left["attention_mask"].bool()
        with torch.no_grad():  # the known answer holds only where the model itself is padding-invariant
            pos = {k: (b["attention_mask"].cumsum(-1) - 1).clamp(min=0) for k, b in (("r", inp), ("l", left))}
            ra = model(**inp, position_ids=pos["r"], use_cache=False).logits
            la = model(**left, position_ids=pos["l"], use_cache=False).logits
        if not _close(ra[real], la[lr], 1e-4):
            err = float((ra[real] - la[lr]).abs().max())
            return (f"skip: the unwrapped model (position ids from the mask) already differs between left and right "
                    f"padding at real tokens (max |Δlogit| = {err:.2e}): a property of the model (e.g. recurrent or convolutional layers reading the padding), not of the wrapping")
        a = hm.run(inp).logits
        b = hm.run(left).logits
        if not _close(a[real], b[lr], 1e-4):
            err = float((a[real] - b[lr]).abs().max())
            return f"fail: left vs right padding differ at real tokens (max |Δlogit| = {err:.2e})"
        return True

    def generate():
        if not can_gen:
            return "skip: the model cannot generate"
        if site is None:
            return "skip: no residual site"
        if hm.adapter.extra.get("hidden_states") == "encoder_hidden_states":
            return ("skip: the sites are on the encoder of an encoder-decoder model, which runs once over the prompt; "
                    "generated tokens pass only through the decoder, whose sites are not exposed")
        prompt = _ragged(model, B=1, P=5)["input_ids"]
        d = hm.run(prompt, [Cache(site, "last")]).cache[site].shape[1:]
        v = torch.randn(d, generator=torch.Generator().manual_seed(1))
        kw = dict(max_new_tokens=4, min_new_tokens=4)
        seen = []  # the length of the first forward's input ids: XLM appends a [MASK] query position to the prompt

        def first_len(m, args, kwargs):
            t = kwargs.get("input_ids", args[0] if args else None)
            if not seen and isinstance(t, torch.Tensor):
                seen.append(t.shape[-1])

        h = model.register_forward_pre_hook(first_len, with_kwargs=True)
        try:
            clean = hm.generate(prompt, **kw).sequences
        finally:
            h.remove()
        zero = hm.generate(prompt, [Steer(site, vector=v, scale=0.0, apply_to="new")], **kw).sequences
        big = hm.generate(prompt, [Steer(site, vector=v, scale=1000.0, apply_to="new")], **kw).sequences
        P = prompt.shape[1]
        if not torch.equal(zero, clean):
            return "fail: Steer(scale=0, apply_to='new') changed the generation"
        query = bool(seen) and seen[0] > P  # the first new token is read at an appended (new) position
        if not query and not torch.equal(big[:, : P + 1], clean[:, : P + 1]):
            return "fail: Steer(apply_to='new') changed the first new token (it acted on the prompt)"
        if torch.equal(big, clean):
            return "fail: a large Steer(apply_to='new') changed no generated token"
        return True

    def unchanged():
        ref = getattr(plain, "logits", None)
        got = hm.run(inp).logits
        if ref is None or got is None:
            return "skip: the model returns no logits"
        if not _close(at_real(got), at_real(ref), 1e-4):
            return f"fail: wrapping changed the logits (max |Δ| = {float((at_real(got) - at_real(ref)).abs().max()):.2e})"
        return True

    for name, fn in (("unchanged", unchanged), ("cache_hs", cache_hs), ("decomposition", decomposition), ("knockout", knockout),
                     ("steer", steer), ("padding", padding), ("generate", generate)):
        run(name, fn)
    row["seconds"] = round(time.time() - t0, 2)
    row["warnings"] = sorted({str(w.message)[:200] for w in caught if issubclass(w.category, V.SiteCheckWarning)})
    return row


def passed(row, ignore=()) -> bool:
    return row["buildable"] and all(not v.startswith("fail") for k, v in row["checks"].items() if k not in ignore)


# -- the sweep ----------------------------------------------------------------------------------------
def _worker(tasks):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import logging

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    for t in tasks:
        reg, mt = t.split(":", 1)
        print(json.dumps({"start": t}), flush=True)
        try:
            row = check_model(mt, reg)
        except Exception as e:  # noqa: BLE001
            row = {"model_type": mt, "registry": reg, "buildable": False,
                   "why": f"sweep error: {type(e).__name__}: {e}", "trace": traceback.format_exc()[-500:]}
        print(json.dumps({"row": row}, default=str), flush=True)


def sweep(tasks, timeout: float, log=None) -> list:
    rows, todo = [], list(tasks)
    while todo:
        proc = subprocess.Popen([sys.executable, "-m", "tools.coverage", "--worker", *todo], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        current, last = None, time.time()
        while True:
            r, _, _ = select.select([proc.stdout], [], [], 5)
            if r:
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "start" in msg:
                    current, last = msg["start"], time.time()
                elif "row" in msg:
                    rows.append(msg["row"])
                    todo.remove(current)
                    if log:
                        print(_line(msg["row"]), file=log, flush=True)
                    current = None
            elif current is not None and time.time() - last > timeout:
                proc.kill()
                break
            if proc.poll() is not None and not r:
                break
        proc.wait()
        if current is not None and current in todo:  # timed out or crashed on `current`
            reg, mt = current.split(":", 1)
            rows.append({"model_type": mt, "registry": reg, "buildable": False,
                         "why": f"timeout or crash after {time.time() - last:.0f}s (limit {timeout:.0f}s)"})
            todo.remove(current)
    return rows


def _line(row):
    status = "PASS" if passed(row) else ("n/b " + row.get("why", "")[:80] if not row["buildable"] else "FAIL")
    fails = [k for k, v in row.get("checks", {}).items() if v.startswith("fail")]
    return f"{row['registry']:10s} {row['model_type']:28s} {status} {fails}"


def summarize(rows) -> dict:
    out = {}
    for reg in ("causal", "masked", "image_text"):
        rs = [r for r in rows if r["registry"] == reg]
        b = [r for r in rs if r["buildable"]]
        p = [r for r in b if passed(r)]
        q = [r for r in b if passed(r, ignore=("generate",))]
        out[reg] = {"registered": len(rs), "buildable": len(b), "pass_all": len(p),
                    "pass_pct": round(100 * len(p) / len(b), 1) if b else None,
                    "pass_all_but_generate": len(q),
                    "pass_but_generate_pct": round(100 * len(q) / len(b), 1) if b else None}
    return out


# What a failing check cannot know: the model's own reason, read in its transformers code (v5.25).
# Shown after the failure; the check still counts as failed.
WHY = {
    ("prophetnet", "steer"): "ProphetNet's logits are read from its first n-gram predicting stream "
    "(models/prophetnet/modeling_prophetnet.py ProphetNetForCausalLM: predict_logits[:, 0]), while the sites hold the "
    "main stream that output_hidden_states returns: the last layer's main-stream output (resid_post.1 of 2) feeds no logit",
    ("prophetnet", "generate"): "as for steer: the steered last-layer main stream feeds no logit",
    ("xlnet", "generate"): "XLNet's generate asks for the next token through target_mapping, so the logits are read "
    "from the query stream (models/xlnet/modeling_xlnet.py XLNetModel.forward: output_g if output_g is not None), while "
    "the sites hold the content stream that output_hidden_states returns: the last layer's content stream (resid_post.1 "
    "of 2) feeds no logit there",
    ("funnel", "wrap"): "Funnel pools the sequence between its block groups (models/funnel/modeling_funnel.py "
    "FunnelEncoder: block_sizes, pooling_type), so no per-token residual stream of one length runs through its layers",
    ("perceiver", "wrap"): "Perceiver's layers run on a fixed latent array that cross-attends to the tokens "
    "(models/perceiver/modeling_perceiver.py PerceiverEncoder): there is no per-token residual stream",
}


def write(rows, out_dir: Path, meta: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summ = summarize(rows)
    data = {"meta": meta, "summary": summ, "rows": rows}
    tmp = out_dir / ".coverage.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, out_dir / "coverage.json")
    names = {"causal": "causal LM", "masked": "masked LM", "image_text": "image-text-to-text"}
    lines = ["# Architecture coverage of the hook registry", "",
             f"Generated by `python -m tools.coverage` on {meta['date']} (transformers {meta['transformers']}, "
             f"torch {meta['torch']}), {meta['seconds']:.0f} s. Each architecture is built from its default config "
             "shrunk to 2 layers / width 32 (`tools/tiny_configs.py`), wrapped with `hooks.wrap` (structural "
             "inference where no hand-written adapter exists; load-time self-check on) and run through the checks "
             "below. *Buildable* = the tiny config builds and a plain forward runs; percentages are over buildable "
             "models.", "",
             "| registry | registered | buildable | pass every eligible check | % | pass all but `generate` | % |",
             "|---|---|---|---|---|---|---|"]
    for reg, s in summ.items():
        lines.append(f"| {names[reg]} | {s['registered']} | {s['buildable']} | {s['pass_all']} | {s['pass_pct']} | "
                     f"{s['pass_all_but_generate']} | {s['pass_but_generate_pct']} |")
    gen = Counter(v for r in rows if r["buildable"] for k, v in r.get("checks", {}).items()
                  if k == "generate" and v.startswith("fail"))
    if gen:
        top, n = gen.most_common(1)[0]
        lines += ["", f"`generate` fails on {sum(gen.values())} models; the most common reason ({n}) is \"{top[6:]}\". "
                  "Each failing model's reason is in its section below and in the JSON."]
    lines += ["", "Notes: encoder-decoder models (BART, mBART, MVP, Florence-2...) expose the sites of their "
              "encoder (hidden states checked against `encoder_hidden_states`); their decoder's sites are not exposed, so "
              "`generate` (new tokens pass through the decoder only) is not eligible there. `padding` is not eligible "
              "where the unwrapped model itself gives different logits for left and right padding. MoE blocks expose "
              "`router_logits.L` (read-only where the router has already chosen its experts when it returns them). "
              "A layer module run once per layer (ALBERT's shared layer) is hooked at its L-th call (`hooks.calls`). "
              "Blocks that run on a stream longer than the input (Longformer's window padding, CPM-Ant's prompt, "
              "ProphetNet's n-gram streams) expose the tokens' slice (`Site.token_offset`); their attention sites are "
              "absent."]
    lines += ["", "Checks: " + "; ".join(f"`{c}`" for c in CHECKS) + " (see the docstring of `tools/coverage.py` for "
              "each known answer). `✓` pass, `–` not eligible (reason in the JSON), `✗` fail (reason below).", ""]
    for reg in summ:
        rs = sorted([r for r in rows if r["registry"] == reg], key=lambda r: r["model_type"])
        lines += [f"## {names[reg]}", "", "| model type | adapter | blocks | " + " | ".join(CHECKS) + " |",
                  "|---|---|---|" + "---|" * len(CHECKS)]
        for r in rs:
            if not r["buildable"]:
                continue
            cells = []
            for c in CHECKS:
                v = r["checks"].get(c, "skip: not run")
                cells.append("✓" if v == "pass" else "✗" if v.startswith("fail") else "–")
            lines.append(f"| {r['model_type']} | {r.get('adapter', '')} | {'/'.join(r.get('composition', []))} | "
                         + " | ".join(cells) + " |")
        fails = [(r, c, v) for r in rs if r["buildable"] for c, v in r["checks"].items() if v.startswith("fail")]
        if fails:
            lines += ["", "Failures:", ""]
            lines += [f"- `{r['model_type']}` {c}: {v[6:].replace('|', '/')}"
                      + (f" — why: {WHY[r['model_type'], c]}" if (r["model_type"], c) in WHY else "")
                      for r, c, v in fails]
        nb = [r for r in rs if not r["buildable"]]
        if nb:
            lines += ["", f"Not buildable from a tiny default config ({len(nb)}):", ""]
            lines += [f"- `{r['model_type']}`: {r.get('why', '?').replace('|', '/')[:220]}" for r in nb]
        lines.append("")
    tmp = out_dir / ".coverage.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out_dir / "coverage.md")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="+", help="registry:model_type items (default: every registered one)")
    ap.add_argument("--registries", nargs="+", default=["causal", "masked", "image_text"])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per model")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--rewrite", action="store_true", help="rewrite coverage.md from the existing coverage.json")
    a = ap.parse_args(argv)
    if a.worker:
        _worker(a.worker)
        return 0
    if a.rewrite:
        data = json.loads((Path(a.out) / "coverage.json").read_text())
        write(data["rows"], Path(a.out), data["meta"])
        print(json.dumps(summarize(data["rows"]), indent=1))
        return 0
    import torch
    import transformers

    from tools.tiny_configs import model_types

    tasks = a.only or [f"{reg}:{mt}" for reg in a.registries for mt in model_types(reg)]
    t0 = time.time()
    rows = sweep(tasks, a.timeout, log=sys.stderr)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "transformers": transformers.__version__,
            "torch": torch.__version__, "seconds": time.time() - t0, "timeout_s": a.timeout}
    write(rows, Path(a.out), meta)
    print(json.dumps(summarize(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
