"""Progress that moves with the work (hooks.progress): the SAE trainer's bar advances every step,
starts at the resumed count after a resume, log lines print above it (never into it), and where
the console is not a terminal there are plain periodic lines instead of a bar."""
from __future__ import annotations

import io
import logging
import re

import pytest
import torch
from rich.console import Console

import saes
from hooks.progress import active, echo, progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
KW = dict(arch="topk", k=2, latents=16, batch_size=32, buffer_size=256, lr=1e-3, log_every=100)


def _store(seed=0):
    x = torch.randn(2048, 8, generator=torch.Generator().manual_seed(seed))
    return saes.ActivationStore.from_tensor(x, batch_size=32, buffer_size=256, seed=seed)


def _terminal():
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=160, color_system=None), buf


def test_the_trainer_bar_advances_every_step_and_log_lines_stand_apart(tmp_path, monkeypatch):
    import sys

    console, buf = _terminal()
    seen = []
    user = logging.StreamHandler(sys.stderr)  # as logging.basicConfig() would install
    monkeypatch.setattr(logging.getLogger(), "handlers", [user])

    def on_step(step, row):
        bar = active()
        seen.append((step, bar.completed, bar.total))
        if step == 3:
            logging.getLogger("saes.test").warning("MID-RUN LOG LINE")

    res = saes.fit_sae(_store(), out=tmp_path / "sae", tokens=32 * 6, on_step=on_step, progress=console, **KW)
    assert res.summary["steps"] == 6
    # moved every step by the step's tokens (sae-lens's own bar moves every 100 steps)
    assert seen == [(s, 32 * s, 32 * 6) for s in range(1, 7)]
    lines = [ANSI.sub("", ln).strip() for ln in buf.getvalue().replace("\r", "\n").splitlines()]
    mine = [ln for ln in lines if "MID-RUN LOG LINE" in ln]
    assert mine and all("training SAE" not in ln and "━" not in ln for ln in mine)  # its own line, not in the bar
    final = [ln for ln in lines if ln.startswith("training SAE")][-1]
    assert "100%" in final and "192/192 tok" in final and "tok/s" in final and "step 6/6" in final
    assert active() is None  # the display closed


def test_after_a_resume_the_bar_starts_at_the_resumed_count(tmp_path):
    kw = dict(KW, tokens=32 * 8, checkpoint_every=3)

    def kill(step, row):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        saes.fit_sae(_store(), out=tmp_path / "r", on_step=kill, progress=False, **kw)
    assert active() is None  # closed even though the run was interrupted
    console, buf = _terminal()
    seen = []
    res = saes.fit_sae(_store(), out=tmp_path / "r", progress=console,
                       on_step=lambda step, row: seen.append((active().start, active().completed)), **kw)
    assert res.resumed_from == 3
    assert seen == [(32 * 3, 32 * s) for s in range(4, 9)]  # starts at 96 tokens and moves every step
    text = ANSI.sub("", buf.getvalue())
    assert "resuming from step 3 of 8" in text and "256/256 tok" in text
    # a re-run of the finished run says it reuses it, and from where
    console2, buf2 = _terminal()
    saes.fit_sae(_store(), out=tmp_path / "r", progress=console2, **kw)
    assert "reusing the finished SAE in " + str(tmp_path / "r") in " ".join(buf2.getvalue().split())


def test_not_a_terminal_prints_plain_periodic_lines():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with progress("harvest", total=100, unit="tok", start=20, console=console, interval_s=1e9) as bar:
        for _ in range(80):
            bar.advance(1, loss=0.5)
        echo("a message")
    lines = buf.getvalue().splitlines()
    assert "\x1b" not in buf.getvalue() and "━" not in buf.getvalue()  # no bar, no cursor codes
    assert lines[0].startswith("harvest: 20/100 tok (20%)")
    progress_lines = [ln for ln in lines if ln.startswith("harvest:")]
    # the start and one per tenth of the remaining work (the closing line would repeat the last: left out)
    assert len(progress_lines) == 1 + 10
    assert progress_lines[-1].startswith("harvest: 100/100 tok (100%)") and "tok/s" in progress_lines[-1]
    assert "loss 0.5" in progress_lines[-1] and "a message" in lines


def test_disabled_counts_but_prints_nothing(capsys):
    with progress("x", total=10, enabled=False) as bar:
        bar.advance(4)
        assert active() is bar and bar.completed == 4
        echo("shown")  # a disabled bar does not swallow messages
    out = capsys.readouterr()
    assert out.out == "shown\n" and out.err == ""


def test_gate_toy_says_what_it_wrote_and_shows_progress(tmp_path, monkeypatch):
    """``interp gate toy`` passes progress on and ends naming the report and the per-model folders."""
    from typer.testing import CliRunner

    from interp.cli import app
    from steering.narrow_gate.toy import demo

    seen = {}

    def fake(**kw):
        seen.update(kw)
        return {"written": [tmp_path / "o" / "report.md", tmp_path / "o" / "gated" / "flow.csv"], "gated": {}, "free": {}}

    monkeypatch.setattr(demo, "run_toy_world", fake)
    monkeypatch.setattr(demo, "print_report", lambda res, con: None)
    r = CliRunner().invoke(app, ["gate", "toy", "--out", str(tmp_path / "o")], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert seen["progress"] is True and seen["out"] == tmp_path / "o"
    assert f"wrote 2 files: {(tmp_path / 'o' / 'report.md').resolve()}" in text
    assert str((tmp_path / "o" / "gated").resolve()) in text and str((tmp_path / "o" / "free").resolve()) in text


def test_nested_bars_share_one_live_display():
    console, buf = _terminal()
    with progress("outer", total=2, unit="stages", console=console) as outer:
        with progress("inner", total=3, unit="proteins") as inner:  # joins the outer display as a second row
            assert inner._rich is outer._rich and len(outer._rich.tasks) == 2
            inner.advance(3)
            outer._rich.refresh()
        assert len(outer._rich.tasks) == 1 and active() is outer
        outer.advance(2)
    text = ANSI.sub("", buf.getvalue())
    assert "3/3 proteins" in text and "2/2 stages" in text and active() is None


def test_track_advances_per_item_and_closes_when_the_loop_is_left():
    from hooks.progress import track

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    seen = []
    for batch in track([[1, 2, 3], [4, 5], [6]], "batches", unit="ex", step=len, total=6, console=console):
        seen.append(active().completed)  # the count before this batch is done
    assert seen == [0, 3, 5] and active() is None
    assert buf.getvalue().splitlines()[-1].startswith("batches: 6/6 ex (100%)")
    for i in track(range(10), "early", enabled=False):
        if i == 2:
            break
    assert active() is None  # leaving the loop closed the display
