"""One grammar for every command: walk every sub-command (the click tree typer builds) and its
``--help`` and check the shared options (``--model --data --out --device --dtype --seed --limit
--batch-size``) exist where they make sense, with the one set of defaults in
``steering.cli_common.SHARED_DEFAULTS``, and that every option has help text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from interp.cli import app
from steering.cli_common import SHARED_DEFAULTS, out_default

# Where a command deliberately departs from the shared grammar, and why (kept short and reviewed).
EXEMPT = {
    # --out names a file, not a directory
    ("proteins read", "out"): "writes one parquet file",
    ("proteins fetch", "out"): "writes one parquet file",
    ("dashboard folder", "out"): "one HTML page, default FOLDER/index.html",
    ("toy train-gate-models", "out"): "default: the shipped toy_models/ directory",
    ("toy train-protein-model", "out"): "default: the shipped toy_model/ directory",
    # --batch-size that is not 'examples per model forward'
    ("sae train", "batch_size"): "activations per SAE step (4096); the model's is --model-batch-size",
    ("toy train-protein-model", "batch_size"): "training sequences per step",
    ("steer protein", "batch_size"): "proteins generated per forward (100: a whole arm)",
}
# Commands that read --data without --limit: landscape samples --per-subject (the paper's protocol),
# sae train stops at --tokens, dashboard sae at --max-tokens, demo reads a protein set it splits.
NO_LIMIT = {"demo", "landscape", "sae train", "dashboard sae"}
# Commands without an output directory (they print, or take --json).
NO_OUT = {"sites", "sae eval"}


def _commands():
    root = typer.main.get_command(app)
    out = []

    def walk(c, path):
        if hasattr(c, "commands"):
            for name, sub in c.commands.items():
                walk(sub, path + [name])
        else:
            out.append((" ".join(path), c))

    walk(root, [])
    return out


COMMANDS = _commands()
IDS = [name for name, _ in COMMANDS]


def _opts(cmd):
    return {p.name: p for p in cmd.params if getattr(p, "param_type_name", "") == "option"}


def test_every_command_is_walked():
    for expected in ("run", "sweep", "demo", "demo-lm", "id-profile", "zigzag", "prune", "sae train", "gate flow",
                     "steer protein", "dashboard sae", "landscape", "geometry"):
        assert expected in IDS


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=IDS)
def test_shared_options_and_defaults(name, cmd):
    opts = _opts(cmd)
    for pname, p in opts.items():
        assert p.help, f"`interp {name}` option --{pname.replace('_', '-')} has no help text"
    # a command that loads a model takes --device and --dtype (and --seed); one that reads --data takes --limit
    if "model" in opts:
        assert "device" in opts, f"`interp {name}` loads a model but has no --device"
        assert "dtype" in opts, f"`interp {name}` loads a model but has no --dtype"
        assert "seed" in opts or name in ("sites", "dashboard attention"), f"`interp {name}` has no --seed"
    flags = {f for p in opts.values() for f in p.opts}
    if "model" in opts and "data" in opts and name not in NO_LIMIT:
        assert "--limit" in flags, f"`interp {name}` reads --data but has no --limit"
    if name not in NO_OUT:
        assert "out" in opts, f"`interp {name}` writes results but has no --out"
    # the shared defaults
    by_flag = {f.lstrip("-").replace("-", "_"): p for p in opts.values() for f in p.opts}
    for key, default in SHARED_DEFAULTS.items():
        if key in by_flag and (name, key) not in EXEMPT:
            assert by_flag[key].default == default, f"`interp {name}` --{key.replace('_', '-')} defaults to " \
                                                 f"{by_flag[key].default!r}, the shared default is {default!r}"
    if "out" in opts and (name, "out") not in EXEMPT:
        assert Path(opts["out"].default) == out_default(name), f"`interp {name}` --out default"
        assert not opts["out"].required
    for key in ("model", "data", "out", "device", "dtype", "seed", "limit", "batch_size"):
        if key in opts:
            assert f"--{key.replace('_', '-')}" in opts[key].opts, f"`interp {name}` spells --{key} differently"


@pytest.mark.parametrize("name", ["run", "sweep", "gate flow", "sae train", "id-profile", "zigzag", "steer protein"])
def test_help_shows_the_shared_options(name):
    r = CliRunner().invoke(app, name.split() + ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    for flag in ("--out", "--seed", "--device"):
        assert flag in r.output
    assert "[default: 0]" in r.output  # the seed's
    assert "<bool>" not in r.output  # flags take no value: no type shown


def test_old_spellings_still_work_hidden():
    from steering.cli_common import take_old

    cmds = dict(COMMANDS)
    for name, old in (("gate flow", "--n"), ("gate ablate", "--n"), ("gate steer", "--n"), ("proteins fetch", "--max")):
        opts = {f: p for p in _opts(cmds[name]).values() for f in p.opts}
        assert old in opts and opts[old].hidden and "--limit" in opts
        r = CliRunner().invoke(app, name.split() + ["--help"], env={"COLUMNS": "200"})
        assert f"{old} " not in r.output and "--limit" in r.output
    assert take_old(None, 5) == 5 and take_old(7, None) == 7 and take_old(5, 5) == 5
    with pytest.raises(typer.Exit):
        take_old(4, 5)
    ip = _opts(cmds["id-profile"])
    assert "--geometry-device" in ip["geometry_device"].opts and "--device" in ip["device"].opts


def test_version():
    from interp._meta import package_version

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"interp {package_version()}"


def test_sites_json(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).save_pretrained(tmp_path)
    r = CliRunner().invoke(app, ["sites", str(tmp_path), "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout[r.stdout.index("{"):])
    assert d["n_layers"] == 2 and "resid_post.1" in d["sites"]


def test_run_meta_records_version_git_time_command_seeds(tmp_path, monkeypatch):
    from interp._meta import run_meta, stamp_out_dir, write_meta_sidecar

    monkeypatch.setattr("sys.argv", ["interp", "sweep", "--seed", "3"])
    m = run_meta(seeds=[3])
    assert m["command"] == "interp sweep --seed 3" and m["seeds"] == [3] and m["version"]
    assert m["utc"].endswith("+00:00")
    assert m["git"] is None or len(m["git"].split("+")[0]) == 40
    (tmp_path / "a.csv").write_text("x\n1\n")
    side = write_meta_sidecar(tmp_path / "a.csv", seeds=[3])
    assert json.loads(side.read_text())["file"] == "a.csv"
    run = json.loads(stamp_out_dir(tmp_path, seeds=[3]).read_text())
    assert set(run["files"]) == {"a.csv", "a.csv.meta.json"}
    assert stamp_out_dir(tmp_path / "missing") is None


def test_every_command_stamps_run_json(tmp_path):
    """The CLI wraps every command: after it returns, OUT/run.json holds the metadata."""
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["dashboard", "folder", str(tmp_path), "--out", str(tmp_path / "page.html")])
    # dashboard folder's --out is a file: no run.json beside arbitrary files
    assert not (tmp_path / "page.html" / "run.json").exists()
    from interp.cli import _stamped

    def cmd(out: Path = out, seed: int = 5):
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text('{"x": 1}')

    _stamped(cmd)(out=out, seed=5)
    meta = json.loads((out / "run.json").read_text())
    assert meta["seeds"] == [5] and meta["files"] == ["summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["x"] == 1 and summary["meta"]["seeds"] == [5] and summary["meta"]["version"]


@pytest.mark.parametrize("cmd", [["sae", "train", "--site", "resid_post.0"], ["run", "--spec", "s.yaml"],
                                 ["prune", "--blocks", "1"], ["id-profile"]])
def test_a_missing_data_file_is_named_before_the_model_loads(cmd, tmp_path):
    """The model does not exist either: the error must be about the data file (checked first)."""
    r = CliRunner().invoke(app, cmd + ["--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "x.txt")],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 2
    assert "x.txt" in r.output and "does not exist" in r.output and "no-model" not in r.output


def test_ctrl_c_says_how_to_resume(tmp_path):
    from interp.cli import _stamped

    def train(out: Path = typer.Option(tmp_path / "o", help="out"), seed: int = typer.Option(0, help="seed")):
        raise KeyboardInterrupt

    one = typer.Typer()
    one.command()(_stamped(train))
    r = CliRunner().invoke(one, ["--seed", "2"], env={"COLUMNS": "200"})
    assert r.exit_code == 130
    text = " ".join(r.output.split())
    assert "interrupted" in text and "run the same command again" in text
    assert "resumes from the newest checkpoint in" in text and str(tmp_path / "o") in text
    assert not (tmp_path / "o" / "run.json").exists()  # nothing finished: no run.json


def test_demo_refuses_a_device_it_would_ignore(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--device", "cuda"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "--device/--dtype apply to a --model you name" in " ".join(r.output.split())


def test_demo_table_prints_an_underflowed_q_as_below_1e300(capsys):
    from interp.cli_tables import print_demo

    print_demo({"annotations": {"ZN_FING": {"latent": 3, "f1": 0.9, "chance_f1": 0.1, "fdr_q": 0.0}}}, Path("x"))
    out = capsys.readouterr().out
    assert "< 1e-300" in out and "0.00e+00" not in out


@pytest.mark.parametrize("cmd", [["sae", "train", "--site", "resid_post.0"], ["sae", "eval", "--sae", "s"]])
def test_sae_commands_load_the_model_in_the_dtype_given(cmd, tmp_path, monkeypatch):
    import hooks

    seen = {}

    def fake_load(name, **kw):
        seen.update(kw)
        raise ValueError("stopped after the load")

    monkeypatch.setattr(hooks, "load", fake_load)
    monkeypatch.setattr("saes.files.load_sae", lambda *a, **k: None)
    (tmp_path / "d.txt").write_text("a b c\n")
    r = CliRunner().invoke(app, cmd + ["--model", "m", "--data", str(tmp_path / "d.txt"), "--dtype", "bfloat16",
                                       "--device", "cpu", "--out", str(tmp_path / "o")][: None if cmd[1] == "train" else -2])
    assert r.exit_code == 2 and "stopped after the load" in r.output
    assert seen == {"device": "cpu", "dtype": "bfloat16"}
